"""Demo models: a product catalogue and a staff list, each with a natural key."""

from django.db import models


class Category(models.Model):
    code = models.CharField(max_length=20, unique=True)
    name = models.CharField(max_length=100)

    class Meta:
        verbose_name_plural = "categories"
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    sku = models.CharField("SKU", max_length=32, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    qty = models.IntegerField("quantity", default=0)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="products")
    updated = models.DateField(null=True, blank=True)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


class Department(models.Model):
    code = models.CharField(max_length=10, unique=True)
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class Employee(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        LEAVE = "leave", "On leave"
        LEFT = "left", "Left"

    department = models.ForeignKey(Department, on_delete=models.CASCADE, related_name="employees")
    number = models.PositiveIntegerField()
    name = models.CharField(max_length=100)
    email = models.EmailField(blank=True)
    hired = models.DateField()
    salary = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    last_login = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["department__code", "number"]
        constraints = [
            models.UniqueConstraint(fields=["department", "number"], name="demo_employee_key")
        ]

    def __str__(self) -> str:
        return f"{self.department.code}-{self.number} {self.name}"

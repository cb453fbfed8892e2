"""The benchmark's target: products with a unique natural key ``sku``."""

from django.db import models


class Product(models.Model):
    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    qty = models.IntegerField()
    category = models.CharField(max_length=100)
    updated = models.DateField()

    def __str__(self) -> str:
        return self.sku

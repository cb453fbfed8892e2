"""Admin of the demo models."""

from django.contrib import admin

from .models import Category, Department, Employee, Product

admin.site.register(Category)
admin.site.register(Department)


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "price", "qty", "category", "updated", "active"]
    list_filter = ["category", "active"]
    search_fields = ["sku", "name"]


@admin.register(Employee)
class EmployeeAdmin(admin.ModelAdmin):
    list_display = ["department", "number", "name", "email", "status"]
    list_filter = ["department", "status"]

"""Admin of the demo models: products and employees can be synced from a file."""

from django.contrib import admin

from djsync.admin import SyncImportMixin

from .models import Category, Department, Employee, Product

admin.site.register(Category)
admin.site.register(Department)


@admin.register(Product)
class ProductAdmin(SyncImportMixin, admin.ModelAdmin):
    list_display = ["sku", "name", "price", "qty", "category", "updated", "active"]
    list_filter = ["category", "active"]
    search_fields = ["sku", "name"]


@admin.register(Employee)
class EmployeeAdmin(SyncImportMixin, admin.ModelAdmin):
    list_display = ["department", "number", "name", "email", "status"]
    list_filter = ["department", "status"]

"""Admin of the test models: Product uses djsync's import mixin, Category does not."""

from django.contrib import admin

from djsync.admin import SyncImportMixin

from .models import Category, Member, Product


@admin.register(Product)
class ProductAdmin(SyncImportMixin, admin.ModelAdmin):
    list_display = ["sku", "name", "price", "qty", "active"]
    search_fields = ["sku", "name"]


admin.site.register(Category)
admin.site.register(Member)

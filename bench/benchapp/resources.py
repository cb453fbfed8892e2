"""django-import-export in its fastest configuration (see shared BENCHMARKS.md)."""

from import_export import resources
from import_export.instance_loaders import CachedInstanceLoader

from .models import Product


class ProductResource(resources.ModelResource):
    class Meta:
        model = Product
        fields = ("sku", "name", "price", "qty", "category", "updated")
        import_id_fields = ["sku"]
        use_bulk = True
        batch_size = 1000
        instance_loader_class = CachedInstanceLoader
        skip_unchanged = True
        skip_html_diff = True
        report_skipped = False

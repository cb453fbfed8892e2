"""django-import-export in its fastest configurations (see shared BENCHMARKS.md): one for
re-imports, one (``skip_diff``) for an initial load."""

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


class ProductSkipDiffResource(ProductResource):
    """Its fastest setting for an initial load into an empty table: no copy and diff of each
    instance (``skip_diff``), so nothing is compared and unchanged rows are written too."""

    class Meta(ProductResource.Meta):
        skip_unchanged = False
        skip_diff = True

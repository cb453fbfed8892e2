"""The djsync importer of the benchmark (autodiscovered)."""

import djsync

from .models import Product


@djsync.register
class ProductImporter(djsync.Importer):
    name = "bench_products"
    model = Product
    keys = ["sku"]
    fields = ["sku", "name", "price", "qty", "category", "updated"]

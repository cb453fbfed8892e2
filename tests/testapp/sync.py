"""Importers the tests use, registered under test_* names."""

import djsync

from .models import Category, Member, Product


@djsync.register
class CategoryImporter(djsync.Importer):
    name = "test_categories"
    model = Category
    keys = ["code"]
    fields = ["code", "name"]


@djsync.register
class ProductImporter(djsync.Importer):
    name = "test_products"
    model = Product
    keys = ["sku"]
    fields = ["sku", "name", "price", "qty", "updated", "active"]
    category = djsync.Field("category_code", lookup="code", required=False)
    delete = True


@djsync.register
class MemberImporter(djsync.Importer):
    name = "test_members"
    model = Member
    keys = ["team", "number"]
    fields = "__all__"
    nickname = djsync.Field(required=False)
    note = djsync.Field(required=False)
    score = djsync.Field(required=False)
    joined = djsync.Field(required=False)
    seen = djsync.Field(required=False)
    alarm = djsync.Field(required=False)
    vip = djsync.Field(required=False)
    level = djsync.Field(required=False)
    token = djsync.Field(required=False)
    extra = djsync.Field(required=False)
    delete = True

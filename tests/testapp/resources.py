"""django-import-export resources of the test models, served as djsync importers in sync.py."""

from import_export import fields, resources, widgets

from .models import Category, Product


class ProductResource(resources.ModelResource):
    """A typical resource: renamed columns, a date format, a foreign key by natural key."""

    title = fields.Field(attribute="name", column_name="Title", widget=widgets.CharWidget())
    category = fields.Field(
        attribute="category",
        column_name="category_code",
        widget=widgets.ForeignKeyWidget(Category, field="code"),
    )
    updated = fields.Field(
        attribute="updated", column_name="updated", widget=widgets.DateWidget(format="%d.%m.%Y")
    )
    stock = fields.Field(attribute="qty", column_name="stock", widget=widgets.IntegerWidget())
    label = fields.Field(column_name="label", readonly=True)

    class Meta:
        model = Product
        fields = ("sku", "title", "price", "stock", "category", "updated", "active", "label")
        import_id_fields = ("sku",)
        skip_unchanged = True


class PlainProductResource(resources.ModelResource):
    """Every field from Meta.fields, widgets chosen by import-export, key by id default."""

    class Meta:
        model = Product
        exclude = ("id", "region", "category")
        import_id_fields = ("sku",)
        skip_unchanged = True


class CategoryResource(resources.ModelResource):
    class Meta:
        model = Category
        fields = ("code", "name")
        import_id_fields = ("code",)
        skip_unchanged = True

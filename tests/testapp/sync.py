"""Importers the tests use, registered under test_* names."""

import threading

import djsync

from .models import Book, Category, Edition, Listing, Member, Pamphlet, Product, Shelf


@djsync.register
class CategoryImporter(djsync.Importer):
    class Meta:
        name = "test_categories"
        model = Category
        keys = ["code"]
        fields = ["code", "name"]
        #: What a job's queryset source may pick (tests/test_hostile_jobs.py).
        querysets = {
            "active_products": {
                "queryset": lambda: Product.objects.using("other").filter(active=True),
                "fields": {"code": "sku", "name": "name"},
            },
        }


@djsync.register
class ProductImporter(djsync.Importer):
    category = djsync.Field("category_code", lookup="code", required=False)

    class Meta:
        name = "test_products"
        model = Product
        keys = ["sku"]
        fields = ["sku", "name", "price", "qty", "updated", "active"]
        delete = True


@djsync.register
class MemberImporter(djsync.Importer):
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

    class Meta:
        name = "test_members"
        model = Member
        keys = ["team", "number"]
        fields = "__all__"
        delete = True


@djsync.register
class PlainProductImporter(djsync.Importer):
    """Only fields whose cells PostgreSQL may read as written (tests/test_rawcsv.py)."""

    class Meta:
        name = "test_products_plain"
        model = Product
        keys = ["sku"]
        fields = ["sku", "name", "price", "qty", "updated"]
        delete = True


@djsync.register
class EuProductImporter(ProductImporter):
    """Only the EU slice of the catalogue: deletes stay inside the scope."""

    class Meta(ProductImporter.Meta):
        name = "test_products_eu"
        scope = {"region": "eu"}


@djsync.register
class LenientProductImporter(ProductImporter):
    """Per-importer delete guard and row-error policy."""

    class Meta(ProductImporter.Meta):
        name = "test_products_lenient"
        delete_guard = 0.8
        on_row_error = "skip"


@djsync.register
class HookedProductImporter(ProductImporter):
    """Every hook overridden: comment rows skipped, names and SKUs normalized."""

    qty = djsync.Field("stock", default=0)

    class Meta(ProductImporter.Meta):
        name = "test_products_hooked"
        fields = ["sku", "name", "price"]

    def prepare_record(self, record):
        if record["sku"].startswith("#"):
            return None  # a comment row
        if record["sku"] == "BAD":
            raise ValueError("rows with SKU BAD are refused")
        return {**record, "sku": record["sku"].upper()}

    def normalize_source_row(self, values):
        values["name"] = values["name"].title()
        return values

    def normalize_target_row(self, values):
        # The target keeps names in any case; compare them as the source writes them.
        values["name"] = values["name"].title()
        return values


@djsync.register
class PreparedProductImporter(ProductImporter):
    """Hooks the staged path serves: records prepared (comment rows skipped, category codes
    upper-cased) and rows normalized, foreign keys found after ``prepare_record``."""

    class Meta(ProductImporter.Meta):
        name = "test_products_prepared"

    def prepare_record(self, record):
        if record["sku"].startswith("#"):
            return None
        return {**record, "category_code": record["category_code"].upper()}

    def normalize_source_row(self, values):
        return {**values, "name": values["name"].title()}


def _dotted_date(value):
    import datetime as dt

    return dt.datetime.strptime(value, "%d.%m.%Y").date()


def _comma_decimal(value):
    from decimal import Decimal

    return Decimal(value.replace(",", "."))


#: Opened by a test: a run of test_products_waiting waits for it at a row whose SKU is WAIT,
#: so that a test sees the run in the middle of its work (tests/test_background.py).
GATE = threading.Event()


class Crash(BaseException):
    """Not an Exception: nothing on the way catches it, the run's own failure included."""


@djsync.register
class WaitingProductImporter(ProductImporter):
    class Meta(ProductImporter.Meta):
        name = "test_products_waiting"

    def prepare_record(self, record):
        if record["sku"] == "WAIT" and not GATE.wait(30):
            raise RuntimeError("the test never opened the gate")
        if record["sku"] == "CRASH":
            raise Crash("the process lost its footing")
        return record


@djsync.register
class DottedProductImporter(ProductImporter):
    """Custom converters for a source that writes 31.01.2026 and 1,50."""

    updated = djsync.Field(converter=_dotted_date)
    price = djsync.Field(converter=_comma_decimal)

    class Meta(ProductImporter.Meta):
        name = "test_products_dotted"


@djsync.register
class StrictStockImporter(HookedProductImporter):
    """A column that must be present even though its empty cells have a default."""

    qty = djsync.Field("stock", default=0, required=True)

    class Meta(HookedProductImporter.Meta):
        name = "test_products_strict_stock"


# -- django-import-export resources as importers (tests/test_resources.py) -------------------

from djsync.mapping.resources import ResourceImporter, importer_from_resource  # noqa: E402

from .resources import CategoryResource, PlainProductResource, ProductResource  # noqa: E402


@djsync.register
class ProductResourceImporter(ResourceImporter):
    class Meta:
        name = "test_resource_products"
        resource_class = ProductResource
        delete = True


importer_from_resource(PlainProductResource, name="test_resource_plain")
importer_from_resource(CategoryResource, name="test_resource_categories", delete=True)


# -- many-to-many memberships (tests/test_memberships.py) ------------------------------------

from djsync.mapping.memberships import MembershipImporter  # noqa: E402

from .models import Employee, Team  # noqa: E402


@djsync.register
class EmployeeImporter(djsync.Importer):
    department = djsync.Field("dept", required=False)

    class Meta:
        name = "test_employees"
        model = Employee
        keys = ["number"]
        fields = ["number", "name"]
        delete = True


@djsync.register
class TeamImporter(djsync.Importer):
    class Meta:
        name = "test_teams"
        model = Team
        keys = ["code"]
        fields = ["code"]
        delete = True


@djsync.register
class TeamMembersImporter(MembershipImporter):
    class Meta:
        name = "test_team_members"
        relation = Team.members
        group_column = "team"
        group_lookup = "code"
        member_column = "employee"
        member_lookup = "number"


@djsync.register
class ShelfImporter(djsync.Importer):
    """A foreign key by natural key that stores the parent's ``to_field``, not its pk."""

    category = djsync.Field("category_code", lookup="code", required=False)

    class Meta:
        name = "test_shelves"
        model = Shelf
        keys = ["code"]
        fields = ["code"]
        delete = True


@djsync.register
class BookImporter(djsync.Importer):
    """Writes django-simple-history records of what it syncs (tests/test_batch_signals.py)."""

    class Meta:
        name = "test_books"
        model = Book
        keys = ["code"]
        fields = ["code", "title", "copies"]
        delete = True
        history = True


@djsync.register
class EditionImporter(djsync.Importer):
    """History written in SQL with every option (tests/test_history_sql.py)."""

    book = djsync.Field("book_code", lookup="code", required=False)

    class Meta:
        name = "test_editions"
        model = Edition
        keys = ["isbn"]
        fields = ["isbn", "title", "price", "printed", "sold", "signed", "notes"]
        delete = True
        history = True


@djsync.register
class PamphletImporter(djsync.Importer):
    """History SQL cannot write: bulk_history_create does (tests/test_history_sql.py)."""

    class Meta:
        name = "test_pamphlets"
        model = Pamphlet
        keys = ["code"]
        fields = ["code", "title"]
        history = True


@djsync.register
class AliasedProductImporter(djsync.Importer):
    """Declared aliases, for the column mapping (tests/test_columns.py)."""

    sku = djsync.Field(aliases=["Article", "Item no"])
    name = djsync.Field(aliases=["Désignation"])
    price = djsync.Field(aliases=["Prix", "Unit price"])
    qty = djsync.Field(required=False, aliases=["Quantity"])

    class Meta:
        name = "test_products_aliased"
        model = Product
        keys = ["sku"]


@djsync.register
class RealtimeProductImporter(djsync.Importer):
    """Listings (the source model) into products, kept in step as they change (real time)."""

    class Meta:
        name = "test_realtime_products"
        model = Product
        keys = ["sku"]
        fields = ["sku", "name", "price", "qty", "active"]
        delete = True
        source = {"kind": "queryset", "model": "testapp.Listing"}
        querysets = {"active": lambda: Listing.objects.filter(active=True)}

"""django-import-export resources as djsync importers: same rows as import-export, plus deletes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import tablib
from django.db import transaction
from import_export import fields, resources, widgets

import djsync
from djsync.exceptions import ConfigurationError, RowErrorsFound
from djsync.exports.jobs import export_queryset
from djsync.mapping.registry import get_importer_class
from djsync.mapping.resources import ResourceImporter, importer_from_resource
from djsync.runs.orchestrator import apply_previewed
from tests.testapp.models import Category, Product, Team
from tests.testapp.resources import PlainProductResource, ProductResource

HEADER = ["sku", "Title", "price", "stock", "category_code", "updated", "active", "label"]
DAY2 = [
    ["A", "Saw", "9.50", "3", "tools", "31.01.2026", "1", "x"],  # unchanged
    ["B", "Kite XL", "4.5", "2", "tools", "01.02.2026", "0", ""],  # updated
    ["D", "Drill", "120", "5", "tools", "", "1", ""],  # new
    ["E", "Ball", "2.25", "0", "toys", "15.03.2026", "TRUE", ""],  # new
]  # C is missing: import-export leaves it, djsync deletes it


@pytest.fixture
def catalogue(db):
    tools = Category.objects.create(code="tools", name="Tools")
    toys = Category.objects.create(code="toys", name="Toys")
    Product.objects.create(
        sku="A", name="Saw", price="9.50", qty=3, category=tools, updated=dt.date(2026, 1, 31)
    )
    Product.objects.create(sku="B", name="Kite", price="4.00", qty=1, category=toys)
    Product.objects.create(sku="C", name="Old", price="1.00", qty=0, active=False)


@pytest.fixture
def day2(tmp_path):
    def write(rows=DAY2, header=HEADER, name="products.csv"):
        data = tablib.Dataset(*rows, headers=header)
        path = tmp_path / name
        path.write_text(data.export("csv"), encoding="utf-8")
        return path

    return write


def snapshot() -> list[tuple]:
    return sorted(
        Product.objects.values_list(
            "sku", "name", "price", "qty", "category__code", "updated", "active", "region"
        )
    )


def import_export(resource_class, path) -> tuple[dict, list[tuple]]:
    """What django-import-export itself does with the file; rolled back afterwards."""
    dataset = tablib.Dataset().load(path.read_text(encoding="utf-8"), format="csv")
    with transaction.atomic():
        result = resource_class().import_data(dataset, dry_run=False, raise_errors=True)
        rows = snapshot()
        transaction.set_rollback(True)
    return dict(result.totals), rows


def test_same_creates_updates_and_rows_as_import_export(catalogue, day2, make_job):
    path = day2()
    totals, expected = import_export(ProductResource, path)
    assert (totals["new"], totals["update"], totals["skip"], totals["delete"]) == (2, 1, 1, 0)
    job = make_job("test_resource_products")
    run = djsync.run(job, file=path, delete=False)
    assert run.status == "succeeded", run.error
    assert (run.created, run.updated, run.unchanged, run.deleted) == (2, 1, 1, 0)
    assert snapshot() == expected
    b = Product.objects.get(sku="B")
    assert (b.name, b.price, b.qty, b.category.code) == ("Kite XL", Decimal("4.50"), 2, "tools")
    assert (b.updated, b.active) == (dt.date(2026, 2, 1), False)


def test_rows_missing_from_the_file_are_deleted(catalogue, day2, make_job):
    path = day2()
    _, kept_by_import_export = import_export(ProductResource, path)
    run = djsync.run(make_job("test_resource_products"), file=path)  # the importer deletes
    assert (run.created, run.updated, run.unchanged, run.deleted) == (2, 1, 1, 1)
    assert snapshot() == [row for row in kept_by_import_export if row[0] != "C"]
    assert list(run.changes.filter(action="delete").values_list("key", flat=True)) == [["C"]]


def test_preview_writes_nothing_then_applies_exactly_that(catalogue, day2, make_job):
    before = snapshot()
    run = djsync.run(make_job("test_resource_products"), file=day2(), dry_run=True)
    assert run.status == "previewed"
    assert snapshot() == before
    update = run.changes.get(action="update")
    assert update.key == ["B"]
    assert set(update.changed_fields) == {"name", "price", "qty", "category", "updated", "active"}
    assert update.after["category"] == "tools" and update.before["category"] == "toys"
    apply_previewed(run)
    assert Product.objects.filter(sku__in=["D", "E"]).count() == 2
    assert not Product.objects.filter(sku="C").exists()


def test_widget_errors_are_row_errors_naming_row_and_column(catalogue, day2, make_job):
    rows = [
        ["A", "Saw", "nine", "3", "tools", "31.01.2026", "1", ""],
        ["F", "Fan", "3", "1", "garden", "31.01.2026", "1", ""],
        ["G", "Gum", "1", "1", "toys", "2026-01-31", "1", ""],
    ]
    before = snapshot()
    with pytest.raises(RowErrorsFound) as info:
        djsync.run(make_job("test_resource_products"), file=day2(rows))
    run = info.value.run
    errors = {(e.row, e.column): e.message for e in run.row_errors.all()}
    assert errors[(2, "price")] == "'nine': not a number (DecimalWidget)"
    assert errors[(3, "category_code")] == "no category with code 'garden'"
    # The resource reads dates as %d.%m.%Y:
    assert errors[(4, "updated")].endswith(
        "could not be parsed using defined formats. (DateWidget)"
    )
    assert snapshot() == before


def test_model_field_limits_are_checked_after_the_widget(catalogue, day2, make_job):
    rows = [["A", "x" * 201, "9.999", "3", "tools", "", "1", ""]]
    with pytest.raises(RowErrorsFound) as info:
        djsync.run(make_job("test_resource_products"), file=day2(rows))
    messages = {e.column: e.message for e in info.value.run.row_errors.all()}
    assert messages["Title"] == "201 characters; the field allows at most 200"
    assert "decimal places" in messages["price"]


def test_meta_fields_and_exclude_decide_what_is_mapped():
    importer = get_importer_class("test_resource_products")()
    assert importer.keys == ["sku"]
    columns = {name: f.column for name, f in importer.bound_fields.items()}
    assert columns == {
        "sku": "sku",
        "name": "Title",
        "price": "price",
        "qty": "stock",
        "category": "category_code",
        "updated": "updated",
        "active": "active",
    }
    assert importer.bound_fields["category"].lookup == "code"
    assert importer.skipped_fields == {"label": "read-only"}
    plain = get_importer_class("test_resource_plain")()
    assert set(plain.bound_fields) == {"sku", "name", "price", "qty", "updated", "active"}


def test_plain_resource_matches_import_export_on_day_one(db, day2, make_job):
    header = ["sku", "name", "price", "qty", "updated", "active"]
    rows = [["P1", "Pen", "1.20", "10", "2026-01-02", "1"], ["P2", "Ink", "3", "", "", "0"]]
    rows[1][3] = "4"  # import-export cannot store an empty quantity (NOT NULL)
    path = day2(rows, header)
    totals, expected = import_export(PlainProductResource, path)
    run = djsync.run(make_job("test_resource_plain"), file=path)
    assert (run.created, totals["new"]) == (2, 2)
    assert snapshot() == expected
    run = djsync.run("test-resource-plain", file=path)
    totals, _ = import_export(PlainProductResource, path)
    assert (run.unchanged, totals["skip"]) == (2, 2)


def test_an_empty_cell_takes_the_model_default_where_import_export_would_fail(db, day2, make_job):
    path = day2(
        [["P2", "Ink", "3", "", "", "0"]], ["sku", "name", "price", "qty", "updated", "active"]
    )
    run = djsync.run(make_job("test_resource_plain"), file=path)
    assert run.created == 1
    assert Product.objects.get(sku="P2").qty == 0


def test_before_import_row_runs_on_each_record(db, day2):
    class UpperResource(resources.ModelResource):
        class Meta:
            model = Category
            fields = ("code", "name")
            import_id_fields = ("code",)

        def before_import_row(self, row, **kwargs):
            row["code"] = row["code"].upper()

    cls = importer_from_resource(UpperResource, name="test_resource_upper", register_it=False)
    from djsync.sources import FileSource

    path = day2([["a", "Alpha"], ["b", "Beta"]], ["code", "name"])
    importer = cls()
    importer.fast_path = False  # the plan's actions in memory, not stored on a run
    plan = importer.build_plan(FileSource(path), cls.default_switches())
    assert sorted(action.key for action in plan.creates) == [("A",), ("B",)]


def test_resource_default_fills_empty_cells(db, day2):
    class NamedResource(resources.ModelResource):
        name = fields.Field(attribute="name", column_name="name", default="unnamed")

        class Meta:
            model = Category
            fields = ("code", "name")
            import_id_fields = ("code",)

    cls = importer_from_resource(NamedResource, register_it=False)
    from djsync.sources import FileSource

    importer = cls()
    importer.fast_path = False
    plan = importer.build_plan(
        FileSource(day2([["a", ""]], ["code", "name"])), cls.default_switches()
    )
    assert plan.creates[0].values == {"code": "a", "name": "unnamed"}


def test_registered_by_name_and_options_pass_through():
    cls = get_importer_class("test_resource_categories")
    assert issubclass(cls, ResourceImporter) and cls.delete is True
    with pytest.raises(TypeError, match="unknown importer options: delet"):
        importer_from_resource(ProductResource, delet=True, register_it=False)


def test_resources_djsync_cannot_follow_are_refused_clearly():
    class ByName(widgets.ForeignKeyWidget):
        def get_queryset(self, value, row, *args, **kwargs):
            return self.model.objects.filter(name__iexact=row["category_name"])

    class CustomFk(resources.ModelResource):
        category = fields.Field(
            attribute="category", column_name="category", widget=ByName(Category, "name")
        )

        class Meta:
            model = Product
            fields = ("sku", "category")
            import_id_fields = ("sku",)

    with pytest.raises(ConfigurationError, match="ByName overrides get_queryset"):
        importer_from_resource(CustomFk, register_it=False)

    class NotUnique(resources.ModelResource):
        category = fields.Field(
            attribute="category",
            column_name="category",
            widget=widgets.ForeignKeyWidget(Category, "name"),
        )

        class Meta:
            model = Product
            fields = ("sku", "category")
            import_id_fields = ("sku",)

    with pytest.raises(ConfigurationError, match="Category.name is not unique"):
        importer_from_resource(NotUnique, register_it=False)

    class BadKey(resources.ModelResource):
        class Meta:
            model = Product
            fields = ("sku", "name")
            import_id_fields = ("code",)

    with pytest.raises(ConfigurationError, match="import_id_fields names 'code'"):
        importer_from_resource(BadKey, register_it=False)

    class Members(resources.ModelResource):
        class Meta:
            model = Team
            fields = ("code", "members")
            import_id_fields = ("code",)

    cls = importer_from_resource(Members, register_it=False)
    assert "members" in cls.skipped_fields and set(cls.resource_fields) == {"code"}


def test_a_djsync_field_on_the_importer_replaces_the_resource_field(db, day2):
    class Override(ResourceImporter):
        category = djsync.Field("category_code", lookup="code", required=False)

        class Meta:
            resource_class = ProductResource

    importer = Override()
    assert type(importer.bound_fields["category"]).__name__ == "BoundField"
    assert importer.bound_fields["category"].spec.required is False


def test_export_writes_the_resource_columns_so_the_file_reads_back(catalogue, tmp_path, make_job):
    importer = get_importer_class("test_resource_products")()
    result = export_queryset(
        Product.objects.order_by("sku"), tmp_path / "out.csv", importer=importer
    )
    text = result.path.read_text(encoding="utf-8").splitlines()
    assert text[0] == "sku,Title,price,stock,category_code,updated,active"
    run = djsync.run(make_job("test_resource_products"), file=result.path, dry_run=True)
    assert run.counts == {"created": 0, "updated": 0, "deleted": 0, "unchanged": 3, "errors": 0}

"""SQL and queryset sources, reading from a second database ("other") on PostgreSQL and SQLite."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connections

import djsync
from djsync.exceptions import ConfigurationError, MappingError, SourceError
from djsync.sources import QuerySetSource, SqlSource, get_source
from tests.testapp.models import Category, Product

pytestmark = pytest.mark.django_db(databases=["default", "other"])

LEGACY_QUERY = (
    "SELECT code AS sku, title AS name, cost AS price, stock AS qty, changed AS updated, "
    "live AS active FROM legacy_items"
)


@djsync.register
class ProductCopyImporter(djsync.Importer):
    """Keeps the "other" database's products equal to default's (a reporting copy)."""

    category = djsync.Field("category_code", lookup="code", required=False)

    class Meta:
        name = "test_products_copy"
        model = Product
        database = "other"
        keys = ["sku"]
        fields = ["sku", "name", "price", "qty", "updated", "active"]
        delete = True
        source = {
            "kind": "queryset",
            "model": "testapp.Product",
            "using": "default",
            "fields": {
                "sku": "sku",
                "name": "name",
                "price": "price",
                "qty": "qty",
                "updated": "updated",
                "active": "active",
                "category_code": "category__code",
            },
        }


def legacy_table(rows: list[tuple]) -> None:
    with connections["other"].cursor() as cursor:
        cursor.execute(
            "CREATE TABLE legacy_items (code varchar(32), title varchar(200), "
            "cost numeric(10, 2), stock integer, changed date, live boolean)"
        )
        cursor.executemany("INSERT INTO legacy_items VALUES (%s, %s, %s, %s, %s, %s)", rows)


ROWS = [
    ("L1", "Lamp", Decimal("1.50"), 3, "2026-01-02", True),
    ("L2", "Kite", Decimal("9.00"), 1, None, False),
    ("L3", "Drum", Decimal("12.25"), 0, "2026-02-01", True),
]


def test_sql_job_reads_another_database(make_job):
    legacy_table(ROWS)
    job = make_job("test_products", source={"kind": "sql", "query": "legacy_items"})
    run = djsync.run(job)
    assert run.status == "succeeded", run.error
    assert run.counts["created"] == 3
    assert run.source_name == "query 'legacy_items'"
    lamp = Product.objects.get(sku="L1")
    assert (lamp.price, lamp.qty, str(lamp.updated), lamp.active) == (
        Decimal("1.50"),
        3,
        "2026-01-02",
        True,
    )
    assert not Product.objects.using("other").exists()  # the source is only read
    with connections["other"].cursor() as cursor:
        cursor.execute("UPDATE legacy_items SET cost = 2 WHERE code = 'L1'")
        cursor.execute("DELETE FROM legacy_items WHERE code = 'L2'")
    again = djsync.run(job)
    assert again.counts == {"created": 0, "updated": 1, "deleted": 1, "unchanged": 1, "errors": 0}


def test_sql_query_with_params():
    legacy_table(ROWS)
    source = SqlSource(
        LEGACY_QUERY + " WHERE live = %s ORDER BY code", using="other", params=[True]
    )
    assert [r["sku"] for r in source.read()] == ["L1", "L3"]
    assert source.columns == ["sku", "name", "price", "qty", "updated", "active"]


def test_rows_stream_through_a_server_side_cursor_on_postgresql():
    legacy_table([(f"S{i}", "x", 1, i, None, True) for i in range(50)])
    source = SqlSource(LEGACY_QUERY, using="other", chunk_size=10)
    records = source.read()
    next(records)
    connection = connections["other"]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_cursors WHERE name LIKE 'djsync_sql_%%'")
            assert cursor.fetchone()[0] == 1  # rows are fetched from a named (server) cursor
    assert len(list(records)) == 49


def test_a_missing_column_is_a_mapping_error_and_nothing_is_written(make_job):
    legacy_table(ROWS)
    job = make_job("test_products", source={"kind": "sql", "query": "legacy_items_short"})
    with pytest.raises(MappingError, match="missing columns 'price', 'updated', 'active'") as info:
        djsync.run(job)
    assert "query 'legacy_items_short'" in str(info.value)
    assert "'sku', 'name', 'qty'" in str(info.value)
    assert info.value.run.status == "failed"
    assert not Product.objects.exists()


def test_an_empty_result_is_not_a_mapping_error(make_job):
    legacy_table([])
    job = make_job("test_products", source={"kind": "sql", "query": "legacy_items"})
    run = djsync.run(job)
    assert run.status == "succeeded" and run.counts["created"] == 0


def test_a_failing_query_is_a_source_error():
    source = SqlSource("SELECT nope FROM no_such_table", using="other")
    with pytest.raises(SourceError, match="query on database 'other': the query failed"):
        list(source.read())


def test_a_column_named_twice_is_a_source_error():
    legacy_table(ROWS)
    source = SqlSource("SELECT code AS sku, title AS sku FROM legacy_items", using="other")
    with pytest.raises(SourceError, match="names column 'sku' twice"):
        list(source.read())


def test_unknown_alias_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="no database 'nowhere' in DATABASES"):
        get_source({"kind": "sql", "using": "nowhere", "query": "SELECT 1"}, trusted=True)


# -- queryset source ------------------------------------------------------------------------


def test_queryset_keeps_a_copy_in_another_database_in_sync(make_job):
    tools = Category.objects.create(code="tools", name="Tools")
    Category.objects.using("other").create(code="tools", name="Tools")
    Product.objects.create(sku="A", name="Saw", price=5, category=tools)
    Product.objects.create(sku="B", name="Axe", price=7)
    Product.objects.using("other").create(sku="OLD", name="Gone", price=1)
    job = make_job("test_products_copy")
    run = djsync.run(job, force=True)
    assert run.status == "succeeded", run.error
    assert run.counts == {"created": 2, "updated": 0, "deleted": 1, "unchanged": 0, "errors": 0}
    copy = Product.objects.using("other")
    assert sorted(copy.values_list("sku", "category__code")) == [("A", "tools"), ("B", None)]
    assert Product.objects.count() == 2  # default is the source: untouched

    Product.objects.filter(sku="B").update(price=8)
    again = djsync.run(job)
    assert again.counts["updated"] == 1 and again.counts["unchanged"] == 1
    assert copy.get(sku="B").price == Decimal("8.00")


def test_queryset_source_filters_renames_and_orders():
    Product.objects.using("other").create(sku="X1", name="One", price=1, region="us")
    Product.objects.using("other").create(sku="X2", name="Two", price=2, region="eu")
    Product.objects.using("other").create(sku="X3", name="Three", price=3, region="eu")
    source = get_source(
        {
            "kind": "queryset",
            "model": "testapp.Product",
            "using": "other",
            "filter": {"region": "eu"},
            "fields": {"code": "sku", "title": "name"},
            "order_by": ["-sku"],
        },
        trusted=True,
    )
    assert list(source.read()) == [{"code": "X3", "title": "Three"}, {"code": "X2", "title": "Two"}]
    assert source.columns == ["code", "title"]


def test_queryset_source_from_python_and_default_fields():
    Category.objects.create(code="c", name="C")
    source = QuerySetSource(queryset=Category.objects.filter(code="c"))
    records = list(source.read())
    assert records[0]["code"] == "c" and "id" in records[0]


def test_queryset_source_errors():
    with pytest.raises(ConfigurationError, match="no model 'testapp.Nope'"):
        get_source({"kind": "queryset", "model": "testapp.Nope"}, trusted=True)
    source = get_source(
        {"kind": "queryset", "model": "testapp.Product", "fields": ["nope"]}, trusted=True
    )
    with pytest.raises(SourceError, match="bad field in the queryset"):
        list(source.read())


@pytest.mark.parametrize("kind", ["queryset", "sql"])
def test_a_source_on_the_target_database_does_not_hang_the_run(make_job, kind):
    """A source that reads the target's own connection: the staged path would COPY into the
    connection the source's server-side cursor still reads (a wait for ever), so the run
    takes the generic path and finishes."""
    Product.objects.create(sku="A1", name="Lamp", price=1, qty=1)
    Product.objects.create(sku="A2", name="Desk", price=1, qty=1)
    if kind == "queryset":
        source = QuerySetSource(
            queryset=Product.objects.all(), fields={"code": "sku", "name": "name"}
        )
    else:
        source = SqlSource("SELECT sku AS code, name FROM testapp_product ORDER BY sku")
    assert source.database == "default"
    run = djsync.run(make_job("test_categories"), source=source)
    assert run.status == "succeeded" and run.created == 2
    assert sorted(Category.objects.values_list("code", "name")) == [("A1", "Lamp"), ("A2", "Desk")]

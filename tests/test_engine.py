"""The engine end to end, where the path does not matter or only one path applies: queries per
run, column matching and mapping errors, the run history, run options, hooks and the Python
API — each through ``djsync.run`` on the suite's database.

What a sync does to the target (actions, keys, lookups, scope, switches, limits, the delete
guard, dry runs, row errors, previews) is in tests/test_differential.py, on both paths."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import djsync
from djsync import queue
from djsync.exceptions import LimitExceeded, MappingError, RowErrorsFound
from djsync.models import SyncJob, SyncRun
from tests.testapp.models import Category, Product


def row(sku: str, name: str = "Thing", price: Any = "1.00", qty: Any = "1", **more: Any) -> dict:
    return {
        "sku": sku,
        "name": name,
        "price": price,
        "qty": qty,
        "updated": "",
        "active": "yes",
        **more,
    }


def seed(*skus: str, region: str = "eu", **fields: Any) -> None:
    for sku in skus:
        Product.objects.create(
            sku=sku, name="Thing", price=Decimal("1.00"), qty=1, region=region, **fields
        )


def skus(**filters: Any) -> list[str]:
    return sorted(Product.objects.filter(**filters).values_list("sku", flat=True))


@pytest.fixture
def job(make_job) -> SyncJob:
    return make_job("test_products")


# -- queries ---------------------------------------------------------------------------------
def test_update_writes_only_the_changed_fields(job, write_csv):
    seed("A1", "A2")
    Product.objects.filter(sku="A2").update(name="Other")
    path = write_csv([row("A1", price="9.99"), row("A2", name="Other")])
    with CaptureQueriesContext(connection) as queries:
        run = djsync.run(job, file=path)
    assert run.counts["updated"] == 1
    updates = [q["sql"] for q in queries if 'UPDATE "testapp_product"' in q["sql"]]
    assert len(updates) == 1
    assert '"price"' in updates[0]
    assert all(f'"{name}"' not in updates[0] for name in ("name", "qty", "active", "sku"))
    change = run.changes.get()
    assert change.changed_fields == ["price"]
    assert change.before == {"price": "1.00"} and change.after == {"price": "9.99"}


def test_foreign_key_lookup_is_one_query_per_run(job, write_csv):
    Category.objects.bulk_create([Category(code=f"C{i}", name=f"C{i}") for i in range(30)])
    rows = [row(f"A{i}", category_code=f"C{i % 30}") for i in range(120)]
    with CaptureQueriesContext(connection) as queries:
        run = djsync.run(job, file=write_csv(rows))
    assert run.counts["created"] == 120
    # One query reads the categories' codes; the target read joins them, without a query per row.
    lookups = [q["sql"] for q in queries if 'FROM "testapp_category"' in q["sql"]]
    assert len(lookups) == 1, lookups
    assert Product.objects.filter(category__code="C7").count() == 4


def test_queries_do_not_grow_with_the_rows(make_job, write_csv):
    """Reading, diffing, storing and applying take a fixed number of queries, whatever the
    number of rows (batches aside)."""

    def queries_for(size: int, job: SyncJob) -> int:
        Product.objects.all().delete()
        seed(*[f"A{i}" for i in range(size)])
        rows = [row(f"A{i}", price="2.00" if i % 2 else "1.00") for i in range(size)]
        rows += [row(f"N{i}") for i in range(size)]
        with CaptureQueriesContext(connection) as queries:
            run = djsync.run(job, file=write_csv(rows, name=f"{size}.csv"))
        half = size // 2
        assert run.counts == {
            "created": size,
            "updated": half,
            "deleted": 0,
            "unchanged": half,
            "errors": 0,
        }
        return len(queries)

    job = make_job("test_products")
    queries_for(4, job)  # the first run of a session may set things up once
    small, large = queries_for(20, job), queries_for(200, job)
    # 180 more creates and 90 more updates: a few more batches (SQLite caps the parameters
    # of one statement), never a query per row.
    assert large - small <= 5, (small, large)


@pytest.fixture
def three_way(write_csv):
    """A target and a file that need one create, one update and one delete."""
    seed("SAME", "CHANGE", "GONE")
    return write_csv([row("SAME"), row("CHANGE", price="3.00"), row("NEW")])


# -- columns ---------------------------------------------------------------------------------
def test_missing_key_column_is_a_mapping_error_naming_the_column(job, write_csv):
    seed("A1")
    path = write_csv(
        [{"SKU_CODE": "A1", "name": "x", "price": "1", "qty": "1", "updated": "", "active": "1"}]
    )
    with pytest.raises(MappingError) as info:
        djsync.run(job, file=path)
    assert str(info.value).startswith(f"{path}: missing column 'sku' (the file has: 'SKU_CODE',")
    assert skus() == ["A1"]
    assert SyncRun.objects.get().status == "failed"


def test_missing_required_columns_are_named(job, write_csv):
    with pytest.raises(MappingError, match="missing columns 'price', 'qty'"):
        djsync.run(job, file=write_csv([{"sku": "A1", "name": "x", "updated": "", "active": "1"}]))


def test_columns_match_regardless_of_case_and_extra_columns_are_ignored(job, write_csv):
    path = write_csv(
        [
            {
                "SKU": "A1",
                " Name ": "Lamp",
                "PRICE": "2",
                "qty": "1",
                "updated": "",
                "active": "1",
                "colour": "red",
            }
        ]
    )
    run = djsync.run(job, file=path)
    assert run.status == "succeeded", run.error
    assert Product.objects.get().name == "Lamp"


# -- history -----------------------------------------------------------------------------
def test_every_run_is_recorded(job, three_way, write_csv):
    djsync.run(job, file=three_way, dry_run=True, force=True)
    with pytest.raises(LimitExceeded):
        djsync.run(job, file=three_way, force=True, max_total=0)
    with pytest.raises(RowErrorsFound):
        djsync.run(job, file=write_csv([row("X", price="?")], name="bad.csv"))
    djsync.run(job, file=three_way, force=True)
    runs = list(SyncRun.objects.order_by("pk"))
    assert [r.status for r in runs] == ["previewed", "failed", "failed", "succeeded"]
    assert [r.trigger for r in runs] == ["api"] * 4
    assert all(r.started_at and r.finished_at and r.finished_at >= r.started_at for r in runs)
    assert [r.changes.count() for r in runs] == [3, 3, 3, 3]
    assert runs[2].row_errors.get().column == "price"
    assert runs[1].options == {"force": True, "max_total": 0}
    assert runs[3].source_name == str(three_way)
    assert job.last_run == runs[3]


def test_unknown_run_option_fails_clearly(job, three_way):
    from djsync.exceptions import ConfigurationError

    with pytest.raises(TypeError, match="colour"):  # djsync.run's signature names each option
        djsync.run(job, file=three_way, colour="red")
    with pytest.raises(ConfigurationError, match="unknown run options: colour"):
        queue.queue_run(job, colour="red")
    with pytest.raises(ConfigurationError, match=r"run option max_delete='ten' is not valid"):
        queue.queue_run(job, max_delete="ten")
    assert not SyncRun.objects.exists()  # refused when queued, not on the worker


def test_unknown_job_names_the_known_ones(job):
    from djsync.exceptions import ConfigurationError

    with pytest.raises(
        ConfigurationError, match=r"no sync job named 'nope' \(jobs: test-products\)"
    ):
        djsync.run("nope")


def test_job_without_a_source_needs_a_file(job):
    from djsync.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="has no source; give it a file"):
        djsync.run(job)


# -- hooks -------------------------------------------------------------------------------
def test_hooks(make_job, write_csv):
    seed("A1")
    Product.objects.filter(sku="A1").update(name="RED LAMP", qty=0)
    path = write_csv(
        [
            {"sku": "a1", "name": "red lamp", "price": "1.00"},  # unchanged after the hooks
            {"sku": "#comment", "name": "", "price": ""},  # skipped by prepare_record
            {"sku": "b2", "name": "blue kite", "price": "2"},
            {"sku": "BAD", "name": "x", "price": "1"},
        ]
    )
    run = djsync.run(make_job("test_products_hooked"), file=path, on_row_error="skip")
    assert run.status == "succeeded", run.error
    assert run.counts == {"created": 1, "updated": 0, "deleted": 0, "unchanged": 1, "errors": 1}
    kite = Product.objects.get(sku="B2")
    assert (kite.name, kite.qty) == ("Blue Kite", 0)  # default for the absent "stock" column
    error = run.row_errors.get()
    assert (error.row, error.message) == (5, "rows with SKU BAD are refused")


def test_python_api_returns_the_run_with_plan_and_counts(job, three_way):
    run = djsync.run("test-products", file=three_way, dry_run=True, force=True)
    assert isinstance(run, SyncRun) and run.pk
    assert run.counts == run.plan.counts
    assert [a.key for a in run.plan.creates] == [("NEW",)]
    assert [(a.old, a.new) for a in run.plan.updates] == [
        ({"price": Decimal("1.00")}, {"price": Decimal("3.00")})
    ]


def test_required_column_with_a_default_must_still_be_present(make_job, write_csv):
    job = make_job("test_products_strict_stock")
    with pytest.raises(MappingError, match="missing column 'stock'"):
        djsync.run(job, file=write_csv([{"sku": "A1", "name": "x", "price": "1"}]))
    path = write_csv([{"sku": "A1", "name": "x", "price": "1", "stock": ""}], name="ok.csv")
    run = djsync.run(job, file=path)
    assert run.status == "succeeded", run.error
    assert Product.objects.get().qty == 0  # the empty cell takes the default

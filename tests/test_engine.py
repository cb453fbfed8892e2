"""The engine end to end: keys, lookups, scope, switches, limits, the delete guard, dry runs,
row errors and the run history — each through ``djsync.run`` on the suite's database."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import djsync
from djsync.exceptions import DeleteGuardError, LimitExceeded, MappingError, RowErrorsFound
from djsync.models import SyncChange, SyncJob, SyncRowError, SyncRun
from tests.testapp.models import Category, Member, Product

COLUMNS = ["sku", "name", "price", "qty", "updated", "active"]


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


def snapshot() -> list[tuple]:
    return list(Product.objects.order_by("sku").values_list("sku", "name", "price", "qty"))


@pytest.fixture
def job(make_job) -> SyncJob:
    return make_job("test_products")


# -- keys, values, unchanged -------------------------------------------------------------
def test_create_update_delete_and_unchanged(job, write_csv):
    seed("KEEP", "CHANGE", "GONE")
    path = write_csv([row("KEEP"), row("CHANGE", price="2.50", qty="7"), row("NEW", name="Kite")])
    run = djsync.run(job, file=path, force=True)
    assert run.status == "succeeded", run.error
    assert run.counts == {"created": 1, "updated": 1, "deleted": 1, "unchanged": 1, "errors": 0}
    assert skus() == ["CHANGE", "KEEP", "NEW"]
    changed = Product.objects.get(sku="CHANGE")
    assert (changed.price, changed.qty) == (Decimal("2.50"), 7)
    assert run.rows_read == 3
    assert run.rows_applied == 3


def test_values_are_compared_after_conversion(job, write_csv):
    seed("A1")
    Product.objects.filter(sku="A1").update(name="Lamp", price=Decimal("1.5"))
    path = write_csv([row("A1", name="  Lamp ", price="1.50", qty="1.0", active="TRUE")])
    run = djsync.run(job, file=path)
    assert run.counts["unchanged"] == 1 and run.counts["updated"] == 0


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


def test_composite_keys(make_job, write_csv):
    Member.objects.create(team="red", number=1, name="Ann")
    Member.objects.create(team="blue", number=1, name="Bob")
    Member.objects.create(team="blue", number=2, name="Cy")
    path = write_csv(
        [
            {"team": "red", "number": "1", "name": "Ann"},
            {"team": "blue", "number": "1.0", "name": "Bobby"},  # a spreadsheet's 1.0
            {"team": "red", "number": "2", "name": "Dee"},
        ]
    )
    run = djsync.run(make_job("test_members"), file=path, force=True)
    assert run.status == "succeeded", run.error
    assert run.counts == {"created": 1, "updated": 1, "deleted": 1, "unchanged": 1, "errors": 0}
    assert sorted(Member.objects.values_list("team", "number", "name")) == [
        ("blue", 1, "Bobby"),
        ("red", 1, "Ann"),
        ("red", 2, "Dee"),
    ]
    assert sorted(c.key for c in run.changes.all()) == [["blue", 1], ["blue", 2], ["red", 2]]


def test_every_converter_through_a_run(make_job, write_csv):
    path = write_csv(
        [
            {
                "team": "red",
                "number": "7",
                "name": "Eve",
                "nickname": "",
                "note": "",
                "score": "9.5",
                "joined": "2024-01-31",
                "seen": "2024-01-31 13:45:00",
                "alarm": "07:30",
                "vip": "yes",
                "level": "Gold member",
                "token": "12345678-1234-5678-1234-567812345678",
                "extra": '{"tags": ["a"]}',
            }
        ]
    )
    job = make_job("test_members")
    run = djsync.run(job, file=path)
    assert run.status == "succeeded", run.error
    eve = Member.objects.get()
    assert (eve.nickname, eve.note, eve.score, eve.vip, eve.level) == ("", None, 9.5, True, "gold")
    assert eve.joined == dt.date(2024, 1, 31)
    assert eve.seen == dt.datetime(2024, 1, 31, 12, 45, tzinfo=dt.UTC)
    assert eve.alarm == dt.time(7, 30)
    assert str(eve.token) == "12345678-1234-5678-1234-567812345678"
    assert eve.extra == {"tags": ["a"]}
    again = djsync.run(job, file=path)
    assert again.counts["unchanged"] == 1, list(again.changes.values("before", "after"))


# -- foreign keys by natural key ---------------------------------------------------------
def test_foreign_key_found_by_natural_key(job, write_csv):
    toys = Category.objects.create(code="TOY", name="Toys")
    path = write_csv([row("A1", category_code="TOY"), row("A2", category_code="")])
    run = djsync.run(job, file=path)
    assert run.status == "succeeded", run.error
    assert Product.objects.get(sku="A1").category == toys
    assert Product.objects.get(sku="A2").category is None
    assert run.changes.get(key=["A1"]).after["category"] == "TOY"
    books = Category.objects.create(code="BOOK", name="Books")
    moved = djsync.run(job, file=write_csv([row("A1", category_code="BOOK"), row("A2")]))
    assert moved.counts["updated"] == 1
    assert moved.changes.get().before == {"category": "TOY"}
    assert Product.objects.get(sku="A1").category == books


def test_missing_foreign_key_is_a_row_error_naming_row_column_and_value(job, write_csv):
    Category.objects.create(code="TOY", name="Toys")
    path = write_csv([row("A1", category_code="TOY"), row("A2", category_code="NOPE")])
    with pytest.raises(RowErrorsFound) as info:
        djsync.run(job, file=path)
    assert "row 3, column 'category_code': no category with code 'NOPE'" in str(info.value)
    assert Product.objects.count() == 0
    error = SyncRowError.objects.get()
    assert (error.row, error.column, error.value, error.key) == (3, "category_code", "NOPE", ["A2"])
    assert error.raw["category_code"] == "NOPE"


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


# -- scope -------------------------------------------------------------------------------
def test_deletes_happen_only_inside_the_scope(make_job, write_csv):
    seed("EU1", "EU2", "EU3", region="eu")
    seed("US1", "US2", region="us")
    path = write_csv([row("EU1"), row("EU2"), row("EU4")])
    run = djsync.run(make_job("test_products_eu"), file=path)
    assert run.status == "succeeded", run.error
    assert run.counts == {"created": 1, "updated": 0, "deleted": 1, "unchanged": 2, "errors": 0}
    assert skus(region="us") == ["US1", "US2"]
    assert skus(region="eu") == ["EU1", "EU2", "EU4"]
    assert run.stats["testapp.Product"]["rows_in_scope"] == 3


def test_failure_while_applying_rolls_everything_back(make_job, write_csv):
    """A row outside the scope under a key the file creates: the insert fails, nothing stays."""
    seed("EU1", "EU2", region="eu")
    seed("US1", region="us")
    path = write_csv([row("EU1", price="5.00"), row("EU2", price="6.00"), row("NEW"), row("US1")])
    with pytest.raises(Exception) as info:
        djsync.run(make_job("test_products_eu"), file=path)
    assert "IntegrityError" in type(info.value).__name__ or "unique" in str(info.value).lower()
    assert skus() == ["EU1", "EU2", "US1"]
    assert Product.objects.get(sku="EU1").price == Decimal("1.00")
    run = SyncRun.objects.get()
    assert run.status == "failed" and run.error


# -- switches ----------------------------------------------------------------------------
@pytest.fixture
def three_way(write_csv):
    """A target and a file that need one create, one update and one delete."""
    seed("SAME", "CHANGE", "GONE")
    return write_csv([row("SAME"), row("CHANGE", price="3.00"), row("NEW")])


@pytest.mark.parametrize(
    "switch, counts, expected",
    [
        ("create", (0, 1, 1), ["CHANGE", "SAME"]),
        ("update", (1, 0, 1), ["CHANGE", "NEW", "SAME"]),
        ("delete", (1, 1, 0), ["CHANGE", "GONE", "NEW", "SAME"]),
    ],
)
def test_switches_per_run(job, three_way, switch, counts, expected):
    run = djsync.run(job, file=three_way, force=True, **{switch: False})
    assert run.status == "succeeded", run.error
    assert (run.created, run.updated, run.deleted) == counts
    assert skus() == expected
    price = Product.objects.get(sku="CHANGE").price
    assert price == (Decimal("1.00") if switch == "update" else Decimal("3.00"))


def test_switches_per_job(make_job, three_way):
    job = make_job("test_products", create=False, update=False, delete=False)
    run = djsync.run(job, file=three_way)
    assert (run.created, run.updated, run.deleted, run.unchanged) == (0, 0, 0, 1)
    assert skus() == ["CHANGE", "GONE", "SAME"]
    # A run option beats the job.
    run = djsync.run(job, file=three_way, create=True)
    assert (run.created, run.updated, run.deleted) == (1, 0, 0)


def test_delete_is_off_by_default(make_job, three_way):
    from tests.testapp.sync import CategoryImporter

    assert CategoryImporter.delete is False
    Category.objects.create(code="OLD", name="Old")
    job = make_job("test_categories")
    path = three_way.parent / "cats.csv"
    path.write_text("code,name\nNEW,New\n")
    run = djsync.run(job, file=path)
    assert (run.created, run.deleted) == (1, 0)
    assert sorted(Category.objects.values_list("code", flat=True)) == ["NEW", "OLD"]


# -- limits ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "limit, message",
    [
        ({"max_create": 0}, "the plan has 1 creates, more than the limit of 0"),
        ({"max_update": 0}, "the plan has 1 updates, more than the limit of 0"),
        ({"max_delete": 0}, "the plan has 1 deletes, more than the limit of 0"),
        ({"max_total": 2}, "the plan has 3 changes, more than the limit of 2"),
    ],
)
def test_limits_fail_the_run_and_write_nothing(job, three_way, limit, message):
    before = snapshot()
    with pytest.raises(LimitExceeded) as info:
        djsync.run(job, file=three_way, force=True, **limit)
    assert message in str(info.value) and "nothing written" in str(info.value)
    assert snapshot() == before
    run = SyncRun.objects.get()
    assert run.status == "failed" and message in run.error
    assert run.changes.count() == 3, "the plan of a failed run is recorded"


def test_limits_at_the_boundary_pass(job, three_way):
    run = djsync.run(
        job, file=three_way, force=True, max_create=1, max_update=1, max_delete=1, max_total=3
    )
    assert run.status == "succeeded", run.error


def test_limits_per_job(make_job, three_way):
    job = make_job("test_products", max_total=1)
    with pytest.raises(LimitExceeded, match="3 changes, more than the limit of 1"):
        djsync.run(job, file=three_way, force=True)
    assert Product.objects.count() == 3


# -- delete guard ------------------------------------------------------------------------
@pytest.fixture
def ten_products():
    seed(*[f"P{i}" for i in range(10)])


def keep(write_csv, count: int):
    return write_csv([row(f"P{i}") for i in range(count)])


def test_delete_guard_default_half(job, ten_products, write_csv):
    with pytest.raises(DeleteGuardError) as info:
        djsync.run(job, file=keep(write_csv, 4))
    message = str(info.value)
    assert "deletes 6 of 10 rows in scope (60%), more than the delete guard of 50%" in message
    assert "Nothing written" in message
    assert Product.objects.count() == 10
    # Exactly half is allowed.
    run = djsync.run(job, file=keep(write_csv, 5))
    assert run.status == "succeeded" and run.deleted == 5


def test_delete_guard_force(job, ten_products, write_csv):
    run = djsync.run(job, file=keep(write_csv, 1), force=True)
    assert run.status == "succeeded" and Product.objects.count() == 1


def test_delete_guard_per_run(job, ten_products, write_csv):
    run = djsync.run(job, file=keep(write_csv, 3), delete_guard=0.7)
    assert run.deleted == 7 and Product.objects.count() == 3


def test_delete_guard_per_job(make_job, ten_products, write_csv):
    job = make_job("test_products", delete_guard=0.1)
    with pytest.raises(DeleteGuardError, match="deletes 2 of 10 .* delete guard of 10%"):
        djsync.run(job, file=keep(write_csv, 8))
    assert Product.objects.count() == 10


def test_delete_guard_per_importer(make_job, ten_products, write_csv):
    job = make_job("test_products_lenient")  # delete_guard = 0.8
    with pytest.raises(DeleteGuardError, match="deletes 9 of 10 .* delete guard of 80%"):
        djsync.run(job, file=keep(write_csv, 1))
    run = djsync.run(job, file=keep(write_csv, 3))
    assert run.deleted == 7


def test_delete_guard_setting(job, ten_products, write_csv, settings):
    settings.DJSYNC = {**settings.DJSYNC, "DELETE_GUARD": 0.2}
    with pytest.raises(DeleteGuardError, match="delete guard of 20%"):
        djsync.run(job, file=keep(write_csv, 7))


def test_limits_hold_even_when_forced(job, ten_products, write_csv):
    with pytest.raises(LimitExceeded, match="9 deletes, more than the limit of 5"):
        djsync.run(job, file=keep(write_csv, 1), force=True, max_delete=5)
    assert Product.objects.count() == 10


def test_header_only_file_never_wipes_the_table(job, ten_products, tmp_path):
    path = tmp_path / "header.csv"
    path.write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(DeleteGuardError, match="deletes 10 of 10 rows in scope"):
        djsync.run(job, file=path)
    assert Product.objects.count() == 10


def test_empty_file_never_wipes_the_table(job, ten_products, tmp_path):
    from djsync.exceptions import SourceError

    for name, data in [("e.csv", b""), ("e.json", b""), ("e.xlsx", b""), ("e.jsonl", b"")]:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(SourceError):
            djsync.run(job, file=path)
    path = tmp_path / "list.json"
    path.write_text("[]")
    with pytest.raises((MappingError, DeleteGuardError)):
        djsync.run(job, file=path)
    assert Product.objects.count() == 10


def test_a_row_error_without_a_key_blocks_every_delete(make_job, ten_products, write_csv):
    rows = [row(f"P{i}") for i in range(9)] + [row("", name="no key")]
    run = djsync.run(make_job("test_products_lenient"), file=write_csv(rows))
    assert run.deleted == 0 and Product.objects.count() == 10
    assert "nothing is deleted" in run.warnings[0]


# -- dry run -----------------------------------------------------------------------------
def test_dry_run_writes_nothing_and_records_the_plan(job, three_way):
    before = snapshot()
    run = djsync.run(job, file=three_way, dry_run=True, force=True)
    assert run.status == "previewed" and run.dry_run and not run.error
    assert snapshot() == before
    assert run.counts == {"created": 1, "updated": 1, "deleted": 1, "unchanged": 1, "errors": 0}
    stored = {c.action: c for c in SyncChange.objects.filter(run=run)}
    assert stored["create"].after["sku"] == "NEW" and stored["create"].row == 4
    assert stored["update"].before == {"price": "1.00"} and stored["update"].after == {
        "price": "3.00"
    }
    assert stored["delete"].key == ["GONE"] and stored["delete"].before["name"] == "Thing"
    assert run.plan.counts == run.counts  # the plan itself, for callers in this process


def test_dry_run_says_when_a_real_run_would_fail(job, ten_products, write_csv):
    run = djsync.run(job, file=keep(write_csv, 2), dry_run=True)
    assert run.status == "previewed"
    assert run.error.startswith("a real run would fail:") and "delete guard" in run.error
    assert Product.objects.count() == 10


# -- row errors --------------------------------------------------------------------------
def test_duplicate_keys_are_a_row_error_on_every_occurrence(job, write_csv):
    seed("DUP")
    rows = [row("DUP", price="2.00"), row("OK"), row("DUP", price="3.00"), row("DUP")]
    with pytest.raises(RowErrorsFound, match="duplicate key 'DUP'"):
        djsync.run(job, file=write_csv(rows))
    errors = list(SyncRowError.objects.values_list("row", "message"))
    assert [r for r, _ in errors] == [2, 4, 5]
    assert all("duplicate key 'DUP': it appears more than once" == m for _, m in errors)
    assert skus() == ["DUP"] and Product.objects.get().price == Decimal("1.00")


def test_duplicate_keys_with_skip_leave_that_key_alone(job, write_csv):
    seed("DUP", "OTHER")
    rows = [row("DUP", price="2.00"), row("OK"), row("DUP", price="3.00"), row("OTHER")]
    run = djsync.run(job, file=write_csv(rows), on_row_error="skip")
    assert run.status == "succeeded"
    assert run.counts == {"created": 1, "updated": 0, "deleted": 0, "unchanged": 1, "errors": 2}
    assert Product.objects.get(sku="DUP").price == Decimal("1.00")


def test_a_bad_row_and_a_good_row_under_one_key_leave_that_key_alone(job, write_csv):
    seed("OLD")
    rows = [
        row("NEW", price="oops"),  # bad row first, good row after: no create of NEW
        row("NEW", price="2.00"),
        row("OLD", price="3.00"),  # good row first, bad row after: no update of OLD
        row("OLD", qty="many"),
    ]
    run = djsync.run(job, file=write_csv(rows), on_row_error="skip")
    assert run.status == "succeeded"
    assert run.counts == {"created": 0, "updated": 0, "deleted": 0, "unchanged": 0, "errors": 4}
    messages = dict(run.row_errors.values_list("row", "message"))
    assert "duplicate key 'NEW'" in messages[3] and "duplicate key 'OLD'" in messages[4]
    assert snapshot() == [("OLD", "Thing", Decimal("1.00"), 1)]


def test_bad_values_fail_the_run_and_write_nothing(job, write_csv):
    seed("A1")
    rows = [row("A1", price="5.00"), row("A2", price="cheap"), row("A3", qty="2.5")]
    path = write_csv(rows)
    with pytest.raises(RowErrorsFound) as info:
        djsync.run(job, file=path)
    message = str(info.value)
    assert f"2 bad rows in {path}, nothing written" in message
    assert "row 3, column 'price': expected a decimal number, got 'cheap'" in message
    assert "row 4, column 'qty': expected a whole number, got '2.5'" in message
    assert snapshot() == [("A1", "Thing", Decimal("1.00"), 1)]
    run = SyncRun.objects.get()
    assert run.status == "failed" and run.errors == 2
    stored = list(run.row_errors.values_list("row", "column", "value", "key"))
    assert stored == [(3, "price", "cheap", ["A2"]), (4, "qty", "2.5", ["A3"])]
    assert run.changes.count() == 1, "the good rows' plan is kept for the record"


def test_every_bad_cell_of_a_row_is_reported(job, write_csv):
    with pytest.raises(RowErrorsFound):
        djsync.run(job, file=write_csv([row("A1", price="x", qty="y", active="perhaps")]))
    assert sorted(SyncRowError.objects.values_list("column", flat=True)) == [
        "active",
        "price",
        "qty",
    ]


def test_skip_applies_good_rows_and_reports_bad_ones(job, write_csv):
    seed("BAD")
    rows = [row("GOOD"), row("BAD", price="lots"), row("ALSO", qty="")]
    run = djsync.run(job, file=write_csv(rows), on_row_error="skip")
    assert run.status == "succeeded" and not run.error
    assert run.counts == {"created": 2, "updated": 0, "deleted": 0, "unchanged": 0, "errors": 1}
    assert skus() == ["ALSO", "BAD", "GOOD"], "a bad row's key is not deleted"
    error = run.row_errors.get()
    assert (error.row, error.column, error.value) == (3, "price", "lots")
    assert Product.objects.get(sku="ALSO").qty == 0  # empty cell → the model default


def test_skip_per_importer_and_per_job(make_job, write_csv):
    path = write_csv([row("GOOD"), row("BAD", price="lots")])
    assert djsync.run(make_job("test_products_lenient"), file=path).status == "succeeded"
    job = make_job("test_products", name="skipping", on_row_error="skip")
    assert djsync.run(job, file=path).errors == 1


def test_empty_key_is_a_row_error(job, write_csv):
    with pytest.raises(RowErrorsFound, match="row 2, column 'sku': a value is required"):
        djsync.run(job, file=write_csv([row(""), row("A1")]))
    assert Product.objects.count() == 0


def test_empty_required_value_is_a_row_error(job, write_csv):
    with pytest.raises(RowErrorsFound, match="row 2, column 'name': a value is required"):
        djsync.run(job, file=write_csv([row("A1", name="")]))


def test_value_too_long_is_a_row_error(job, write_csv):
    with pytest.raises(RowErrorsFound, match="column 'sku': 33 characters"):
        djsync.run(job, file=write_csv([row("X" * 33)]))


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


def test_absent_optional_column_leaves_the_field_alone(job, write_csv):
    toys = Category.objects.create(code="TOY", name="Toys")
    seed("A1", category=toys)
    run = djsync.run(job, file=write_csv([row("A1")]))  # no category_code column
    assert run.counts["unchanged"] == 1
    assert Product.objects.get().category == toys


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

    with pytest.raises(ConfigurationError, match="unknown run options: colour"):
        djsync.run(job, file=three_way, colour="red")
    assert SyncRun.objects.get().status == "failed"


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


# -- a stored plan applies what the preview showed ---------------------------------------
def test_previewed_plan_applies_the_same_values_as_a_direct_run(make_job, write_csv):
    from djsync.services import apply_previewed

    record = {
        "team": "red",
        "number": "7",
        "name": "Eve",
        "nickname": "",
        "note": "",
        "score": "9.5",
        "joined": "2024-01-31",
        "seen": "2024-01-31 13:45:00",
        "alarm": "07:30",
        "vip": "yes",
        "level": "Gold member",
        "token": "12345678-1234-5678-1234-567812345678",
        "extra": '"just a string"',
    }
    job = make_job("test_members")
    preview = djsync.run(job, file=write_csv([record]), dry_run=True)
    assert Member.objects.count() == 0
    applied = apply_previewed(preview)
    assert applied.status == "succeeded", applied.error
    eve = Member.objects.get()
    assert eve.seen == dt.datetime(2024, 1, 31, 12, 45, tzinfo=dt.UTC)
    assert eve.joined == dt.date(2024, 1, 31) and eve.alarm == dt.time(7, 30)
    assert (eve.level, eve.vip, eve.extra, eve.note) == ("gold", True, "just a string", None)
    again = djsync.run(job, file=write_csv([record], name="again.csv"))
    assert again.counts["unchanged"] == 1


def test_previewed_plan_with_a_custom_converter(make_job, write_csv):
    """Stored values are in the model's own format, not the source's: a converter written
    for the source's format must not be asked to read them back."""
    from djsync.services import apply_previewed

    job = make_job("test_products_dotted")
    preview = djsync.run(
        job, file=write_csv([row("A1", updated="31.01.2026", price="1,50")]), dry_run=True
    )
    assert preview.status == "previewed" and not preview.error, preview.error
    applied = apply_previewed(preview)
    assert applied.status == "succeeded", applied.error
    lamp = Product.objects.get()
    assert (lamp.updated, lamp.price) == (dt.date(2026, 1, 31), Decimal("1.50"))


def test_required_column_with_a_default_must_still_be_present(make_job, write_csv):
    job = make_job("test_products_strict_stock")
    with pytest.raises(MappingError, match="missing column 'stock'"):
        djsync.run(job, file=write_csv([{"sku": "A1", "name": "x", "price": "1"}]))
    path = write_csv([{"sku": "A1", "name": "x", "price": "1", "stock": ""}], name="ok.csv")
    run = djsync.run(job, file=path)
    assert run.status == "succeeded", run.error
    assert Product.objects.get().qty == 0  # the empty cell takes the default

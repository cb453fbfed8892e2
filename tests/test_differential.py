"""One differential suite: every scenario runs on the generic path and on the staged path of
the suite's database (PostgreSQL or SQLite, from DJSYNC_TEST_DB) and must end the same way:
the same target rows, run counts, stored changes and row errors, the same failures.

The ``sync_path`` fixture picks the path. "generic" turns the FAST_PATH setting off; "staged"
leaves it on and checks that every run really took the staged path (its plan is a staged
plan, and the path it recorded in ``stats`` says "staged: <vendor>"), so an importer the
staged path stops serving fails here instead of passing twice on the generic path. Expected outcomes are written out once per scenario, not compared between
the two paths at run time: both paths are held to the same literal answer.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

import djsync
from djsync.backends.staged import StagedSqlPlan as PostgresPlan
from djsync.exceptions import DeleteGuardError, LimitExceeded, MappingError, RowErrorsFound
from djsync.mapping.registry import get_importer_class
from djsync.models import SyncJob, SyncRun
from tests.testapp.models import Category, Employee, Member, Product, Shelf, Team

if connection.vendor == "postgresql":
    from djsync.backends.postgresql import unsupported
else:
    from djsync.backends.sqlite import unsupported

#: Text with every character a COPY stream, a CSV writer or an SQL literal treats specially.
TRICKY = 'tab\there, "quoted", back\\slash \\N and\nnew line; a \\. and \r return'

NO_COUNTS = {"created": 0, "updated": 0, "deleted": 0, "unchanged": 0, "errors": 0}


def counts(created=0, updated=0, deleted=0, unchanged=0, errors=0) -> dict[str, int]:
    return {
        "created": created,
        "updated": updated,
        "deleted": deleted,
        "unchanged": unchanged,
        "errors": errors,
    }


# -- source rows -----------------------------------------------------------------------------
def product(sku: str, name: str = "Thing", price: str = "1.00", **more: Any) -> dict:
    """A test_products record; every column present, optional ones empty."""
    return {
        "sku": sku,
        "name": name,
        "price": price,
        "qty": "1",
        "updated": "",
        "active": "yes",
        "category_code": "",
        **more,
    }


def member(team: str, number: str, name: str = "Ann", **more: Any) -> dict:
    """A test_members record; every column present, optional ones empty."""
    return {
        "team": team,
        "number": number,
        "name": name,
        "note": "",
        "score": "",
        "joined": "",
        "seen": "",
        "alarm": "",
        "vip": "",
        "level": "",
        "token": "",
        "extra": "",
        "nickname": "",
        **more,
    }


#: A product change's fields, in the order a create stores them.
PRODUCT_FIELDS = ["sku", "name", "price", "qty", "updated", "active", "category"]


def stored(sku: str, **more: Any) -> dict:
    """A product as a stored change shows it (a create's after, a delete's before)."""
    values = {"sku": sku, "name": "Thing", "price": "1.00", "qty": 1, "updated": None}
    return {**values, "active": True, "category": None, **more}


def seed(*skus: str, region: str = "eu", **fields: Any) -> None:
    for sku in skus:
        Product.objects.create(
            sku=sku, name="Thing", price=Decimal("1.00"), qty=1, region=region, **fields
        )


# -- what a user sees of a run ---------------------------------------------------------------
def changes(run: SyncRun) -> list[tuple]:
    """The run's stored changes: (action, key, row, before, after, changed_fields), sorted."""
    return sorted(
        (c.action, c.key, c.row, c.before, c.after, c.changed_fields) for c in run.changes.all()
    )


def row_errors(run: SyncRun) -> list[tuple]:
    """The run's stored row errors: (row, column, message), in row order."""
    return [(e.row, e.column, e.message) for e in run.row_errors.order_by("row", "pk")]


def target_rows(model: type) -> list[dict]:
    """Every row of ``model`` without its id, a category by its code, sorted."""
    rows = []
    for obj in model.objects.all():
        values = {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields}
        values.pop("id")
        if "category_id" in values:
            values["category_id"] = obj.category.code if obj.category_id else None
        rows.append(values)
    return sorted(rows, key=repr)


def skus(**filters: Any) -> list[str]:
    return sorted(Product.objects.filter(**filters).values_list("sku", flat=True))


def snapshot() -> list[tuple]:
    return list(Product.objects.order_by("sku").values_list("sku", "name", "price", "qty"))


# -- the two paths ---------------------------------------------------------------------------
@pytest.fixture(params=["generic", "staged"])
def sync_path(request: pytest.FixtureRequest, settings: Any) -> str:
    """The path every run of the test takes. Tests that change DJSYNC merge into it."""
    if request.param == "generic":
        settings.DJSYNC = {**settings.DJSYNC, "FAST_PATH": False}
    return request.param


def _check_path(path: str, run: SyncRun, plan: Any, importer: Any) -> None:
    """The run took ``path``: by its plan's class, and by the path it recorded per model
    (``stats[model]["path"]``, "staged: <vendor>" or "generic: <reason>")."""
    if plan is None:  # failed before a plan was made (an unreadable file, a missing column)
        assert run.status == "failed", f"a {run.status} run without a plan"
        return
    staged = isinstance(plan, PostgresPlan)  # SQLite's staged plan is a subclass
    recorded = recorded_paths(run)
    assert recorded, "the run did not record its path"
    if path == "staged":
        assert staged, f"the staged path was not taken: {unsupported(importer)}"
        assert all(p.startswith("staged: ") for p in recorded), recorded
    else:
        assert not staged, "the generic path was asked for, the staged path was taken"
        assert all(p.startswith("generic: ") for p in recorded), recorded


def recorded_paths(run: SyncRun) -> list[str]:
    """The paths a run recorded, one per model it planned (none before it planned)."""
    return [s["path"] for s in (run.stats or {}).values() if isinstance(s, dict) and "path" in s]


#: Outcomes of the runs of a test on the path that ran first, by test and its other
#: parameters: the other path's runs must end exactly the same way.
_FIRST_PATH: dict[tuple, tuple[str, list[dict]]] = {}


def outcome(run: SyncRun, model: type, tmp_path: Path | None = None) -> dict[str, Any]:
    """Everything a user sees of a run: its record, changes, row errors, the target after it.
    Left out: the path it recorded, and in its error the test's own temporary directory and
    database ids (each test instance has its own)."""
    error = run.error.replace(str(tmp_path), "<tmp>") if tmp_path else run.error
    error = re.sub(r"object \(\d+\)", "object (<pk>)", error)
    stats = {
        name: {k: v for k, v in values.items() if k != "path"}
        for name, values in (run.stats or {}).items()
        if isinstance(values, dict)
    }
    return {
        "status": run.status,
        "counts": run.counts,
        "error": error,
        "warnings": run.warnings,
        "rows_read": run.rows_read,
        "stats": stats,
        "changes": changes(run),
        "row_errors": [
            (e.row, e.column, e.message, e.key, e.value) for e in run.row_errors.order_by("pk")
        ],
        "target": target_rows(model),
    }


def run_outcome(job: SyncJob, file: Any, **options: Any) -> tuple[dict, Any]:
    """(:func:`outcome` of one run, its plan), for a test that runs both paths itself
    (tests/test_hostile_values.py)."""
    try:
        done = djsync.run(job, file=file, **options)
    except Exception as exc:  # noqa: BLE001 - the failure is part of the outcome
        done = exc.run  # type: ignore[attr-defined]
    model = get_importer_class(job.importer).model
    return outcome(SyncRun.objects.get(pk=done.pk), model), getattr(done, "plan", None)


@pytest.fixture
def sync(sync_path: str, request: pytest.FixtureRequest, tmp_path: Path, db: None) -> Any:
    """sync(job, **run options) → the run as stored, with ``plan`` and ``exception`` set.

    A failed run is returned, not raised: its record is part of the outcome. Each stored
    change's object_pk is checked to be the row under the change's key (before the run for
    updates and deletes, after it for creates). When the test has run on both paths, the
    second path's runs must end exactly as the first one's (:func:`outcome`), beyond what
    the test itself asserts.
    """
    outcomes: list[dict] = []

    def run(job: SyncJob, **options: Any) -> SyncRun:
        importer_class = get_importer_class(job.importer)
        model, keys = importer_class.model, list(importer_class.keys)
        before = {str(pk): list(key) for pk, *key in model.objects.values_list("pk", *keys)}
        exception = None
        try:
            done = djsync.run(job, **options)
        except Exception as exc:  # noqa: BLE001 - the failure is part of the outcome
            done, exception = exc.run, exc  # type: ignore[attr-defined]
        plan = getattr(done, "plan", None)
        stored = SyncRun.objects.get(pk=done.pk)
        stored.plan, stored.exception = plan, exception  # type: ignore[attr-defined]
        _check_path(sync_path, stored, plan, importer_class())
        after = {str(pk): list(key) for pk, *key in model.objects.values_list("pk", *keys)}
        for change in stored.changes.all():
            if change.object_pk and stored.status == "succeeded":
                where = after if change.action == "create" else before
                assert where.get(change.object_pk) == change.key, change
        outcomes.append(outcome(stored, model, tmp_path))
        return stored

    yield run
    params = request.node.callspec.params
    others = sorted((k, repr(v)) for k, v in params.items() if k != "sync_path")
    test = (request.node.module.__name__, request.node.originalname, tuple(others))
    if test not in _FIRST_PATH:
        _FIRST_PATH[test] = (sync_path, outcomes)
        return
    first_path, first = _FIRST_PATH.pop(test)
    # Not strict: a test that failed on one path made fewer runs, and says so itself.
    for step, (a, b) in enumerate(zip(first, outcomes, strict=False), start=1):
        assert b == a, f"run {step} on the {sync_path} path differs from the {first_path} path"


@pytest.fixture
def categories(db: None) -> None:
    Category.objects.bulk_create([Category(code=c, name=c) for c in ("C1", "C2", "C3")])


@pytest.fixture
def job(make_job: Callable[..., SyncJob]) -> SyncJob:
    return make_job("test_products")


@pytest.fixture
def three_way(write_csv: Callable[..., Any]) -> Any:
    """A target and a file that need one create, one update and one delete (one unchanged)."""
    seed("SAME", "CHANGE", "GONE")
    return write_csv([product("SAME"), product("CHANGE", price="3.00"), product("NEW")])


@pytest.fixture
def ten_products(db: None) -> None:
    seed(*[f"P{i}" for i in range(10)])


def keep(write_csv: Callable[..., Any], count: int) -> Any:
    return write_csv([product(f"P{i}") for i in range(count)], name=f"keep{count}.csv")


# -- create, update, delete, unchanged -------------------------------------------------------
def test_create_update_delete_and_unchanged(sync, job, three_way):
    run = sync(job, file=three_way, force=True)
    assert run.status == "succeeded", run.error
    assert run.counts == counts(created=1, updated=1, deleted=1, unchanged=1)
    assert (run.rows_read, run.rows_applied) == (3, 3)
    assert changes(run) == [
        ("create", ["NEW"], 4, None, stored("NEW"), PRODUCT_FIELDS),
        ("delete", ["GONE"], None, stored("GONE"), None, []),
        ("update", ["CHANGE"], 3, {"price": "1.00"}, {"price": "3.00"}, ["price"]),
    ]
    assert snapshot() == [
        ("CHANGE", "Thing", Decimal("3.00"), 1),
        ("NEW", "Thing", Decimal("1.00"), 1),
        ("SAME", "Thing", Decimal("1.00"), 1),
    ]
    assert Product.objects.get(sku="NEW").region == "eu"  # not mapped: the model default


def test_values_are_compared_after_conversion(sync, job, write_csv):
    seed("A1")
    Product.objects.filter(sku="A1").update(name="Lamp", price=Decimal("1.5"))
    path = write_csv([product("A1", name="  Lamp ", price="1.50", qty="1.0", active="TRUE")])
    run = sync(job, file=path)
    assert run.counts == counts(unchanged=1)
    assert changes(run) == []


def test_an_update_stores_only_the_changed_fields(sync, job, write_csv):
    seed("A1", "A2")
    Product.objects.filter(sku="A2").update(name="Other")
    run = sync(job, file=write_csv([product("A1", price="9.99"), product("A2", name="Other")]))
    assert run.counts == counts(updated=1, unchanged=1)
    assert changes(run) == [
        ("update", ["A1"], 2, {"price": "1.00"}, {"price": "9.99"}, ["price"]),
    ]


def test_an_empty_source_cell_takes_the_model_default(sync, job, write_csv):
    run = sync(job, file=write_csv([product("A1", qty="", active="")]), on_row_error="skip")
    assert run.status == "succeeded", run.error
    assert row_errors(run) == []
    assert Product.objects.values_list("qty", "active", "region").get() == (0, True, "eu")


def test_an_absent_optional_column_leaves_the_field_alone(sync, job, write_csv):
    toys = Category.objects.create(code="TOY", name="Toys")
    seed("A1", category=toys)
    record = {k: v for k, v in product("A1").items() if k != "category_code"}
    run = sync(job, file=write_csv([record]))
    assert run.counts == counts(unchanged=1)
    assert Product.objects.get().category == toys


# -- keys ------------------------------------------------------------------------------------
def test_composite_keys(sync, make_job, write_csv):
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
    run = sync(make_job("test_members"), file=path, force=True)
    assert run.status == "succeeded", run.error
    assert run.counts == counts(created=1, updated=1, deleted=1, unchanged=1)
    assert sorted(Member.objects.values_list("team", "number", "name")) == [
        ("blue", 1, "Bobby"),
        ("red", 1, "Ann"),
        ("red", 2, "Dee"),
    ]
    assert [(c[0], c[1]) for c in changes(run)] == [
        ("create", ["red", 2]),
        ("delete", ["blue", 2]),
        ("update", ["blue", 1]),
    ]


def test_a_key_is_trimmed_and_a_trimmed_repeat_is_a_duplicate(sync, job, write_csv):
    seed("A1")
    run = sync(job, file=write_csv([product(" A1 ", price="2"), product("A1")]))
    assert run.status == "failed" and isinstance(run.exception, RowErrorsFound)
    assert row_errors(run) == [
        (2, "", "duplicate key 'A1': it appears more than once"),
        (3, "", "duplicate key 'A1': it appears more than once"),
    ]
    assert snapshot() == [("A1", "Thing", Decimal("1.00"), 1)]


def test_integer_keys_in_any_order(sync, make_job, write_csv):
    """Keys that sort differently as text and as numbers, given unsorted, with a repeat far
    from its first occurrence: the staged path must not rely on the source's order."""
    Employee.objects.bulk_create([Employee(number=n, name=f"E{n}") for n in (100, 9, 20, 3)])
    job = make_job("test_employees")
    numbers = [10, 9, 100, 2, 1000, 11, 3, 21]
    rows = [{"number": str(n), "name": f"E{n}", "dept": ""} for n in numbers]
    rows[5]["name"] = "Eleven"
    rows.append({"number": "2", "name": "again", "dept": "x"})
    run = sync(job, file=write_csv(rows), on_row_error="skip", force=True)
    assert run.status == "succeeded", run.error
    assert run.counts == counts(created=4, deleted=1, unchanged=3, errors=2)
    assert row_errors(run) == [
        (5, "", "duplicate key 2: it appears more than once"),
        (10, "", "duplicate key 2: it appears more than once"),
    ]
    assert [(c[0], c[1]) for c in changes(run)] == [
        ("create", [10]),
        ("create", [11]),
        ("create", [21]),
        ("create", [1000]),
        ("delete", [20]),
    ]
    assert sorted(Employee.objects.values_list("number", "name")) == [
        (3, "E3"),
        (9, "E9"),
        (10, "E10"),
        (11, "Eleven"),
        (21, "E21"),
        (100, "E100"),
        (1000, "E1000"),
    ]


def test_sorted_keys_skip_the_duplicate_check_but_a_repeat_is_still_caught(
    sync, make_job, write_csv
):
    job = make_job("test_products", on_row_error="skip")
    ordered = write_csv([product(f"K{i:02d}") for i in range(12)], name="1.csv")
    repeated = write_csv([product("K01"), product("K02"), product("K02", "Twice")], name="2.csv")
    first = sync(job, file=ordered)
    assert first.counts == counts(created=12)
    second = sync(job, file=repeated, force=True)
    assert second.counts == counts(deleted=10, unchanged=1, errors=2)
    assert row_errors(second) == [
        (3, "", "duplicate key 'K02': it appears more than once"),
        (4, "", "duplicate key 'K02': it appears more than once"),
    ]
    assert skus() == ["K01", "K02"]


# -- foreign keys by natural key -------------------------------------------------------------
def test_a_foreign_key_is_found_by_its_natural_key(sync, job, write_csv):
    toys = Category.objects.create(code="TOY", name="Toys")
    run = sync(job, file=write_csv([product("A1", category_code="TOY"), product("A2")]))
    assert run.status == "succeeded", run.error
    assert Product.objects.get(sku="A1").category == toys
    assert Product.objects.get(sku="A2").category is None
    assert changes(run) == [
        ("create", ["A1"], 2, None, stored("A1", category="TOY"), PRODUCT_FIELDS),
        ("create", ["A2"], 3, None, stored("A2"), PRODUCT_FIELDS),
    ]
    books = Category.objects.create(code="BOOK", name="Books")
    moved = sync(job, file=write_csv([product("A1", category_code="BOOK"), product("A2")]))
    assert moved.counts == counts(updated=1, unchanged=1)
    assert changes(moved) == [
        ("update", ["A1"], 2, {"category": "TOY"}, {"category": "BOOK"}, ["category"]),
    ]
    assert Product.objects.get(sku="A1").category == books


def test_a_missing_foreign_key_is_a_row_error_naming_row_column_and_value(sync, job, write_csv):
    Category.objects.create(code="TOY", name="Toys")
    path = write_csv([product("A1", category_code="TOY"), product("A2", category_code="NOPE")])
    run = sync(job, file=path)
    assert run.status == "failed" and isinstance(run.exception, RowErrorsFound)
    assert "row 3, column 'category_code': no category with code 'NOPE'" in run.error
    assert Product.objects.count() == 0
    error = run.row_errors.get()
    assert (error.row, error.column, error.value, error.key) == (3, "category_code", "NOPE", ["A2"])
    assert error.raw["category_code"] == "NOPE"


def full_errors(run: SyncRun) -> list[tuple]:
    """The run's stored row errors whole: (row, column, message, key, value, raw)."""
    return [
        (e.row, e.column, e.message, e.key, e.value, e.raw)
        for e in run.row_errors.order_by("row", "pk")
    ]


NO_CATEGORY = "no category with code {!r}"


@pytest.mark.parametrize("keep", [50_000, 1])
def test_foreign_keys_across_chunks_of_the_source(
    sync, job, write_csv, settings, monkeypatch, keep
):
    """The staged path looks parents up a chunk of records at a time (BATCH_SIZE), keeping
    those found up to KEEP: found, missing, blank and padded natural keys in every chunk, a
    row with two errors, a missing parent in a row without a key. Row errors are whole
    (value and raw record as read)."""
    from djsync.backends import parents

    monkeypatch.setattr(parents, "KEEP", keep)
    settings.DJSYNC = {**settings.DJSYNC, "BATCH_SIZE": 3}
    Category.objects.bulk_create([Category(code=c, name=c) for c in ("TOY", "BOOK")])
    seed("A06", "A07", category=Category.objects.get(code="BOOK"))
    rows = [
        product("A01", category_code="TOY"),
        product("A02"),
        product("A03", category_code="NOPE"),
        product("A04", category_code=" BOOK "),
        product("A05", price="x", category_code="nope"),
        product("A06", category_code="TOY"),
        product("A07", category_code="NOPE"),  # keeps its target row (and its category)
        product("", category_code="GONE"),
        product("A09", category_code="TOY"),
        product("A10", category_code="BOOK"),
    ]
    run = sync(job, file=write_csv(rows), on_row_error="skip")
    assert run.status == "succeeded", run.error
    assert run.counts == counts(created=5, updated=1, errors=4)
    raw = {r["sku"] or "": r for r in rows}
    assert full_errors(run) == [
        (4, "category_code", NO_CATEGORY.format("NOPE"), ["A03"], "NOPE", raw["A03"]),
        (6, "price", "expected a decimal number, got 'x'", ["A05"], "x", raw["A05"]),
        (6, "category_code", NO_CATEGORY.format("nope"), ["A05"], "nope", raw["A05"]),
        (8, "category_code", NO_CATEGORY.format("NOPE"), ["A07"], "NOPE", raw["A07"]),
        (9, "sku", "a value is required", None, "", raw[""]),
        (9, "category_code", NO_CATEGORY.format("GONE"), None, "GONE", raw[""]),
    ]
    assert dict(Product.objects.values_list("sku", "category__code")) == {
        "A01": "TOY",
        "A02": None,
        "A04": "BOOK",
        "A06": "TOY",
        "A07": "BOOK",
        "A09": "TOY",
        "A10": "BOOK",
    }


@pytest.mark.parametrize(
    ("importer", "fmt"), [("test_products", "json"), ("test_products_prepared", "csv")]
)
def test_foreign_keys_of_records_and_of_prepared_records_across_chunks(
    sync, make_job, write_csv, write_json, settings, importer, fmt
):
    """Records as dicts (a JSON file; PostgreSQL's COPY of Python rows) and records through
    the importer's ``prepare_record`` and ``normalize_source_row``: each chunk's parents are
    the ones the converted (prepared) cells name."""
    settings.DJSYNC = {**settings.DJSYNC, "BATCH_SIZE": 2}
    job = make_job(importer)
    Category.objects.bulk_create([Category(code=c, name=c) for c in ("TOY", "BOOK")])
    codes = ["TOY", "nope", "", "BOOK", "NOPE", "TOY", "BOOK"]
    rows = [product(f"J{i}", category_code=c) for i, c in enumerate(codes)]
    rows.insert(2, product("#J", category_code="NOPE"))  # a comment row when prepared
    prepared = importer == "test_products_prepared"
    if not prepared:
        rows = [r for r in rows if r["sku"] != "#J"]
    path = write_json(rows) if fmt == "json" else write_csv(rows)
    run = sync(job, file=path, on_row_error="skip")
    assert run.status == "succeeded", run.error
    first = 1 if fmt == "json" else 2
    later = first + (5 if prepared else 4)  # the comment row counts as a row
    missing = [(first + 1, "NOPE" if prepared else "nope"), (later, "NOPE")]
    assert row_errors(run) == [(n, "category_code", NO_CATEGORY.format(v)) for n, v in missing]
    assert dict(Product.objects.values_list("sku", "category__code")) == {
        "J0": "TOY",
        "J2": None,
        "J3": "BOOK",
        "J5": "TOY",
        "J6": "BOOK",
    }


def test_missing_parents_past_the_row_error_cap(sync, job, write_csv, settings):
    """Many rows with missing parents: every one counted, the first MAX_ROW_ERRORS kept
    whole, the good rows between them written."""
    settings.DJSYNC = {**settings.DJSYNC, "BATCH_SIZE": 4, "MAX_ROW_ERRORS": 5}
    Category.objects.create(code="TOY", name="Toys")
    rows = [
        product(f"M{i:03d}", category_code="TOY" if i % 10 == 0 else f"X{i % 7}") for i in range(60)
    ]
    run = sync(job, file=write_csv(rows), on_row_error="skip")
    assert run.status == "succeeded", run.error
    assert run.counts == counts(created=6, errors=54)
    assert [(e[0], e[3], e[4]) for e in full_errors(run)] == [
        (3, ["M001"], "X1"),
        (4, ["M002"], "X2"),
        (5, ["M003"], "X3"),
        (6, ["M004"], "X4"),
        (7, ["M005"], "X5"),
    ]
    assert skus() == [f"M{i:03d}" for i in range(0, 60, 10)]


def test_a_foreign_key_that_stores_a_to_field(sync, make_job, write_csv):
    """``ForeignKey(to_field="code")``: the child stores the parent's code, not its id."""
    job = make_job("test_shelves")
    Category.objects.bulk_create([Category(code=c, name=c) for c in ("TOY", "BOOK")])
    Shelf.objects.create(code="S0", category_id="BOOK")
    shelves = [
        {"code": "S0", "category_code": "TOY"},
        {"code": "S1", "category_code": "BOOK"},
        {"code": "S2", "category_code": ""},
        {"code": "S3", "category_code": "NOPE"},
    ]
    run = sync(job, file=write_csv(shelves), on_row_error="skip")
    assert run.status == "succeeded", run.error
    assert run.counts == counts(created=2, updated=1, errors=1)
    assert row_errors(run) == [(5, "category_code", NO_CATEGORY.format("NOPE"))]
    assert dict(Shelf.objects.values_list("code", "category_id")) == {
        "S0": "TOY",
        "S1": "BOOK",
        "S2": None,
    }
    assert sorted(c[:2] + c[3:5] for c in changes(run)) == [
        ("create", ["S1"], None, {"code": "S1", "category": "BOOK"}),
        ("create", ["S2"], None, {"code": "S2", "category": None}),
        ("update", ["S0"], {"category": "BOOK"}, {"category": "TOY"}),
    ]


def test_parents_a_multi_model_run_creates_and_deletes(sync_path, make_job, write_csv, settings):
    """Children name parents that the same run creates (found), deletes (missing) or
    leaves alone, across chunks of the children's source; each run's staged steps say so."""
    settings.DJSYNC = {**settings.DJSYNC, "BATCH_SIZE": 2}
    Category.objects.bulk_create([Category(code=c, name=c) for c in ("KEEP", "OLD")])
    cats = write_csv([{"code": c, "name": c} for c in ("KEEP", "NEW")], name="cats.csv")
    rows = [product(f"C{i}", category_code=c) for i, c in enumerate(["NEW", "OLD", "KEEP", "NEW"])]
    rows.append(product("C4", category_code="NONE"))
    sources = {
        "test_categories": {"path": cats.name},
        "test_products": {"path": write_csv(rows, name="products.csv").name},
    }
    job = make_job(
        "test_categories, test_products",
        name="catalogue",
        source={"sources": sources},
        delete=True,
        on_row_error="skip",
    )
    run = djsync.run(job, force=True)
    assert run.status == "succeeded", run.error
    assert {p.split(":")[0] for p in recorded_paths(run)} == {sync_path}
    assert (run.stats["testapp.Category"]["created"], run.stats["testapp.Category"]["deleted"]) == (
        1,
        1,
    )
    assert row_errors(run) == [
        (3, "category_code", NO_CATEGORY.format("OLD")),
        (6, "category_code", NO_CATEGORY.format("NONE")),
    ]
    assert dict(Product.objects.values_list("sku", "category__code")) == {
        "C0": "NEW",
        "C2": "KEEP",
        "C3": "NEW",
    }
    assert sorted(Category.objects.values_list("code", flat=True)) == ["KEEP", "NEW"]


# -- scope and cascades ----------------------------------------------------------------------
def test_deletes_happen_only_inside_the_scope(sync, make_job, write_csv):
    seed("EU1", "EU2", "EU3", region="eu")
    seed("US1", "US2", region="us")
    job = make_job("test_products_eu")
    path = write_csv([product("EU1"), product("EU2", price="5"), product("EU4")])
    run = sync(job, file=path)
    assert run.status == "succeeded", run.error
    assert run.counts == counts(created=1, updated=1, deleted=1, unchanged=1)
    assert run.stats["testapp.Product"]["rows_in_scope"] == 3
    assert skus(region="us") == ["US1", "US2"]
    assert skus(region="eu") == ["EU1", "EU2", "EU4"]
    again = sync(job, file=path)
    assert again.counts == counts(unchanged=3)


def test_a_key_outside_the_scope_fails_the_run_and_rolls_everything_back(sync, make_job, write_csv):
    """A row outside the scope under a key the file creates: the insert fails, nothing stays."""
    seed("EU1", "EU2", region="eu")
    seed("US1", region="us")
    rows = [product("EU1", price="5.00"), product("EU2", price="6.00"), product("NEW")]
    run = sync(make_job("test_products_eu"), file=write_csv([*rows, product("US1")]))
    assert run.status == "failed" and run.error
    assert "IntegrityError" in type(run.exception).__name__ or "unique" in run.error.lower()
    assert skus() == ["EU1", "EU2", "US1"]
    assert Product.objects.get(sku="EU1").price == Decimal("1.00")


def test_deleting_a_row_deletes_its_many_to_many_links(sync, make_job, write_csv):
    ann, bob = (
        Employee.objects.create(number=1, name="Ann"),
        Employee.objects.create(number=2, name="Bob"),
    )
    red, blue = Team.objects.create(code="red"), Team.objects.create(code="blue")
    red.members.set([ann, bob])
    blue.members.set([bob])
    run = sync(make_job("test_teams"), file=write_csv([{"code": "red"}]))
    assert run.counts == counts(deleted=1, unchanged=1)
    assert list(Team.objects.values_list("code", flat=True)) == ["red"]
    assert Team.members.through.objects.count() == 2
    assert list(bob.teams.values_list("code", flat=True)) == ["red"]
    assert Employee.objects.count() == 2


def test_a_protected_row_fails_the_delete_and_nothing_is_written(sync, make_job, write_csv):
    toys = Category.objects.create(code="TOY", name="Toys")
    Category.objects.create(code="OLD", name="Old")
    seed("A1", category=toys)
    job = make_job("test_categories")
    path = write_csv([{"code": "NEW", "name": "New"}], name="cats.csv")
    run = sync(job, file=path, delete=True, force=True)
    assert run.status == "failed" and run.error
    assert sorted(Category.objects.values_list("code", flat=True)) == ["OLD", "TOY"]
    assert Product.objects.get().category == toys


# -- switches --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "switch, expected_counts, expected_skus",
    [
        ("create", counts(updated=1, deleted=1, unchanged=1), ["CHANGE", "SAME"]),
        ("update", counts(created=1, deleted=1, unchanged=1), ["CHANGE", "NEW", "SAME"]),
        ("delete", counts(created=1, updated=1, unchanged=1), ["CHANGE", "GONE", "NEW", "SAME"]),
    ],
)
def test_a_switch_per_run(sync, job, three_way, switch, expected_counts, expected_skus):
    run = sync(job, file=three_way, force=True, **{switch: False})
    assert run.status == "succeeded", run.error
    assert run.counts == expected_counts
    assert skus() == expected_skus
    assert [c[0] for c in changes(run)] == sorted(
        a for a in ("create", "update", "delete") if a != switch
    )
    price = Product.objects.get(sku="CHANGE").price
    assert price == (Decimal("1.00") if switch == "update" else Decimal("3.00"))


def test_switches_per_job_and_a_run_option_beats_the_job(sync, make_job, three_way):
    job = make_job("test_products", create=False, update=False, delete=False)
    run = sync(job, file=three_way)
    assert run.counts == counts(unchanged=1)
    assert changes(run) == []
    assert skus() == ["CHANGE", "GONE", "SAME"]
    run = sync(job, file=three_way, create=True)
    assert run.counts == counts(created=1, unchanged=1)
    assert skus() == ["CHANGE", "GONE", "NEW", "SAME"]


def test_delete_is_off_by_default(sync, make_job, write_csv):
    Category.objects.create(code="OLD", name="Old")
    run = sync(make_job("test_categories"), file=write_csv([{"code": "NEW", "name": "New"}]))
    assert run.counts == counts(created=1)
    assert sorted(Category.objects.values_list("code", flat=True)) == ["NEW", "OLD"]


# -- limits and the delete guard -------------------------------------------------------------
@pytest.mark.parametrize(
    "limit, message",
    [
        ({"max_create": 0}, "the plan has 1 creates, more than the limit of 0"),
        ({"max_update": 0}, "the plan has 1 updates, more than the limit of 0"),
        ({"max_delete": 0}, "the plan has 1 deletes, more than the limit of 0"),
        ({"max_total": 2}, "the plan has 3 changes, more than the limit of 2"),
    ],
    ids=["max_create", "max_update", "max_delete", "max_total"],
)
def test_a_limit_fails_the_run_and_writes_nothing(sync, job, three_way, limit, message):
    before = snapshot()
    run = sync(job, file=three_way, force=True, **limit)
    assert isinstance(run.exception, LimitExceeded)
    assert run.status == "failed" and message in run.error and "nothing written" in run.error
    assert snapshot() == before
    assert len(changes(run)) == 3, "the plan of a failed run is recorded"


def test_limits_at_the_boundary_pass(sync, job, three_way):
    limits = {"max_create": 1, "max_update": 1, "max_delete": 1, "max_total": 3}
    run = sync(job, file=three_way, force=True, **limits)
    assert run.status == "succeeded", run.error


def test_limits_per_job_hold_even_when_forced(sync, make_job, three_way):
    run = sync(make_job("test_products", max_total=1), file=three_way, force=True)
    assert isinstance(run.exception, LimitExceeded)
    assert "3 changes, more than the limit of 1" in run.error
    assert Product.objects.count() == 3


def test_the_delete_guard_default_is_half(sync, job, ten_products, write_csv):
    run = sync(job, file=keep(write_csv, 4))
    assert isinstance(run.exception, DeleteGuardError)
    assert "deletes 6 of 10 rows in scope (60%), more than the delete guard of 50%" in run.error
    assert "Nothing written" in run.error
    assert Product.objects.count() == 10
    run = sync(job, file=keep(write_csv, 5))  # exactly half is allowed
    assert run.status == "succeeded" and run.counts == counts(deleted=5, unchanged=5)


@pytest.mark.parametrize(
    "importer, job_options, run_options, kept, error",
    [
        ("test_products", {}, {"force": True}, 1, None),
        ("test_products", {}, {"delete_guard": 0.7}, 3, None),
        (
            "test_products",
            {"delete_guard": 0.1},
            {},
            8,
            "deletes 2 of 10 rows in scope (20%), more than the delete guard of 10%",
        ),
        (
            "test_products_lenient",  # delete_guard = 0.8 on the importer
            {},
            {},
            1,
            "deletes 9 of 10 rows in scope (90%), more than the delete guard of 80%",
        ),
        ("test_products_lenient", {}, {}, 3, None),
        (
            "test_products",
            {},
            {"force": True, "max_delete": 5},
            1,
            "the plan has 9 deletes, more than the limit of 5",
        ),
    ],
    ids=["force", "per-run", "per-job", "per-importer", "per-importer-ok", "limit-beats-force"],
)
def test_the_delete_guard(
    sync, make_job, ten_products, write_csv, importer, job_options, run_options, kept, error
):
    run = sync(make_job(importer, **job_options), file=keep(write_csv, kept), **run_options)
    if error is None:
        assert run.status == "succeeded", run.error
        assert run.counts == counts(deleted=10 - kept, unchanged=kept)
        assert Product.objects.count() == kept
    else:
        assert run.status == "failed" and isinstance(run.exception, LimitExceeded)
        assert error in run.error
        assert Product.objects.count() == 10


def test_the_delete_guard_setting(sync, job, ten_products, write_csv, settings):
    settings.DJSYNC = {**settings.DJSYNC, "DELETE_GUARD": 0.2}
    run = sync(job, file=keep(write_csv, 7))
    assert isinstance(run.exception, DeleteGuardError)
    assert "delete guard of 20%" in run.error
    assert Product.objects.count() == 10


# -- empty sources ---------------------------------------------------------------------------
def test_a_header_only_file_never_wipes_the_table(sync, job, ten_products, tmp_path):
    path = tmp_path / "header.csv"
    path.write_text(",".join(product("x")) + "\n")
    run = sync(job, file=path)
    assert isinstance(run.exception, DeleteGuardError)
    assert "deletes 10 of 10 rows in scope" in run.error
    assert Product.objects.count() == 10
    forced = sync(job, file=path, force=True)  # said in so many words: the table empties
    assert forced.status == "succeeded" and forced.counts == counts(deleted=10)
    assert Product.objects.count() == 0


def test_an_empty_file_never_wipes_the_table(sync, job, ten_products, tmp_path):
    from djsync.exceptions import SourceError

    for name in ("e.csv", "e.json", "e.xlsx", "e.jsonl"):
        path = tmp_path / name
        path.write_bytes(b"")
        run = sync(job, file=path)
        assert isinstance(run.exception, SourceError), name
    path = tmp_path / "list.json"
    path.write_text("[]")
    run = sync(job, file=path)
    assert isinstance(run.exception, MappingError | DeleteGuardError)
    assert Product.objects.count() == 10


def test_an_empty_source_on_an_empty_table_changes_nothing(sync, job, tmp_path):
    path = tmp_path / "header.csv"
    path.write_text(",".join(product("x")) + "\n")
    run = sync(job, file=path)
    assert run.status == "succeeded", run.error
    assert run.counts == NO_COUNTS and changes(run) == []


# -- dry runs --------------------------------------------------------------------------------
def test_a_dry_run_writes_nothing_and_records_the_plan(sync, job, three_way):
    before = snapshot()
    run = sync(job, file=three_way, dry_run=True, force=True)
    assert run.status == "previewed" and run.dry_run and not run.error
    assert snapshot() == before
    assert run.counts == counts(created=1, updated=1, deleted=1, unchanged=1)
    assert changes(run) == [
        ("create", ["NEW"], 4, None, stored("NEW"), PRODUCT_FIELDS),
        ("delete", ["GONE"], None, stored("GONE"), None, []),
        ("update", ["CHANGE"], 3, {"price": "1.00"}, {"price": "3.00"}, ["price"]),
    ]
    assert run.plan.counts == run.counts  # the plan itself, for callers in this process
    assert [a.key for a in run.plan.creates] == [("NEW",)]


def test_a_dry_run_says_when_a_real_run_would_fail(sync, job, ten_products, write_csv):
    run = sync(job, file=keep(write_csv, 2), dry_run=True)
    assert run.status == "previewed"
    assert run.error.startswith("a real run would fail:") and "delete guard" in run.error
    assert Product.objects.count() == 10


def test_a_dry_run_leaves_no_working_tables_behind(sync, job, write_csv):
    path = write_csv([product(f"S{i}", price=f"{i}.5") for i in range(50)])
    run = sync(job, file=path, dry_run=True)
    assert run.status == "previewed" and run.counts == counts(created=50)
    assert run.changes.count() == 50 and Product.objects.count() == 0
    assert len(run.plan.creates) == 50
    assert [c.key for c in run.plan.creates][:1] == [("S0",)]
    assert staging_tables() == []
    sync(job, file=path)
    assert Product.objects.count() == 50
    assert staging_tables() == []


def staging_tables() -> list[str]:
    """The staged path's temporary tables still on this connection."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = pg_my_temp_schema() "
                "AND relname LIKE 'djsync%%'"
            )
        else:
            cursor.execute(
                "SELECT name FROM sqlite_temp_master WHERE type = 'table' AND name LIKE 'djsync%'"
            )
        return [row[0] for row in cursor.fetchall()]


def test_a_previewed_plan_applies_later(sync, sync_path, job, write_csv, categories):
    from djsync.runs.orchestrator import apply_previewed

    sync(job, file=write_csv([product("P1"), product("P2")], name="a.csv"))
    new = [product("P1", price="4", category_code="C2", updated="2026-05-01"), product("P3")]
    preview = sync(job, file=write_csv(new, name="b.csv"), dry_run=True, force=True)
    assert preview.counts == counts(created=1, updated=1, deleted=1)
    applied = apply_previewed(preview)
    assert applied.status == "succeeded", applied.error
    assert [p.split(":")[0] for p in recorded_paths(applied)] == [sync_path]
    assert applied.counts == preview.counts
    assert sorted(Product.objects.values_list("sku", "price", "category__code", "updated")) == [
        ("P1", Decimal("4.00"), "C2", dt.date(2026, 5, 1)),
        ("P3", Decimal("1.00"), None, None),
    ]


def test_a_previewed_plan_applies_the_same_values_as_a_direct_run(sync, make_job, write_csv):
    from djsync.runs.orchestrator import apply_previewed

    record = member(
        "red",
        "7",
        "Eve",
        score="9.5",
        joined="2024-01-31",
        seen="2024-01-31 13:45:00",
        alarm="07:30",
        vip="yes",
        level="Gold member",
        token="12345678-1234-5678-1234-567812345678",
        extra='"just a string"',
    )
    job = make_job("test_members")
    preview = sync(job, file=write_csv([record]), dry_run=True)
    assert Member.objects.count() == 0
    applied = apply_previewed(preview)
    assert applied.status == "succeeded", applied.error
    eve = Member.objects.get()
    assert eve.seen == dt.datetime(2024, 1, 31, 12, 45, tzinfo=dt.UTC)
    assert eve.joined == dt.date(2024, 1, 31) and eve.alarm == dt.time(7, 30)
    assert (eve.level, eve.vip, eve.extra, eve.note) == ("gold", True, "just a string", None)
    again = sync(job, file=write_csv([record], name="again.csv"))
    assert again.counts == counts(unchanged=1)


def test_a_previewed_plan_with_a_custom_converter(sync, make_job, write_csv):
    """Stored values are in the model's own format, not the source's: a converter written
    for the source's format must not be asked to read them back."""
    from djsync.runs.orchestrator import apply_previewed

    job = make_job("test_products_dotted")
    path = write_csv([product("A1", updated="31.01.2026", price="1,50")])
    preview = sync(job, file=path, dry_run=True)
    assert preview.status == "previewed" and not preview.error, preview.error
    applied = apply_previewed(preview)
    assert applied.status == "succeeded", applied.error
    lamp = Product.objects.get()
    assert (lamp.updated, lamp.price) == (dt.date(2026, 1, 31), Decimal("1.50"))
    assert sync(job, file=path).counts == counts(unchanged=1)


# -- row errors ------------------------------------------------------------------------------
DUP = "duplicate key {!r}: it appears more than once"


def test_a_duplicate_key_is_a_row_error_on_every_occurrence(sync, job, write_csv):
    seed("DUP")
    rows = [product("DUP", price="2.00"), product("OK"), product("DUP", price="3"), product("DUP")]
    run = sync(job, file=write_csv(rows))
    assert run.status == "failed" and isinstance(run.exception, RowErrorsFound)
    assert row_errors(run) == [
        (2, "", DUP.format("DUP")),
        (4, "", DUP.format("DUP")),
        (5, "", DUP.format("DUP")),
    ]
    assert snapshot() == [("DUP", "Thing", Decimal("1.00"), 1)]


def test_a_duplicate_key_with_skip_leaves_that_key_alone(sync, job, write_csv):
    seed("DUP", "OTHER")
    rows = [product("DUP", price="2"), product("OK"), product("DUP", price="3"), product("OTHER")]
    run = sync(job, file=write_csv(rows), on_row_error="skip")
    assert run.status == "succeeded", run.error
    assert run.counts == counts(created=1, unchanged=1, errors=2)
    assert Product.objects.get(sku="DUP").price == Decimal("1.00")


def test_a_bad_row_and_a_good_row_under_one_key_leave_that_key_alone(sync, job, write_csv):
    seed("OLD")
    rows = [
        product("NEW", price="oops"),  # bad row first, good row after: no create of NEW
        product("NEW", price="2.00"),
        product("OLD", price="3.00"),  # good row first, bad row after: no update of OLD
        product("OLD", qty="many"),
    ]
    run = sync(job, file=write_csv(rows), on_row_error="skip")
    assert run.status == "succeeded", run.error
    assert run.counts == counts(errors=4)
    assert row_errors(run) == [
        (2, "price", "expected a decimal number, got 'oops'"),
        (3, "", DUP.format("NEW")),
        (4, "", DUP.format("OLD")),
        (5, "qty", "expected a whole number, got 'many'"),
    ]
    assert snapshot() == [("OLD", "Thing", Decimal("1.00"), 1)]


def test_bad_values_fail_the_run_and_write_nothing(sync, job, write_csv):
    seed("A1")
    path = write_csv(
        [product("A1", price="5.00"), product("A2", price="cheap"), product("A3", qty="2.5")]
    )
    run = sync(job, file=path)
    assert isinstance(run.exception, RowErrorsFound)
    assert run.status == "failed" and run.counts["errors"] == 2
    assert f"2 bad rows in {path}, nothing written" in run.error
    assert "row 3, column 'price': expected a decimal number, got 'cheap'" in run.error
    assert "row 4, column 'qty': expected a whole number, got '2.5'" in run.error
    assert snapshot() == [("A1", "Thing", Decimal("1.00"), 1)]
    stored_errors = list(run.row_errors.values_list("row", "column", "value", "key"))
    assert stored_errors == [(3, "price", "cheap", ["A2"]), (4, "qty", "2.5", ["A3"])]
    assert changes(run) == [
        ("update", ["A1"], 2, {"price": "1.00"}, {"price": "5.00"}, ["price"]),
    ], "the good rows' plan is kept for the record"


def test_every_bad_cell_of_a_row_is_reported(sync, job, write_csv):
    run = sync(job, file=write_csv([product("A1", price="x", qty="y", active="perhaps")]))
    assert run.counts["errors"] == 1
    assert sorted(row_errors(run)) == [
        (2, "active", "expected yes/no, true/false or 1/0, got 'perhaps'"),
        (2, "price", "expected a decimal number, got 'x'"),
        (2, "qty", "expected a whole number, got 'y'"),
    ]


def test_skip_applies_the_good_rows_and_reports_the_bad_ones(sync, job, write_csv):
    seed("BAD")
    rows = [product("GOOD"), product("BAD", price="lots"), product("ALSO", qty="")]
    run = sync(job, file=write_csv(rows), on_row_error="skip")
    assert run.status == "succeeded" and not run.error
    assert run.counts == counts(created=2, errors=1)
    assert skus() == ["ALSO", "BAD", "GOOD"], "a bad row's key is not deleted"
    assert row_errors(run) == [(3, "price", "expected a decimal number, got 'lots'")]


def test_skip_per_importer_and_per_job(sync, make_job, write_csv):
    path = write_csv([product("GOOD"), product("BAD", price="lots")])
    assert sync(make_job("test_products_lenient"), file=path).status == "succeeded"
    job = make_job("test_products", name="skipping", on_row_error="skip")
    assert sync(job, file=path).counts == counts(unchanged=1, errors=1)


@pytest.mark.parametrize(
    "record, error",
    [
        (product(""), (2, "sku", "a value is required")),
        (product("A1", name=""), (2, "name", "a value is required")),
        (product("X" * 33), (2, "sku", "33 characters")),
    ],
    ids=["empty-key", "empty-required", "too-long"],
)
def test_a_value_the_model_refuses_is_a_row_error(sync, job, write_csv, record, error):
    run = sync(job, file=write_csv([record, product("B1")]))
    assert run.status == "failed" and isinstance(run.exception, RowErrorsFound)
    [(row, column, message)] = row_errors(run)
    assert (row, column) == error[:2] and error[2] in message
    assert Product.objects.count() == 0


def test_a_bad_row_without_a_key_blocks_deletes_and_fails_by_default(sync, make_job, write_csv):
    strict = make_job("test_products", name="strict")
    lenient = make_job("test_products", name="lenient", on_row_error="skip")
    seed_file = write_csv([product("A1"), product("A2"), product("A3")], name="seed.csv")
    bad = write_csv([product("A1", price="7"), product("", price="1")], name="bad.csv")
    assert sync(strict, file=seed_file).counts == counts(created=3)
    failed = sync(strict, file=bad)
    assert failed.status == "failed" and "nothing written" in failed.error
    applied = sync(lenient, file=bad)
    assert applied.status == "succeeded"
    assert applied.counts == counts(updated=1, errors=1)
    assert applied.warnings == [
        "2 target rows are missing from the source, but some bad rows have no readable key, "
        "so nothing is deleted"
    ]
    assert row_errors(applied) == [(3, "sku", "a value is required")]
    assert skus() == ["A1", "A2", "A3"]
    assert Product.objects.get(sku="A1").price == Decimal("7.00")


# -- every action, every type: the long scenarios ------------------------------------------
def test_products_every_action_row_errors_duplicates_limits_and_guard(
    sync, make_job, write_csv, categories
):
    job = make_job("test_products", on_row_error="skip")
    day1 = write_csv(
        [
            product("A1", price="1.5", category_code="C1", updated="2026-01-02"),
            product("A2", price="2", updated="2026-03-02"),
            product("A3", name=TRICKY),
            product("A4"),
            product("A5", name="x", price="0.10"),
            product("A6", category_code="C2"),
            product("A7", name='it\'s "quoted"', price="-12345678.99"),
        ],
        name="day1.csv",
    )
    day2 = write_csv(
        [
            product("A1", price="1.50", category_code="C1", updated="2026-01-02"),  # unchanged
            product("A2", price="2.01", category_code="C3", updated="2026-03-02"),  # update
            product("A3", name=TRICKY + " again"),  # duplicated below: left alone
            product("A5", name="x\ty", price="0.1"),
            product("A6", price="abc"),  # bad value: A6 is kept, not deleted
            product("A7", name='it\'s "quoted"', price="-12345678.99", qty="2"),
            product("N1", name="new\\one", category_code="C2", active="no"),
            product("N2", category_code="ZZ"),  # unknown category
            product("A3", name="twice"),
            product("D1"),
            product("D1", name="again"),
            product(" A1 ", price="3"),  # the key is trimmed: a duplicate of A1
            product("B7", price="bad"),  # a bad row and a good row share B7: no create
            product("B7"),
        ],
        name="day2.csv",
    )
    day3 = write_csv([product("A1", price="9.99"), product("A2"), product("Z9")], name="d3.csv")
    runs = [
        sync(job, file=day1),
        sync(job, file=day2),
        sync(job, file=day3, dry_run=True, force=True),
        sync(job, file=day3, max_delete=1),  # over the limit: nothing written
        sync(job, file=day3),  # over the delete guard: nothing written
        sync(job, file=day3, max_total=3, force=True),  # over max_total
    ]
    first, second, preview, *refused = runs
    assert [r.rows_read for r in runs] == [7, 14, 3, 3, 3, 3]
    assert first.counts == counts(created=7)
    assert changes(first) == [
        (
            "create",
            ["A1"],
            2,
            None,
            stored("A1", price="1.50", updated="2026-01-02", category="C1"),
            PRODUCT_FIELDS,
        ),
        (
            "create",
            ["A2"],
            3,
            None,
            stored("A2", price="2.00", updated="2026-03-02"),
            PRODUCT_FIELDS,
        ),
        ("create", ["A3"], 4, None, stored("A3", name=TRICKY), PRODUCT_FIELDS),
        ("create", ["A4"], 5, None, stored("A4"), PRODUCT_FIELDS),
        ("create", ["A5"], 6, None, stored("A5", name="x", price="0.10"), PRODUCT_FIELDS),
        ("create", ["A6"], 7, None, stored("A6", category="C2"), PRODUCT_FIELDS),
        (
            "create",
            ["A7"],
            8,
            None,
            stored("A7", name='it\'s "quoted"', price="-12345678.99"),
            PRODUCT_FIELDS,
        ),
    ]
    assert second.status == "succeeded" and second.warnings == []
    assert second.counts == counts(created=1, updated=3, deleted=1, errors=10)
    assert changes(second) == [
        (
            "create",
            ["N1"],
            8,
            None,
            stored("N1", name="new\\one", active=False, category="C2"),
            PRODUCT_FIELDS,
        ),
        ("delete", ["A4"], None, stored("A4"), None, []),
        (
            "update",
            ["A2"],
            3,
            {"price": "2.00", "category": None},
            {"price": "2.01", "category": "C3"},
            ["price", "category"],
        ),
        ("update", ["A5"], 5, {"name": "x"}, {"name": "x\ty"}, ["name"]),
        ("update", ["A7"], 7, {"qty": 1}, {"qty": 2}, ["qty"]),
    ]
    assert row_errors(second) == [
        (2, "", DUP.format("A1")),
        (4, "", DUP.format("A3")),
        (6, "price", "expected a decimal number, got 'abc'"),
        (9, "category_code", "no category with code 'ZZ'"),
        (10, "", DUP.format("A3")),
        (11, "", DUP.format("D1")),
        (12, "", DUP.format("D1")),
        (13, "", DUP.format("A1")),
        (14, "price", "expected a decimal number, got 'bad'"),
        (15, "", DUP.format("B7")),
    ]
    day3_plan = [
        ("create", ["Z9"], 4, None, stored("Z9"), PRODUCT_FIELDS),
        ("delete", ["A3"], None, stored("A3", name=TRICKY), None, []),
        ("delete", ["A5"], None, stored("A5", name="x\ty", price="0.10"), None, []),
        ("delete", ["A6"], None, stored("A6", category="C2"), None, []),
        (
            "delete",
            ["A7"],
            None,
            stored("A7", name='it\'s "quoted"', price="-12345678.99", qty=2),
            None,
            [],
        ),
        (
            "delete",
            ["N1"],
            None,
            stored("N1", name="new\\one", active=False, category="C2"),
            None,
            [],
        ),
        (
            "update",
            ["A1"],
            2,
            {"price": "1.50", "updated": "2026-01-02", "category": "C1"},
            {"price": "9.99", "updated": None, "category": None},
            ["price", "updated", "category"],
        ),
        (
            "update",
            ["A2"],
            3,
            {"price": "2.01", "updated": "2026-03-02", "category": "C3"},
            {"price": "1.00", "updated": None, "category": None},
            ["price", "updated", "category"],
        ),
    ]
    assert preview.status == "previewed" and not preview.error
    for run in (preview, *refused):
        assert run.counts == counts(created=1, updated=2, deleted=5)
        assert changes(run) == day3_plan
        assert row_errors(run) == []
    assert [(r.status, r.error) for r in refused] == [
        (
            "failed",
            "testapp.Product: the plan has 5 deletes, more than the limit of 1; nothing written",
        ),
        (
            "failed",
            "testapp.Product: the plan deletes 5 of 7 rows in scope (71%), more than "
            "the delete guard of 50%. Is the source empty or truncated? Nothing written; force "
            "the run to allow it.",
        ),
        (
            "failed",
            "testapp.Product: the plan has 8 changes, more than the limit of 3; nothing written",
        ),
    ]
    assert target_rows(Product) == [
        target("A1", price=Decimal("1.50"), category_id="C1", updated=dt.date(2026, 1, 2)),
        target("A2", price=Decimal("2.01"), category_id="C3", updated=dt.date(2026, 3, 2)),
        target("A3", name=TRICKY),
        target("A5", name="x\ty", price=Decimal("0.10")),
        target("A6", category_id="C2"),
        target("A7", name='it\'s "quoted"', price=Decimal("-12345678.99"), qty=2),
        target("N1", name="new\\one", category_id="C2", active=False),
    ]
    assert staging_tables() == []


def target(sku: str, **more: Any) -> dict:
    """A product as target_rows() shows it."""
    values = {"sku": sku, "name": "Thing", "price": Decimal("1.00"), "qty": 1}
    return {**values, "category_id": None, "region": "eu", "updated": None, "active": True, **more}


def test_members_every_type_nulls_composite_key_and_time_zones(sync, make_job, write_csv):
    job = make_job("test_members")
    token = str(uuid.UUID(int=7))
    day1 = write_csv(
        [
            member(
                "red",
                "1",
                note=TRICKY,
                score="1.25",
                joined="2024-02-29",
                seen="2024-03-31T01:30:00.123456+02:00",
                alarm="07:30:15.250",
                vip="yes",
                level="Gold member",
                token=token,
                extra='{"a": [1, 2.5, null], "b": {"y": 1, "x": 2}}',
            ),
            member("red", "2", seen="2024-10-27 02:30:00", score="1e-7", extra="[]"),
            member("blue", "1", seen="2024-06-01 12:00:00", alarm="23:59", score="0.1"),
            member("blue", "2", note="\\", nickname="\t", score="1e300"),
        ],
        name="m1.csv",
    )
    day2 = write_csv(
        [
            member(
                "red",
                "1",
                note=TRICKY,
                score="1.250",
                joined="2024-02-29",
                seen="2024-03-30T23:30:00.123999Z",
                alarm="07:30:15.250",
                vip="1",
                level="gold",
                token=token.upper(),
                extra='{"b": {"x": 2, "y": 1}, "a": [1, 2.5, null]}',  # same, other order
            ),
            member("red", "2", seen="2024-10-27 02:30:00+01:00", score="", extra='{"k": "v"}'),
            member("blue", "1", seen="", alarm="23:59:00", note="line\nbreak", score="0.3"),
            member("green", "7", joined="2025-12-31", vip="no", score="0.30000000000000004"),
        ],
        name="m2.csv",
    )
    first, second, third = (sync(job, file=day1), sync(job, file=day2), sync(job, file=day1))
    red1 = stored_member(
        "red",
        1,
        note=TRICKY,
        score=1.25,
        joined="2024-02-29",
        seen="2024-03-30T23:30:00.123Z",  # the change keeps milliseconds (DjangoJSONEncoder)
        alarm="07:30:15.250",
        vip=True,
        level="gold",
        token="00000000-0000-0000-0000-000000000007",
        extra={"a": [1, 2.5, None], "b": {"y": 1, "x": 2}},
    )
    # 02:30 on 2024-10-27 happens twice in Paris: the first one (+02:00) is taken.
    red2 = stored_member("red", 2, score=1e-07, seen="2024-10-27T00:30:00Z", extra=[])
    blue1 = stored_member("blue", 1, score=0.1, seen="2024-06-01T10:00:00Z", alarm="23:59:00")
    # jsonb keeps a number, not its type: PostgreSQL gives 1e300 back as an integer.
    big = 10**300 if connection.vendor == "postgresql" else 1e300
    blue2 = stored_member("blue", 2, note="\\", score=big)
    green7 = stored_member("green", 7, score=0.30000000000000004, joined="2025-12-31")
    assert first.counts == counts(created=4)
    assert changes(first) == [
        ("create", ["blue", 1], 4, None, blue1, MEMBER_FIELDS),
        ("create", ["blue", 2], 5, None, blue2, MEMBER_FIELDS),
        ("create", ["red", 1], 2, None, red1, MEMBER_FIELDS),
        ("create", ["red", 2], 3, None, red2, MEMBER_FIELDS),
    ]
    # red 1: the same values written differently (1.250, "1", "gold", an upper-case UUID,
    # the JSON object in another key order) except ``seen``, 456 microseconds later.
    red1_seen = {"seen": "2024-03-30T23:30:00.123Z"}
    blue1_now = {"note": "line\nbreak", "score": 0.3, "seen": None}
    blue1_was = {"note": None, "score": 0.1, "seen": "2024-06-01T10:00:00Z"}
    red2_now = {"score": None, "seen": "2024-10-27T01:30:00Z", "extra": {"k": "v"}}
    red2_was = {"score": 1e-07, "seen": "2024-10-27T00:30:00Z", "extra": []}
    assert second.counts == counts(created=1, updated=3, deleted=1)
    assert changes(second) == [
        ("create", ["green", 7], 5, None, green7, MEMBER_FIELDS),
        ("delete", ["blue", 2], None, blue2, None, []),
        ("update", ["blue", 1], 4, blue1_was, blue1_now, ["note", "score", "seen"]),
        ("update", ["red", 1], 2, red1_seen, red1_seen, ["seen"]),
        ("update", ["red", 2], 3, red2_was, red2_now, ["score", "seen", "extra"]),
    ]
    assert third.counts == counts(created=1, updated=3, deleted=1)
    assert changes(third) == [
        ("create", ["blue", 2], 5, None, blue2, MEMBER_FIELDS),
        ("delete", ["green", 7], None, green7, None, []),
        ("update", ["blue", 1], 4, blue1_now, blue1_was, ["note", "score", "seen"]),
        ("update", ["red", 1], 2, red1_seen, red1_seen, ["seen"]),
        ("update", ["red", 2], 3, red2_now, red2_was, ["score", "seen", "extra"]),
    ]
    utc = dt.UTC
    assert target_rows(Member) == [
        target_member(
            "blue",
            1,
            score=0.1,
            seen=dt.datetime(2024, 6, 1, 10, 0, tzinfo=utc),
            alarm=dt.time(23, 59),
        ),
        target_member("blue", 2, note="\\", score=1e300),
        target_member(
            "red",
            1,
            note=TRICKY,
            score=1.25,
            joined=dt.date(2024, 2, 29),
            seen=dt.datetime(2024, 3, 30, 23, 30, 0, 123456, tzinfo=utc),
            alarm=dt.time(7, 30, 15, 250000),
            vip=True,
            level="gold",
            token=uuid.UUID(int=7),
            extra={"a": [1, 2.5, None], "b": {"y": 1, "x": 2}},
        ),
        target_member(
            "red", 2, score=1e-07, seen=dt.datetime(2024, 10, 27, 0, 30, tzinfo=utc), extra=[]
        ),
    ]


MEMBER_FIELDS = [
    "team",
    "number",
    "name",
    "nickname",
    "note",
    "score",
    "joined",
    "seen",
    "alarm",
    "vip",
    "level",
    "token",
    "extra",
]


def target_member(team: str, number: int, **more: Any) -> dict:
    """A member as target_rows() shows it; fields not given are empty."""
    values: dict[str, Any] = dict.fromkeys(MEMBER_FIELDS)
    values.update(team=team, number=number, name="Ann", nickname="", vip=False)
    return {**values, "level": "silver", **more}


def stored_member(team: str, number: int, **more: Any) -> dict:
    """A member as a stored change shows it (a create's after, a delete's before)."""
    return target_member(team, number, **more)


def test_bounded_audit_detail_picks_the_same_changes(sync, job, write_csv, categories, settings):
    settings.DJSYNC = {**settings.DJSYNC, "AUDIT_CHANGES": 2}
    day1 = write_csv([product(f"P{i}", category_code="C1") for i in range(9, 0, -1)], name="1.csv")
    day2 = [product(f"P{i}", price="2", category_code="C2") for i in (7, 3, 5)]
    day2 += [product(f"N{i}") for i in (4, 1, 2)]
    first = sync(job, file=day1)
    second = sync(job, file=write_csv(day2, name="2.csv"), force=True)
    dry = sync(job, file=day1, dry_run=True)
    assert [c[:3] for c in changes(first)] == [("create", ["P8"], 3), ("create", ["P9"], 2)]
    assert second.counts == counts(created=3, updated=3, deleted=6)
    assert [c[:3] for c in changes(second)] == [
        ("create", ["N1"], 6),
        ("create", ["N4"], 5),
        ("delete", ["P8"], None),
        ("delete", ["P9"], None),
        ("update", ["P3"], 3),
        ("update", ["P7"], 2),
    ]
    assert "(of 3 creates, 3 updates, 6 deletes; " in second.warnings[0]
    assert len(changes(dry)) == 12  # a dry run keeps every change
    assert dry.warnings == []


# -- which path a run takes ------------------------------------------------------------------
def test_an_importer_the_staged_path_cannot_serve_takes_the_generic_path(
    make_job, write_csv, settings
):
    hooked = get_importer_class("test_products_hooked")()
    assert "normalize_target_row" in unsupported(hooked)
    run = djsync.run(make_job("test_products_hooked"), file=write_csv([product("A1")]))
    assert run.status == "succeeded" and not isinstance(run.plan, PostgresPlan)
    for name in ("test_products", "test_members", "test_products_eu", "test_employees"):
        assert unsupported(get_importer_class(name)()) is None, name
    settings.DJSYNC = {**settings.DJSYNC, "FAST_PATH": False}
    assert unsupported(get_importer_class("test_products")()) == "the FAST_PATH setting is off"


# -- staging in chunks -----------------------------------------------------------------------
@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Staging chunks of 4 rows (PostgreSQL's COPY, SQLite's executemany), and "large" from
    5 staged rows (PostgreSQL: ANALYZE and a larger work_mem), so a few rows cross them."""
    from djsync.backends import postgresql as postgres
    from djsync.backends import sqlite

    monkeypatch.setattr(postgres, "COPY_CHUNK", 4)
    monkeypatch.setattr(postgres, "LARGE", 5)
    monkeypatch.setattr(sqlite, "STAGE_CHUNK", 4)


def test_a_source_larger_than_one_staging_chunk(sync, job, write_csv, small_chunks):
    seed("K03", "K05", "K99")
    rows = [product(f"K{i:02d}", price="2") for i in range(1, 9)]  # sorted so far
    rows += [product("K02", name="again"), product("K00"), product("K09", price="x")]
    rows += [product(f"K{i:02d}") for i in range(10, 14)]
    run = sync(job, file=write_csv(rows), on_row_error="skip", force=True)
    assert run.status == "succeeded", run.error
    assert run.counts == counts(created=10, updated=2, deleted=1, errors=3)
    assert row_errors(run) == [
        (3, "", DUP.format("K02")),
        (10, "", DUP.format("K02")),
        (12, "price", "expected a decimal number, got 'x'"),
    ]
    assert [c[:3] for c in changes(run) if c[0] != "create"] == [
        ("delete", ["K99"], None),
        ("update", ["K03"], 4),
        ("update", ["K05"], 6),
    ]
    assert skus() == [f"K{i:02d}" for i in (0, 1, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13)]


@pytest.mark.django_db(transaction=True)
def test_cells_after_thousands_of_distinct_values_convert_as_before(sync, job, write_csv):
    """Past the first few thousand rows a column of mostly distinct values is no longer
    remembered: PostgreSQL's staging then sends a plain cell as written. Every odd cell
    after that point ends as on the generic path (values, row errors, changes).

    It commits: on a loaded machine its generic run outlasts the lock's lease, whose
    heartbeat renews it on its own connection, which must see the lock row."""
    seed("W00010", "X00", "Y00", "Z00")
    rows = [
        product(f"W{i:05d}", name=f"lamp {i}", price=f"{i}.{i % 100:02d}", qty=str(i))
        for i in range(6000)
    ]
    prices = ["1.5", "-0.50", "+5", "1e2", " 7.25 ", "00012.5", "12345678.99", "123456789"]
    prices += ["1.005", "\u0663", "1_000.5", ".5", "5.", "-12.30", "NaN", "", "99999999.999"]
    quantities = ["1_000", "\u0663", "-0", "007", " 42 ", "+3", "9" * 20, "-2147483648"]
    quantities += ["999999999", "1.0", "1e3", "", "-"]
    names = [TRICKY, " padded ", "back\\slash", "no\u00a0break", "zero\u200bwidth", "\\N", ""]
    names += ["x" * 201, "caf\u00e9"]
    rows += [product(f"X{i:02d}", price=p) for i, p in enumerate(prices)]
    rows += [product(f"Y{i:02d}", qty=q) for i, q in enumerate(quantities)]
    rows += [product(f"Z{i:02d}", name=n) for i, n in enumerate(names)]
    run = sync(job, file=write_csv(rows), on_row_error="skip")
    assert run.status == "succeeded", run.error
    assert run.counts == counts(created=6026, updated=4, errors=9)
    low, high = connection.ops.integer_field_range("IntegerField")
    assert row_errors(run) == [
        (6009, "price", "'123456789' is too large for 10 digits"),
        (6010, "price", "'1.005' has 3 decimal places; the field allows 2"),
        (6016, "price", "expected a finite decimal number, got 'NaN'"),
        (6017, "price", "a value is required"),
        (6018, "price", "'99999999.999' has 3 decimal places; the field allows 2"),
        (6025, "qty", f"'{'9' * 20}' is out of range: IntegerField on {connection.vendor} "
         f"holds {low:,} to {high:,}"),
        (6031, "qty", "expected a whole number, got '-'"),
        (6038, "name", "a value is required"),
        (6039, "name", "201 characters; the field allows at most 200"),
    ]  # fmt: skip
    price = dict(Product.objects.filter(sku__startswith="X").values_list("sku", "price"))
    assert [price.get(f"X{i:02d}") for i in range(len(prices))] == [
        Decimal("1.50"), Decimal("-0.50"), Decimal("5.00"), Decimal("100.00"), Decimal("7.25"),
        Decimal("12.50"), Decimal("12345678.99"), None, None, Decimal("3.00"),
        Decimal("1000.50"), Decimal("0.50"), Decimal("5.00"), Decimal("-12.30"), None, None,
        None,
    ]  # fmt: skip
    qty = dict(Product.objects.filter(sku__startswith="Y").values_list("sku", "qty"))
    assert [qty.get(f"Y{i:02d}") for i in range(len(quantities))] == [
        1000, 3, 0, 7, 42, 3, None, -2147483648, 999999999, 1, 1000, 0, None,
    ]  # fmt: skip
    name = dict(Product.objects.filter(sku__startswith="Z").values_list("sku", "name"))
    assert [name.get(f"Z{i:02d}") for i in range(len(names))] == [
        TRICKY.strip(), "padded", "back\\slash", "no\u00a0break", "zero\u200bwidth", "\\N",
        None, None, "caf\u00e9",
    ]  # fmt: skip


def test_bounded_audit_of_a_load_across_staging_chunks(
    sync, job, write_csv, small_chunks, settings
):
    """The first creates by row are stored, whatever the chunks, bad rows and duplicates."""
    settings.DJSYNC = {**settings.DJSYNC, "AUDIT_CHANGES": 6}
    rows = [product("K01"), product("K02", price="x"), product(""), product("K04")]
    rows += [product(f"K{i:02d}") for i in range(5, 12)]
    once = sync(job, file=write_csv(rows, name="once.csv"), on_row_error="skip")
    assert [c[:3] for c in changes(once)] == [
        ("create", ["K01"], 2),
        ("create", ["K04"], 5),
        ("create", ["K05"], 6),
        ("create", ["K06"], 7),
        ("create", ["K07"], 8),
        ("create", ["K08"], 9),
    ]
    Product.objects.all().delete()
    rows += [product("K05", name="again")]  # K05 twice: both occurrences are row errors
    twice = sync(job, file=write_csv(rows, name="twice.csv"), on_row_error="skip")
    assert [c[1][0] for c in changes(twice)] == ["K01", "K04", "K06", "K07", "K08", "K09"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="work_mem is PostgreSQL's")
def test_a_large_staged_load_gives_the_session_its_work_mem_back(
    sync, job, write_csv, small_chunks
):
    def work_mem() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW work_mem")
            return cursor.fetchone()[0]

    before = work_mem()
    run = sync(job, file=write_csv([product(f"W{i}") for i in range(12)]))
    assert run.counts == counts(created=12)
    assert work_mem() == before

"""The PostgreSQL fast path and the generic path give identical results on the same inputs:
same counts, same target rows, same recorded changes and row errors, same failures."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

import djsync
from djsync.models import SyncJob, SyncRun
from djsync.registry import get_importer_class
from djsync.targets.postgres import PostgresPlan, unsupported
from tests.testapp.models import Category, Member, Product

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the fast path is PostgreSQL's; SQLite is generic"
)

TRICKY = 'tab\there, "quoted", back\\slash \\N and\nnew line; a \\. and \r return'


def product(sku: str, name: str = "Thing", price: str = "1.00", **more: Any) -> dict:
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


def run_outcome(job: SyncJob, path: Any, **options: Any) -> tuple[dict, bool]:
    """What a user sees of one run, with database ids replaced by keys."""
    model = get_importer_class(job.importer).model
    keys = get_importer_class(job.importer).keys
    before = {str(pk): key for pk, *key in model.objects.values_list("pk", *keys)}
    try:
        done = djsync.run(job, file=path, **options)
    except Exception as exc:  # noqa: BLE001 - the failure itself is part of the outcome
        done = exc.run  # type: ignore[attr-defined]
    plan = getattr(done, "plan", None)
    run = SyncRun.objects.get(pk=done.pk)
    changes = sorted(
        (
            c.action,
            c.key,
            c.row,
            c.before,
            c.after,
            c.changed_fields,
            before.get(c.object_pk) if c.object_pk else None,
        )
        for c in run.changes.all()
    )
    errors = [(e.row, e.column, e.message, e.key, e.value) for e in run.row_errors.all()]
    outcome = {
        "status": run.status,
        "counts": run.counts,
        "stats": run.stats,
        "rows_read": run.rows_read,
        "error": run.error,
        "warnings": run.warnings,
        "changes": changes,
        "row_errors": errors,
    }
    return outcome, plan


def target_rows(model: type) -> list[dict]:
    rows = []
    for obj in model.objects.all():
        values = {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields}
        values.pop("id")
        if "category_id" in values:
            values["category_id"] = obj.category.code if obj.category_id else None
        rows.append(values)
    return sorted(rows, key=repr)


def both(
    scenario: Callable[[], list[tuple[dict, Any]]],
    model: type,
    settings: dict[str, Any] | None = None,
) -> tuple[list[dict], list[dict]]:
    """Run ``scenario`` on the generic path, undo, run it on the fast path; compare."""
    results = {}
    for fast in (False, True):
        with override_settings(DJSYNC={**(settings or {}), "FAST_PATH": fast}):
            model.objects.all().delete()
            SyncRun.objects.all().delete()
            outcomes = scenario()
            for _, plan in outcomes:
                if plan is not None:
                    assert isinstance(plan, PostgresPlan) == fast
            results[fast] = ([o for o, _ in outcomes], target_rows(model))
    generic, fast = results[False], results[True]
    for step, (g, f) in enumerate(zip(generic[0], fast[0], strict=True)):
        assert f == g, f"run {step + 1} differs"
    assert fast[1] == generic[1]
    return generic


@pytest.fixture
def categories(db: None) -> None:
    Category.objects.bulk_create(
        [Category(code=c, name=c) for c in ("C1", "C2", "C3")], ignore_conflicts=True
    )


def test_products_every_action_row_errors_and_duplicates(make_job, write_csv, categories):
    job = make_job("test_products", on_row_error="skip")
    day1 = write_csv(
        [
            product("A1", price="1.5", category_code="C1", updated="2026-01-02"),
            product("A2", price="2", updated="2026-03-02"),
            product("A3", name=TRICKY),
            product("A4"),
            product("A5", name="x", price="0.10"),
            product("A6", category_code="C2"),
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
            product("N1", name="new\\one", category_code="C2", active="no"),
            product("N2", category_code="ZZ"),  # unknown category
            product("A3", name="twice"),
            product("D1"),
            product("D1", name="again"),
            product(" A1 ", price="3"),  # the key is trimmed: a third A1? no: duplicate
            product("B7", price="bad"),  # a bad row and a good row share B7: no create
            product("B7"),
        ],
        name="day2.csv",
    )
    day3 = write_csv([product("A1", price="9.99"), product("A2"), product("Z9")], name="d3.csv")

    def scenario():
        return [
            run_outcome(job, day1),
            run_outcome(job, day2),
            run_outcome(job, day3, dry_run=True, force=True),
            run_outcome(job, day3, max_delete=1),  # over the limit: nothing written
            run_outcome(job, day3),  # over the delete guard: nothing written
        ]

    outcomes, rows = both(scenario, Product)
    assert outcomes[1]["counts"] == {
        "created": 1,
        "updated": 2,
        "deleted": 1,
        "unchanged": 0,
        "errors": 10,
    }
    assert outcomes[2]["status"] == "previewed"
    assert outcomes[3]["status"] == outcomes[4]["status"] == "failed"
    assert {r["sku"] for r in rows} == {"A1", "A2", "A3", "A5", "A6", "N1"}
    assert next(r for r in rows if r["sku"] == "A3")["name"] == TRICKY


def test_members_every_type_composite_key_and_time_zones(make_job, write_csv):
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
                extra='{"a": [1, 2.5, null]}',
            ),
            member("red", "2", seen="2024-10-27 02:30:00", score="1e-7", extra="[]"),
            member("blue", "1", seen="2024-06-01 12:00:00", alarm="23:59"),
            member("blue", "2", note="\\", nickname="\t"),
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
                extra='{"a": [1, 2.5, null]}',
            ),
            member("red", "2", seen="2024-10-27 02:30:00+01:00", score="", extra='{"k": "v"}'),
            member("blue", "1", seen="", alarm="23:59:00", note="line\nbreak"),
            member("green", "7", joined="2025-12-31", vip="no"),
        ],
        name="m2.csv",
    )

    def scenario():
        return [run_outcome(job, day1), run_outcome(job, day2), run_outcome(job, day1)]

    outcomes, rows = both(scenario, Member)
    assert outcomes[0]["counts"]["created"] == 4
    assert outcomes[1]["counts"]["deleted"] == 1  # blue 2
    assert outcomes[1]["counts"]["created"] == 1  # green 7
    assert outcomes[2]["counts"]["created"] == outcomes[2]["counts"]["deleted"] == 1
    assert sorted((r["team"], r["number"]) for r in rows) == [
        ("blue", 1),
        ("blue", 2),
        ("red", 1),
        ("red", 2),
    ]


def test_scope_deletes_only_inside_it(make_job, write_csv):
    job = make_job("test_products_eu")
    path = write_csv([product("E1", price="5"), product("E3")])

    def scenario():
        for sku, region in (("E1", "eu"), ("E2", "eu"), ("U1", "us")):
            Product.objects.create(sku=sku, name="Thing", price=Decimal("1"), qty=1, region=region)
        return [run_outcome(job, path), run_outcome(job, path)]

    outcomes, rows = both(scenario, Product)
    assert outcomes[0]["counts"] == {
        "created": 1,
        "updated": 1,
        "deleted": 1,
        "unchanged": 0,
        "errors": 0,
    }
    assert sorted(r["sku"] for r in rows) == ["E1", "E3", "U1"]


def test_bounded_audit_detail_picks_the_same_changes(make_job, write_csv, categories):
    job = make_job("test_products")
    day1 = write_csv([product(f"P{i}", category_code="C1") for i in range(9, 0, -1)], name="1.csv")
    day2 = [product(f"P{i}", price="2", category_code="C2") for i in (7, 3, 5)]
    day2 += [product(f"N{i}") for i in (4, 1, 2)]

    def scenario():
        return [
            run_outcome(job, day1),
            run_outcome(job, write_csv(day2, name="2.csv"), force=True),
            run_outcome(job, day1, dry_run=True),
        ]

    outcomes, _ = both(scenario, Product, {"AUDIT_CHANGES": 2})
    assert [(c[0], c[1]) for c in outcomes[0]["changes"]] == [
        ("create", ["P8"]),
        ("create", ["P9"]),
    ]
    assert outcomes[1]["counts"]["deleted"] == 6
    assert sorted((c[0], c[1][0]) for c in outcomes[1]["changes"]) == [
        ("create", "N1"),
        ("create", "N4"),
        ("delete", "P8"),
        ("delete", "P9"),
        ("update", "P3"),
        ("update", "P7"),
    ]
    assert "(of 3 creates, 3 updates, 6 deletes; " in outcomes[1]["warnings"][0]
    assert len(outcomes[2]["changes"]) == 12  # a dry run keeps every change
    assert outcomes[2]["warnings"] == []


def test_sorted_keys_skip_the_duplicate_check_but_a_repeat_is_still_caught(make_job, write_csv):
    job = make_job("test_products", on_row_error="skip")
    ordered = write_csv([product(f"K{i:02d}") for i in range(12)], name="1.csv")
    repeated = write_csv([product("K01"), product("K02"), product("K02", "Twice")], name="2.csv")

    def scenario():
        return [run_outcome(job, ordered), run_outcome(job, repeated, force=True)]

    outcomes, rows = both(scenario, Product)
    assert outcomes[0]["counts"]["created"] == 12
    assert outcomes[1]["counts"]["errors"] == 2
    assert [e[0] for e in outcomes[1]["row_errors"]] == [3, 4]
    assert sorted(r["sku"] for r in rows) == ["K01", "K02"]


def test_a_bad_row_without_a_key_blocks_deletes_and_fails_by_default(make_job, write_csv):
    strict = make_job("test_products", name="strict")
    lenient = make_job("test_products", name="lenient", on_row_error="skip")
    seed = write_csv([product("A1"), product("A2"), product("A3")], name="seed.csv")
    bad = write_csv([product("A1", price="7"), product("", price="1")], name="bad.csv")

    def scenario():
        return [
            run_outcome(strict, seed),
            run_outcome(strict, bad),  # fails: row errors, nothing written
            run_outcome(lenient, bad),  # applies A1, deletes nothing, warns
        ]

    outcomes, rows = both(scenario, Product)
    assert outcomes[1]["status"] == "failed" and "nothing written" in outcomes[1]["error"]
    assert outcomes[2]["warnings"] and outcomes[2]["counts"]["deleted"] == 0
    assert sorted(r["sku"] for r in rows) == ["A1", "A2", "A3"]


def test_dry_run_writes_nothing_and_staging_tables_are_dropped(make_job, write_csv):
    job = make_job("test_products")
    path = write_csv([product(f"S{i}", price=f"{i}.5") for i in range(50)])
    run = djsync.run(job, file=path, dry_run=True)
    assert isinstance(run.plan, PostgresPlan)
    assert run.status == "previewed" and run.counts["created"] == 50
    assert run.changes.count() == 50 and Product.objects.count() == 0
    assert len(run.plan.creates) == 50  # exact, from the database
    assert [c.key for c in run.plan.creates][:1] == [("S0",)]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema() "
            "AND relname LIKE 'djsync_stage_%%'"
        )
        assert cursor.fetchone()[0] == 0
    djsync.run(job, file=path)
    assert Product.objects.count() == 50


def test_a_previewed_fast_plan_applies_later(make_job, write_csv):
    from djsync.services import apply_previewed

    job = make_job("test_products")
    djsync.run(job, file=write_csv([product("P1"), product("P2")], name="a.csv"))
    preview = djsync.run(
        job, file=write_csv([product("P1", price="4"), product("P3")], name="b.csv"), dry_run=True
    )
    applied = apply_previewed(preview)
    assert applied.status == "succeeded"
    assert sorted(Product.objects.values_list("sku", "price")) == [
        ("P1", Decimal("4.00")),
        ("P3", Decimal("1.00")),
    ]


def test_importers_the_fast_path_cannot_serve_take_the_generic_path(db):
    importer = get_importer_class("test_products_hooked")()
    assert "normalize_target_row" in unsupported(importer)
    with override_settings(DJSYNC={"FAST_PATH": False}):
        assert unsupported(get_importer_class("test_products")()) == "the FAST_PATH setting is off"
    assert unsupported(get_importer_class("test_products")()) is None
    assert Member.objects.count() == 0

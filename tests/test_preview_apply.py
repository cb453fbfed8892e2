"""Applying a stored preview: the same rows as a direct run, on the path the direct run takes.

A preview's stored changes are restaged in SQL on PostgreSQL and SQLite (djsync.backends.stored)
and checked against the target there; these tests hold both paths (staged, and generic with
the FAST_PATH setting off) to the same outcome as a direct run of the same file.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings

import djsync
from djsync.exceptions import ConflictError
from djsync.models import SyncRun
from djsync.runs.orchestrator import apply_previewed
from tests.testapp.models import Category, Member, Product

pytestmark = pytest.mark.django_db(transaction=True)


def member(number: int, **values: Any) -> dict[str, Any]:
    row = {
        "team": "red",
        "number": number,
        "name": f"M{number}",
        "nickname": "",
        "note": "",
        "score": "1.5",
        "joined": "2026-01-02",
        "seen": "2026-01-02T10:00:00.250+00:00",
        "alarm": "07:30:00",
        "vip": "true",
        "level": "gold",
        "token": f"12345678-1234-4234-8234-{number:012d}",
        "extra": '{"a": [1, 2], "b": "x"}',
    }
    row.update(values)
    return row


@pytest.fixture(params=["staged", "generic"])
def path(request: pytest.FixtureRequest) -> str:
    if request.param == "generic":
        settings.DJSYNC = {**settings.DJSYNC, "FAST_PATH": False}
    return request.param


def rows() -> list[tuple[Any, ...]]:
    return list(
        Member.objects.order_by("team", "number").values_list(
            "team", "number", "name", "nickname", "note", "score", "joined", "seen", "alarm",
            "vip", "level", "token", "extra",
        )
    )  # fmt: skip


def test_an_applied_preview_writes_what_a_direct_run_writes(path, make_job, write_csv):
    job = make_job("test_members", delete=True)
    day1 = write_csv([member(1), member(2), member(3, seen="")], name="day1.csv")
    day2 = write_csv(
        [
            member(1, name="Renamed", score="2.25", extra='{"a": []}', vip="false"),
            member(3, seen="2026-03-04T05:06:07.891+00:00", alarm="23:59:59.5", note="n"),
            member(4, token="", joined=""),
        ],
        name="day2.csv",
    )
    djsync.run(job, file=day1)
    djsync.run(job, file=day2, force=True)
    expected = rows()
    Member.objects.all().delete()
    djsync.run(job, file=day1)

    preview = djsync.run(job, file=day2, dry_run=True, force=True)
    assert rows() != expected  # the preview wrote nothing
    applied = apply_previewed(preview)

    assert applied.status == SyncRun.Status.SUCCEEDED
    assert (applied.created, applied.updated, applied.deleted) == (1, 2, 1)
    assert rows() == expected
    recorded = applied.stats["testapp.Member"]["path"]
    assert recorded.startswith("staged:" if path == "staged" else "generic:"), recorded


def product(sku: str, **values: Any) -> dict[str, Any]:
    return {"sku": sku, "name": sku, "price": "1.50", "qty": "1", "category_code": "",
            "updated": "", "active": "true", **values}  # fmt: skip


@pytest.fixture
def catalogue(db: None) -> None:
    Category.objects.create(code="C1", name="One")
    Category.objects.create(code="C2", name="Two")


def test_foreign_keys_of_a_preview_are_resolved_when_it_is_applied(
    path, make_job, write_csv, catalogue
):
    job = make_job("test_products", delete=True)
    djsync.run(job, file=write_csv([product("P1"), product("P2", category_code="C1")]))
    preview = djsync.run(
        job,
        file=write_csv(
            [product("P1", category_code="C2", price="4"), product("P3", category_code="C1")],
            name="b.csv",
        ),
        dry_run=True,
        force=True,
    )
    apply_previewed(preview)
    assert sorted(Product.objects.values_list("sku", "price", "category__code")) == [
        ("P1", Decimal("4.00"), "C2"),
        ("P3", Decimal("1.50"), "C1"),
    ]


@pytest.mark.parametrize(
    ("meddle", "why"),
    [
        (lambda: Product.objects.filter(sku="P1").update(price="9.99"), "P1 (changed)"),
        (lambda: Product.objects.filter(sku="P2").delete(), "P2 (gone)"),
        (lambda: Product.objects.create(sku="P3", name="x", price=1), "P3 (created by someone"),
        (lambda: Product.objects.filter(sku="P1").update(sku="P9"), "P1 (gone)"),
        (lambda: Category.objects.filter(code="C2").delete(), "no category with code 'C2'"),
    ],
    ids=["updated-row-changed", "deleted-row-gone", "created-key-taken", "key-moved", "parent"],
)
def test_a_stale_preview_writes_nothing_and_names_the_key(
    path, meddle, why, make_job, write_csv, catalogue
):
    job = make_job("test_products", delete=True)
    djsync.run(job, file=write_csv([product("P1"), product("P2")]))
    preview = djsync.run(
        job,
        file=write_csv(
            [product("P1", price="4", category_code="C2"), product("P3", category_code="C2")],
            name="b.csv",
        ),
        dry_run=True,
        force=True,
    )
    meddle()
    before = sorted(Product.objects.values_list("sku", "price", "category_id"))

    with pytest.raises(ConflictError) as caught:
        apply_previewed(preview)

    assert why in str(caught.value)
    assert "Nothing written; preview again" in str(caught.value)
    assert sorted(Product.objects.values_list("sku", "price", "category_id")) == before
    preview.refresh_from_db()
    assert preview.status == SyncRun.Status.FAILED


def test_microseconds_the_preview_could_not_store_are_not_a_conflict(path, make_job, write_csv):
    job = make_job("test_members", delete=True)
    djsync.run(
        job,
        file=write_csv(
            [member(1, seen="2026-01-02T10:00:00.123456+00:00", alarm="07:30:00.654321")]
            + [member(2, seen="2026-01-02T10:00:00.999999+00:00")]
        ),
    )
    preview = djsync.run(
        job, file=write_csv([member(1, name="New", seen="2026-01-02T10:00:00.123456+00:00",
                                    alarm="07:30:00.654321")], name="b.csv"),
        dry_run=True, force=True,
    )  # fmt: skip
    applied = apply_previewed(preview)
    assert (applied.updated, applied.deleted) == (1, 1)
    assert list(Member.objects.values_list("number", "name")) == [(1, "New")]


def test_a_preview_stored_without_its_field_list_is_applied_on_the_generic_path(
    make_job, write_csv
):
    job = make_job("test_members", delete=True)
    djsync.run(job, file=write_csv([member(1), member(2)]))
    preview = djsync.run(
        job, file=write_csv([member(1, name="New")], name="b.csv"), dry_run=True, force=True
    )
    stats = preview.stats
    del stats["testapp.Member"]["fields"]  # as a preview stored by an earlier djsync
    SyncRun.objects.filter(pk=preview.pk).update(stats=stats)
    preview.refresh_from_db()

    applied = apply_previewed(preview)

    assert list(Member.objects.values_list("number", "name")) == [(1, "New")]
    assert applied.stats["testapp.Member"]["path"].startswith("generic:")


def test_a_multi_model_job_plans_and_applies_each_model_on_the_staged_path(
    path, make_job, write_csv
):
    cats = write_csv(
        [{"code": "tools", "name": "Tools"}, {"code": "toys", "name": "Toys"}], "c.csv"
    )
    prods = write_csv(
        [product("A", category_code="tools"), product("B", category_code="toys")], "p.csv"
    )
    job = make_job(
        "test_products, test_categories",
        name="catalogue",
        source={"sources": {"test_categories": {"path": cats.name},
                            "test_products": {"path": prods.name}}},
    )  # fmt: skip

    preview = djsync.run(job, dry_run=True)
    assert not Category.objects.exists()
    applied = apply_previewed(preview)

    assert applied.status == SyncRun.Status.SUCCEEDED, applied.error
    assert sorted(Product.objects.values_list("sku", "category__code")) == [
        ("A", "tools"),
        ("B", "toys"),
    ]
    kind = "staged:" if path == "staged" else "generic:"
    for model in ("testapp.Category", "testapp.Product"):
        assert preview.stats[model]["path"].startswith(kind), preview.stats[model]
        assert applied.stats[model]["path"].startswith(kind), applied.stats[model]
    direct = djsync.run(job)  # the same files again: nothing to do, on the same path
    assert (direct.created, direct.updated, direct.unchanged) == (0, 0, 4)
    assert direct.stats["testapp.Product"]["path"].startswith(kind)


def test_a_staged_plan_is_indexed_as_the_tutorial_shows(make_job, write_csv, job_path):
    """``run.plan.updates[0].old`` (docs/tutorial.md) on a plan kept in staging tables."""
    from decimal import Decimal

    from tests.testapp.models import Product

    for i in range(5):
        Product.objects.create(sku=f"P{i}", name=f"Item {i}", price=Decimal("1.00"), qty=i)
    rows = [
        {"sku": f"P{i}", "name": f"Item {i}", "price": "2.00" if i % 2 else "1.00", "qty": i,
         "updated": "", "active": "1"}
        for i in range(5)
    ]  # fmt: skip
    job = make_job("test_products", source={"path": job_path(write_csv(rows))})
    run = djsync.run(job, dry_run=True)
    updates = run.plan.updates
    assert len(updates) == 2
    assert updates[0].old == {"price": Decimal("1.00")} and updates[0].key == ("P1",)
    assert updates[-1].key == ("P3",)
    assert [u.key for u in updates[:5]] == [("P1",), ("P3",)]
    with pytest.raises(IndexError):
        updates[2]

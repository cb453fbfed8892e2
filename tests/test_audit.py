"""Bounded audit detail: a run that applies at once stores the first AUDIT_CHANGES changes
per action (counts exact, a warning says what was left out); dry runs keep every change."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.urls import reverse

import djsync
from djsync.models import SyncRun
from djsync.runs import report
from djsync.runs.orchestrator import apply_previewed
from tests.testapp.models import Product


def product(sku: str, price: str = "1.00") -> dict[str, Any]:
    return {"sku": sku, "name": "Thing", "price": price, "qty": "1", "updated": "", "active": "yes"}


def stored(run: SyncRun) -> list[tuple[str, str, int | None]]:
    return sorted((c.action, c.key[0], c.row) for c in run.changes.all())


@pytest.fixture
def limit_two(settings, tmp_path):
    settings.DJSYNC = {
        **settings.DJSYNC,
        "AUDIT_CHANGES": 2,
        "UPLOAD_ROOT": str(tmp_path / "uploads"),
    }


def test_a_run_that_applies_stores_the_first_changes_per_action(make_job, write_csv, limit_two):
    job = make_job("test_products")
    first = djsync.run(job, file=write_csv([product(f"P{i}") for i in range(1, 6)], name="1.csv"))
    assert first.counts["created"] == 5
    assert Product.objects.count() == 5
    assert stored(first) == [("create", "P1", 2), ("create", "P2", 3)]
    assert first.warnings == [
        "only the first 2 changes per action are stored for audit (of 5 creates; the "
        "AUDIT_CHANGES setting); the counts are exact"
    ]

    day2 = [product("P1", "2"), product("P2", "2"), product("P3", "2")]
    day2 += [product("P6"), product("P7"), product("P8")]
    second = djsync.run(job, file=write_csv(day2, name="2.csv"))
    assert second.counts == {
        "created": 3,
        "updated": 3,
        "deleted": 2,
        "unchanged": 0,
        "errors": 0,
    }
    assert sorted(Product.objects.values_list("sku", flat=True)) == [
        "P1",
        "P2",
        "P3",
        "P6",
        "P7",
        "P8",
    ]
    assert Product.objects.get(sku="P3").price == Decimal("2.00")
    assert stored(second) == [
        ("create", "P6", 5),
        ("create", "P7", 6),
        ("delete", "P4", None),
        ("delete", "P5", None),
        ("update", "P1", 2),
        ("update", "P2", 3),
    ]
    assert second.warnings == [
        "only the first 2 changes per action are stored for audit (of 3 creates, "
        "3 updates; the AUDIT_CHANGES setting); the counts are exact"
    ]
    saved = SyncRun.objects.get(pk=second.pk)
    assert saved.warnings == second.warnings
    assert saved.created == 3 and saved.updated == 3


def test_dry_runs_and_previews_store_every_change(make_job, write_csv, limit_two):
    job = make_job("test_products")
    path = write_csv([product(f"P{i}") for i in range(1, 6)])
    preview = djsync.run(job, file=path, dry_run=True)
    assert preview.warnings == []
    assert [sku for _, sku, _ in stored(preview)] == ["P1", "P2", "P3", "P4", "P5"]
    applied = apply_previewed(preview)
    assert applied.status == SyncRun.Status.SUCCEEDED
    assert Product.objects.count() == 5


def test_none_stores_every_change(make_job, write_csv, settings):
    settings.DJSYNC = {**settings.DJSYNC, "AUDIT_CHANGES": None}
    job = make_job("test_products")
    run = djsync.run(job, file=write_csv([product(f"P{i}") for i in range(1, 6)]))
    assert len(stored(run)) == 5
    assert run.warnings == []


def test_runsync_report_and_admin_say_the_detail_is_partial(
    make_job, write_csv, limit_two, admin_client
):
    job = make_job("test_products", name="products")
    path = write_csv([product(f"P{i}") for i in range(1, 6)])
    out = StringIO()
    call_command("runsync", "products", "--file", str(path), "--diff", stdout=out)
    text = out.getvalue()
    assert "warning: only the first 2 changes per action are stored for audit" in text
    created = [line.split("[")[1].split("]")[0] for line in text.splitlines() if " create " in line]
    assert created == ["P1", "P2"]

    run = SyncRun.objects.get(job=job)
    as_json = json.loads(json.dumps(report.run_as_dict(run, changes=True), default=str))
    assert len(as_json["changes"]) == 2
    assert as_json["counts"]["created"] == 5
    assert "only the first 2 changes per action" in as_json["warnings"][0]

    page = admin_client.get(reverse("admin:djsync_syncrun_change", args=[run.pk]))
    assert "only the first 2 changes per action are stored for audit" in page.content.decode()

"""Incremental sync: a cursor per job, saved only after a successful apply; marked deletes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connections

import djsync
from djsync.exceptions import LimitExceeded
from djsync.runs.orchestrator import apply_previewed
from tests.httpserver import Reply, Request, allow, serve
from tests.testapp.models import Product

pytestmark = pytest.mark.django_db(databases=["default", "other"])

QUERY = (
    "SELECT code AS sku, title AS name, cost AS price, stock AS qty, changed AS updated, "
    "live AS active, gone FROM feed"
)


def feed(*rows: tuple) -> None:
    with connections["other"].cursor() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS feed (code varchar(32), title varchar(200), "
            "cost numeric(10, 2), stock integer, changed date, live boolean, gone boolean)"
        )
        cursor.executemany("INSERT INTO feed VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)


def change(sql: str, params: list) -> None:
    with connections["other"].cursor() as cursor:
        cursor.execute(sql, params)


@pytest.fixture
def job(make_job):
    return make_job(
        "test_products",  # deletes missing rows in a full sync
        source={
            "kind": "sql",
            "query": "feed",  # QUERY, declared in tests/settings.py
            "incremental": {"column": "updated", "deleted": "gone"},
        },
    )


def test_cursor_reads_only_what_changed_and_never_deletes_missing_rows(job):
    feed(
        ("A", "Saw", 5, 1, "2026-01-01", True, False),
        ("B", "Axe", 7, 1, "2026-01-02", True, False),
    )
    first = djsync.run(job)
    assert first.status == "succeeded", first.error
    assert first.counts["created"] == 2
    job.refresh_from_db()
    assert job.state["cursor"] == "2026-01-02"

    change("UPDATE feed SET cost = 9, changed = '2026-01-05' WHERE code = 'A'", [])
    second = djsync.run(job)
    # Only rows at or past the cursor are read: B (at it, unchanged) and A (changed).
    assert second.rows_read == 2
    assert second.counts == {"created": 0, "updated": 1, "deleted": 0, "unchanged": 1, "errors": 0}
    job.refresh_from_db()
    assert job.state["cursor"] == "2026-01-05"

    change("DELETE FROM feed WHERE code = 'B'", [])  # missing is not deleted incrementally
    third = djsync.run(job)
    assert third.counts["deleted"] == 0
    assert Product.objects.filter(sku="B").exists()
    assert Product.objects.get(sku="A").price == Decimal("9.00")


def test_records_marked_deleted_are_deleted(job):
    feed(
        ("A", "Saw", 5, 1, "2026-01-01", True, False),
        ("B", "Axe", 7, 1, "2026-01-01", True, False),
        ("C", "Cup", 1, 1, "2026-01-01", True, False),
    )
    djsync.run(job)
    change("UPDATE feed SET gone = %s, changed = '2026-02-01' WHERE code = 'B'", [True])
    run = djsync.run(job, force=True)
    assert run.status == "succeeded", run.error
    assert run.counts["deleted"] == 1
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["A", "C"]


def test_marked_deletes_need_the_delete_switch(job):
    feed(("A", "Saw", 5, 1, "2026-01-01", True, False))
    djsync.run(job)
    change("UPDATE feed SET gone = %s, changed = '2026-02-01'", [True])
    run = djsync.run(job, delete=False)
    assert run.counts["deleted"] == 0
    assert "marked deleted, but the job does not delete" in run.warnings[0]
    assert Product.objects.filter(sku="A").exists()


def test_the_cursor_is_saved_only_after_a_successful_apply(job):
    feed(("A", "Saw", 5, 1, "2026-01-01", True, False))
    preview = djsync.run(job, dry_run=True)
    assert preview.status == "previewed"
    assert preview.cursor == "2026-01-01"
    job.refresh_from_db()
    assert "cursor" not in job.state  # a dry run moves nothing
    apply_previewed(preview)
    job.refresh_from_db()
    assert job.state["cursor"] == "2026-01-01"

    change("INSERT INTO feed VALUES (%s, %s, 1, 1, %s, TRUE, FALSE)", ["Z", "New", "2026-03-01"])
    with pytest.raises(LimitExceeded):
        djsync.run(job, max_create=0)
    job.refresh_from_db()
    assert job.state["cursor"] == "2026-01-01"  # the failed run did not move it


def test_an_empty_incremental_read_is_fine(job):
    feed(("A", "Saw", 5, 1, "2026-01-01", True, False))
    djsync.run(job)
    run = djsync.run(job)
    assert run.status == "succeeded" and run.counts["unchanged"] == 1
    job.refresh_from_db()
    job.state = {"cursor": "2030-01-01"}
    job.save()
    nothing = djsync.run(job)
    assert nothing.status == "succeeded", nothing.error
    assert nothing.rows_read == 0 and Product.objects.count() == 1


def test_http_since_parameter(make_job, settings):
    items = [
        {"sku": "H1", "name": "One", "price": "1", "qty": 1, "updated": "2026-01-01", "active": 1},
        {"sku": "H2", "name": "Two", "price": "2", "qty": 1, "updated": "2026-01-03", "active": 1},
    ]

    def handler(request: Request) -> Reply:
        since = request.query.get("since", "")
        return Reply(body={"items": [i for i in items if i["updated"] > since]})

    for api in serve():
        allow(settings, api.url("/"))  # DJSYNC["HTTP_BASE_URLS"]
        api.route("/changes", handler)
        job = make_job(
            "test_products",
            source={
                "kind": "http",
                "url": api.url("/changes"),
                "incremental": {"column": "updated", "param": "since"},
            },
        )
        assert djsync.run(job).counts["created"] == 2
        job.refresh_from_db()
        assert job.state["cursor"] == "2026-01-03"
        second = djsync.run(job)
        assert second.status == "succeeded", second.error
        assert api.hits("/changes")[-1].query == {"since": "2026-01-03"}
        assert second.rows_read == 0
        assert Product.objects.count() == 2  # nothing deleted by an empty answer

"""django-simple-history records written in SQL (djsync.history_sql) against the ones
``bulk_history_create`` writes: the same rows, column by column, on both databases and both
paths (the differential harness's ``sync`` fixture, tests/test_differential.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import djsync.history
from djsync.history import change_reason
from djsync.history_sql import SqlHistory, sql_history
from djsync.models import SyncJob
from djsync.signals import batch_applied
from tests.test_differential import sync, sync_path  # noqa: F401 - the harness
from tests.testapp.models import Book, Edition, Pamphlet

pytestmark = pytest.mark.django_db(transaction=False)


def edition(isbn: str, title: str, **more: str) -> dict[str, str]:
    row = {"isbn": isbn, "title": title, "price": "1.50", "printed": "", "sold": ""}
    return {**row, "signed": "", "notes": "", "book_code": "", **more}


DAY_1 = [
    edition("E1", "One", book_code="B1", printed="2020-01-02", sold="2024-05-06 07:08:09"),
    edition("E2", "Two", signed="yes", notes="kept out of the history"),
    edition("E3", "Three", price="12.05"),
]
DAY_2 = [
    edition("E1", "Uno", book_code="B1", printed="2020-01-02", sold="2024-05-06 07:08:09"),
    edition("E2", "Two", signed="yes", notes="other notes"),  # notes only: updated
    edition("E4", "Four", book_code="B1", signed="no"),
]


def records(model: type, runs: list[Any]) -> list[dict[str, Any]]:
    """Every history record of ``model`` as the database holds it, column by column (the
    driver's values and their types), ``history_id`` and ``history_date`` by their type
    only, the change reason by the run it names, the row's own ``id`` (a new one on each
    try) by its type; ordered by key, then type."""
    table = model.history.model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    reasons = {change_reason(run): f"run {n}" for n, run in enumerate(runs, start=1)}
    key = "isbn" if model is Edition else "code"
    for row in rows:
        assert row.get("history_relation_id", row["id"]) == row["id"]
        for column in ("id", "history_id", "history_date", "history_relation_id"):
            if column in row:
                row[column] = type(row[column])
        row["history_change_reason"] = reasons.get(row["history_change_reason"], "?")
        row.update({f"{name} type": type(value) for name, value in list(row.items())})
    return sorted(rows, key=lambda row: (row[key], "+~-".index(row["history_type"])))


def two_days(
    run: Callable[..., Any], job: SyncJob, write_csv: Callable[..., Any], user: Any
) -> list[Any]:
    first = run(job, file=write_csv(DAY_1), user=user)
    second = run(job, file=write_csv(DAY_2))
    assert first.status == second.status == "succeeded", (first.error, second.error)
    return [first, second]


def in_sql(queries: CaptureQueriesContext, model: type) -> list[str]:
    """The statements that copied ``model``'s rows into its history table."""
    table = model.history.model._meta.db_table
    copy = f'FROM "{model._meta.db_table}" m WHERE'
    sql = [q["sql"] for q in queries.captured_queries]
    return [q for q in sql if q.startswith(f'INSERT INTO "{table}"') and copy in q]


def without_sql(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every model's history written by bulk_history_create, as before djsync.history_sql."""
    monkeypatch.setattr(djsync.history, "sql_history", lambda model, vendor: "off")


def test_sql_records_are_the_ones_bulk_history_create_writes(
    sync: Any,  # noqa: F811
    make_job: Callable[..., SyncJob],
    write_csv: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A foreign key, an excluded field, a UUID history_id, a user id field, a relation to
    the row, a text change reason: the same records, value for value and type for type."""
    assert isinstance(sql_history(Edition, connection.vendor), SqlHistory)
    user = get_user_model().objects.create(username="ann")
    Book.objects.create(pk=90_001, code="B1", title="Book")  # the same on both paths
    job = make_job("test_editions", delete_guard=1)
    started = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        runs = two_days(sync, job, write_csv, user)
    in_sql_records = records(Edition, runs)
    assert in_sql(queries, Edition)  # one statement per batch
    stored = list(Edition.history.order_by("isbn", "history_date"))
    assert all(uuid.UUID(str(h.history_id)).version == 4 for h in stored)
    assert len({h.history_id for h in stored}) == len(stored) == 7
    assert all(started <= h.history_date <= timezone.now() for h in stored)
    e1 = Edition.objects.get(isbn="E1")
    first = stored[0]
    assert (first.isbn, first.history_type, first.book_id) == ("E1", "+", e1.book_id)
    assert first.history_user_id == user.pk and first.history_relation_id == e1.pk
    assert not hasattr(first, "notes")
    assert [h.history_type for h in e1.snapshots.order_by("history_date")] == ["+", "~"]

    Edition.objects.all().delete()
    Edition.history.all().delete()
    without_sql(monkeypatch)
    with CaptureQueriesContext(connection) as queries:
        runs = two_days(sync, job, write_csv, user)
    assert not in_sql(queries, Edition)
    assert records(Edition, runs) == in_sql_records


def test_a_user_foreign_key_and_the_auto_history_id(
    sync: Any,  # noqa: F811
    make_job: Callable[..., SyncJob],
    write_csv: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """simple-history's defaults (``history_user`` a foreign key to the user model, an auto
    ``history_id``): the same records as ``bulk_history_create``'s."""
    user = get_user_model().objects.create(username="bob")
    job = make_job("test_books", delete_guard=1)
    day_1 = [{"code": f"B{i}", "title": "a", "copies": str(i)} for i in range(5)]
    day_2 = [
        {"code": f"B{i}", "title": "b" if i % 2 else "a", "copies": str(i)} for i in range(1, 7)
    ]

    def both_days() -> list[Any]:
        runs = [sync(job, file=write_csv(day_1)), sync(job, file=write_csv(day_2), user=user)]
        assert [run.status for run in runs] == ["succeeded"] * 2, [run.error for run in runs]
        return runs

    with CaptureQueriesContext(connection) as queries:
        in_sql_records = records(Book, both_days())
    assert in_sql(queries, Book)
    assert [r["history_user_id"] for r in in_sql_records if r["history_type"] == "~"] == [
        user.pk
    ] * 2
    assert len(in_sql_records) == 5 + 2 + 2 + 1  # created, created, updated, deleted

    Book.objects.all().delete()
    Book.history.all().delete()
    without_sql(monkeypatch)
    assert records(Book, both_days()) == in_sql_records


def test_a_history_model_sql_cannot_fill_is_written_by_bulk_history_create(
    sync: Any,  # noqa: F811
    make_job: Callable[..., SyncJob],
    write_csv: Callable[..., Any],
) -> None:
    """A history base class with a field of its own (a Python default): bulk_history_create."""
    assert "origin" in sql_history(Pamphlet, connection.vendor)
    rows = [{"code": "P1", "title": "One"}, {"code": "P2", "title": "Two"}]
    with CaptureQueriesContext(connection) as queries:
        run = sync(make_job("test_pamphlets"), file=write_csv(rows))
    assert run.status == "succeeded", run.error
    assert not in_sql(queries, Pamphlet)
    records = Pamphlet.history.order_by("code")
    assert [(h.code, h.history_type, h.origin) for h in records] == [
        ("P1", "+", "python"),
        ("P2", "+", "python"),
    ]
    assert {h.history_change_reason for h in records} == {change_reason(run)}


def test_sql_records_roll_back_with_a_failed_run(
    sync: Any,  # noqa: F811
    make_job: Callable[..., SyncJob],
    write_csv: Callable[..., Any],
) -> None:
    written: list[int] = []

    def refuse(sender: type, **kwargs: Any) -> None:
        written.append(Edition.history.count())
        raise ValueError("refused")

    Book.objects.create(pk=90_001, code="B1", title="Book")  # the same on both paths
    batch_applied.connect(refuse, sender=Edition, dispatch_uid="test-refuse-edition")
    try:
        with CaptureQueriesContext(connection) as queries:
            run = sync(make_job("test_editions"), file=write_csv(DAY_1))
    finally:
        batch_applied.disconnect(sender=Edition, dispatch_uid="test-refuse-edition")
    assert run.status == "failed" and "refused" in run.error
    assert in_sql(queries, Edition) and written == [3]  # written, then undone
    assert not Edition.objects.exists() and not Edition.history.exists()


@pytest.mark.parametrize("writer", ["sql", "bulk"])
def test_without_a_run_user_the_request_user_signs(
    sync: Any,  # noqa: F811
    make_job: Callable[..., SyncJob],
    write_csv: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    rf: Any,
    writer: str,
) -> None:
    """A run without a user, inside a request (simple-history's middleware): its user, as
    simple-history's ``get_user`` says, whichever writes the records."""
    from simple_history.models import HistoricalRecords

    if writer == "bulk":
        without_sql(monkeypatch)
    request = rf.get("/")
    request.user = get_user_model().objects.create(username="cy")
    HistoricalRecords.context.request = request
    try:
        run = sync(
            make_job("test_books"), file=write_csv([{"code": "B1", "title": "t", "copies": "1"}])
        )
    finally:
        del HistoricalRecords.context.request
    assert run.status == "succeeded" and run.user is None, run.error
    assert [h.history_user for h in Book.history.all()] == [request.user]

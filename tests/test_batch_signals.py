"""batch_applied / batch_deleting on the generic and staged paths, and the django-simple-history
records an importer with ``Meta.history`` writes (djsync.targets.notify, djsync.history).

Every test runs on both paths through the differential harness's ``sync`` fixture
(tests/test_differential.py): the same run must end the same way on each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from djsync.models import SyncJob
from djsync.signals import batch_applied, batch_deleting
from tests.test_differential import member, product, sync, sync_path  # noqa: F401 - the harness
from tests.testapp.models import Book, Member, Product

pytestmark = pytest.mark.django_db(transaction=False)


@pytest.fixture
def heard() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """What receivers of both signals for Product heard, in order, with what the database
    held when they heard it."""
    events: list[tuple[str, dict[str, Any]]] = []

    def on_applied(sender: type, **kwargs: Any) -> None:
        kwargs["atomic"] = connection.in_atomic_block
        kwargs["skus"] = sorted(
            Product.objects.filter(pk__in=kwargs["created"] + kwargs["updated"]).values_list(
                "sku", flat=True
            )
        )
        events.append(("applied", kwargs))

    def on_deleting(sender: type, **kwargs: Any) -> None:
        kwargs["skus"] = sorted(
            Product.objects.filter(pk__in=kwargs["pks"]).values_list("sku", flat=True)
        )
        events.append(("deleting", kwargs))

    batch_applied.connect(on_applied, sender=Product, dispatch_uid="test-heard")
    batch_deleting.connect(on_deleting, sender=Product, dispatch_uid="test-heard")
    yield events
    batch_applied.disconnect(sender=Product, dispatch_uid="test-heard")
    batch_deleting.disconnect(sender=Product, dispatch_uid="test-heard")


def products_csv(write_csv: Callable[..., Any], *rows: tuple[str, str, str]) -> Any:
    return write_csv([product(s, n, p) for s, n, p in rows])


def test_batch_applied_names_every_written_row(
    sync: Any,  # noqa: F811
    make_job: Callable[..., SyncJob],
    write_csv: Callable[..., Any],
    heard: list,
) -> None:
    Product.objects.bulk_create(
        [
            Product(sku="KEEP", name="Kept", price="1.00", qty=1),
            Product(sku="MOVE", name="Old", price="1.00", qty=1),
            Product(sku="GONE", name="Gone", price="1.00", qty=1),
        ]
    )
    gone = Product.objects.get(sku="GONE").pk
    moved = Product.objects.get(sku="MOVE").pk
    job = make_job("test_products")
    path = products_csv(
        write_csv,
        ("KEEP", "Kept", "1.00"),
        ("MOVE", "New", "1.00"),
        ("NEW1", "A", "2.00"),
        ("NEW2", "B", "3.00"),
    )
    run = sync(job, file=path)
    assert run.status == "succeeded", run.error
    created = set(Product.objects.filter(sku__in=["NEW1", "NEW2"]).values_list("pk", flat=True))
    kinds = [kind for kind, _ in heard]
    assert kinds == ["applied", "applied", "deleting", "applied"]
    creates, updates, deleting, deletes = (kwargs for _, kwargs in heard)
    assert set(creates["created"]) == created and not creates["updated"]
    assert creates["skus"] == ["NEW1", "NEW2"]  # written when told
    assert updates["updated"] == [moved] and updates["skus"] == ["MOVE"]
    assert deleting["pks"] == [gone] and deleting["skus"] == ["GONE"]  # still there
    assert deletes["deleted"] == [gone] and not Product.objects.filter(pk=gone).exists()
    for kwargs in (creates, updates, deletes):
        assert kwargs["run"].pk == run.pk and kwargs["using"] == "default"
        assert kwargs["importer"].name == "test_products"
        assert kwargs["atomic"]  # inside the run's transaction


def test_batches_hold_at_most_batch_size_keys(
    sync: Any,  # noqa: F811
    settings: Any,
    make_job: Callable[..., SyncJob],
    write_csv: Callable[..., Any],
    heard: list,
) -> None:
    settings.DJSYNC = {**settings.DJSYNC, "BATCH_SIZE": 3}
    Product.objects.bulk_create(
        [Product(sku=f"OLD{i}", name="x", price="1.00", qty=1) for i in range(7)]
    )
    job = make_job("test_products", delete_guard=1)
    rows = [(f"OLD{i}", "y", "1.00") for i in range(5)] + [
        (f"NEW{i}", "z", "1.00") for i in range(8)
    ]
    run = sync(job, file=products_csv(write_csv, *rows))
    assert run.counts["created"] == 8 and run.counts["updated"] == 5, run.error
    sizes = {
        key: [len(kw[key]) for kind, kw in heard if kind == "applied" and kw[key]]
        for key in ("created", "updated", "deleted")
    }
    assert sorted(sizes["created"], reverse=True) == [3, 3, 2]
    assert sorted(sizes["updated"], reverse=True) == [3, 2]
    assert sizes["deleted"] == [2]


def test_created_rows_found_by_a_composite_key(
    sync: Any,  # noqa: F811
    make_job: Callable[..., SyncJob],
    write_csv: Callable[..., Any],
) -> None:
    """The staged path finds the rows it inserted by their key, every column of it."""
    created: list[Any] = []

    def on_applied(sender: type, **kwargs: Any) -> None:
        created.extend(kwargs["created"])

    Member.objects.create(team="red", number=2, name="Old")
    batch_applied.connect(on_applied, sender=Member, dispatch_uid="test-members")
    try:
        rows = [member("red", "1"), member("red", "2", "Old"), member("blue", "2")]
        run = sync(make_job("test_members"), file=write_csv(rows))
    finally:
        batch_applied.disconnect(sender=Member, dispatch_uid="test-members")
    assert run.status == "succeeded", run.error
    new = Member.objects.exclude(team="red", number=2)
    assert sorted(created) == sorted(new.values_list("pk", flat=True)) and len(created) == 2


def test_a_receiver_error_rolls_the_run_back(
    sync: Any,  # noqa: F811
    make_job: Callable[..., SyncJob],
    write_csv: Callable[..., Any],
) -> None:
    def refuse(sender: type, **kwargs: Any) -> None:
        raise ValueError("the warehouse refused")

    batch_applied.connect(refuse, sender=Product, dispatch_uid="test-refuse")
    try:
        run = sync(make_job("test_products"), file=products_csv(write_csv, ("A", "a", "1")))
    finally:
        batch_applied.disconnect(sender=Product, dispatch_uid="test-refuse")
    assert run.status == "failed" and "the warehouse refused" in run.error
    assert not Product.objects.exists()


def test_nobody_listening_reads_no_primary_key(
    settings: Any, make_job: Callable[..., SyncJob], write_csv: Callable[..., Any], db: None
) -> None:
    """The staged path pays nothing for the signal when no receiver listens for the model."""
    import djsync

    Product.objects.create(sku="A", name="a", price="1.00", qty=1)
    Product.objects.create(sku="B", name="b", price="1.00", qty=1)
    assert not batch_applied.has_listeners(Product)
    job = make_job("test_products", delete_guard=1)
    with CaptureQueriesContext(connection) as queries:
        run = djsync.run(job, file=products_csv(write_csv, ("A", "x", "1"), ("C", "c", "1")))
    assert run.counts == {"created": 1, "updated": 1, "deleted": 1, "unchanged": 0, "errors": 0}
    assert run.stats["testapp.Product"]["path"].startswith("staged"), run.stats
    sql = [q["sql"] for q in queries.captured_queries]
    assert not [q for q in sql if q.startswith("SELECT _pk") or "_new AS SELECT" in q]


# -- django-simple-history ----------------------------------------------------------------
def books_csv(write_csv: Callable[..., Any], *rows: tuple[str, str]) -> Any:
    return write_csv([{"code": c, "title": t, "copies": "1"} for c, t in rows])


def history(code: str) -> list[tuple[str, str, Any, str]]:
    """(type, title, user, reason) of a book's records, oldest first."""
    return [
        (h.history_type, h.title, h.history_user, h.history_change_reason)
        for h in Book.history.filter(code=code).order_by("history_date", "history_id")
    ]


def test_history_records_every_synced_row(
    sync: Any,  # noqa: F811
    make_job: Callable[..., SyncJob],
    write_csv: Callable[..., Any],
) -> None:
    user = get_user_model().objects.create(username="ann")
    job = make_job("test_books", delete_guard=1)
    first = sync(job, file=books_csv(write_csv, ("B1", "One"), ("B2", "Two")), user=user)
    assert first.status == "succeeded", first.error
    reason = f"djsync run #{first.pk} (job {job.name!r})"
    assert history("B1") == [("+", "One", user, reason)]
    second = sync(job, file=books_csv(write_csv, ("B1", "Uno"), ("B3", "Three")))
    assert second.status == "succeeded", second.error
    again = f"djsync run #{second.pk} (job {job.name!r})"
    assert history("B1") == [("+", "One", user, reason), ("~", "Uno", None, again)]
    assert history("B2") == [("+", "Two", user, reason), ("-", "Two", None, again)]
    assert history("B3") == [("+", "Three", None, again)]
    assert Book.history.count() == 5  # no record twice (simple-history's own receivers)


def test_history_rolls_back_with_a_failed_run(
    sync: Any,  # noqa: F811
    make_job: Callable[..., SyncJob],
    write_csv: Callable[..., Any],
) -> None:
    """Records are written in the run's transaction: a later receiver's error undoes them."""

    def refuse(sender: type, **kwargs: Any) -> None:
        assert Book.history.filter(history_type="+").exists()  # written just before
        raise ValueError("refused")

    batch_applied.connect(refuse, sender=Book, dispatch_uid="test-refuse-book")
    try:
        run = sync(make_job("test_books"), file=books_csv(write_csv, ("B1", "One")))
    finally:
        batch_applied.disconnect(sender=Book, dispatch_uid="test-refuse-book")
    assert run.status == "failed" and "refused" in run.error
    assert not Book.objects.exists() and not Book.history.exists()

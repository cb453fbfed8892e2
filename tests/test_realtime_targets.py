"""Real-time sync into targets that are not a model on djsync's database: a model on another
database alias, and a JSON API (the demo's directory on the test server). The changes are
captured as always (a trigger, or signals on SQLite) and deleted only once the target took
them: a target that refuses keeps them, retried, and a re-apply changes nothing.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.core import mail

import djsync
from demo_project.demo.targets import DirectoryAccounts
from demo_project.directory.models import Account
from djsync.mapping.registry import register, unregister
from djsync.models import PendingChange, SyncJob, SyncRun
from djsync.realtime import consumer, outage, receivers
from tests.testapp.models import Listing, Product
from tests.testapp.sync import RealtimeProductImporter

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

TOKEN = "tests-directory-token"


class MirroredListings(RealtimeProductImporter):
    """Listings into products on the "other" database, as they change."""

    class Meta(RealtimeProductImporter.Meta):
        name = "test_realtime_mirror"
        databases = ["other"]


class ListingAccounts(djsync.Importer):
    """Listings as the directory's accounts (a JSON API), as they change."""

    class Meta:
        name = "test_realtime_accounts"
        target = DirectoryAccounts
        keys = ["username"]
        fields = ["username", "full_name", "active"]
        delete = True
        source = {
            "kind": "queryset",
            "model": "testapp.Listing",
            "fields": {"username": "sku", "full_name": "name", "active": "active"},
        }


@pytest.fixture(autouse=True)
def importers(settings: Any) -> Iterator[None]:
    settings.DJSYNC = {**settings.DJSYNC, "REALTIME_BACKOFF": 0, "HTTP_BACKOFF": 0.01}
    for cls in (MirroredListings, ListingAccounts):
        register(cls)
    receivers.forget_routes()
    yield
    for cls in (MirroredListings, ListingAccounts):
        unregister(cls.name)
    receivers.forget_routes()


@pytest.fixture
def directory(live_server: Any, settings: Any) -> str:
    url = f"{live_server.url}/directory/api/"
    settings.DIRECTORY_API_URL = url
    settings.DJSYNC = {
        **settings.DJSYNC,
        "HTTP_BASE_URLS": [url],
        "CREDENTIALS": {"directory": TOKEN},
    }
    return url


def listing(sku: str, **values: Any) -> Listing:
    values = {"name": f"Listing {sku}", "price": Decimal("1.00"), "qty": 1, **values}
    return Listing.objects.create(sku=sku, **values)


def drained(job: SyncJob) -> list[consumer.Outcome]:
    return consumer.drain(job.pk, seconds=30)


def test_changes_reach_a_model_on_another_database(make_job: Any) -> None:
    job = make_job(
        "test_realtime_mirror", name="mirror", realtime=True, target={"database": "other"}
    )
    listing("A1", qty=3)
    listing("B2")
    drained(job)
    other = Product.objects.using("other")
    assert sorted(other.values_list("sku", "qty")) == [("A1", 3), ("B2", 1)]
    assert not Product.objects.using("default").exists()
    Listing.objects.get(sku="A1").delete()
    changed = Listing.objects.get(sku="B2")
    changed.qty = 9
    changed.save()
    drained(job)
    assert list(other.values_list("sku", "qty")) == [("B2", 9)]
    assert not PendingChange.objects.filter(job=job).exists()
    runs = SyncRun.objects.filter(job=job, trigger=SyncRun.Trigger.REALTIME)
    assert runs.exists() and all(r.status == SyncRun.Status.SUCCEEDED for r in runs)


def test_changes_reach_a_json_api_and_wait_while_it_refuses(
    make_job: Any, directory: str, settings: Any
) -> None:
    job = make_job("test_realtime_accounts", name="accounts", realtime=True)
    listing("ann", name="Ann Lee")
    listing("bob", name="Bob Ray")
    drained(job)
    accounts = Account.objects.using("other")
    assert sorted(accounts.values_list("username", "full_name")) == [
        ("ann", "Ann Lee"),
        ("bob", "Bob Ray"),
    ]
    assert not PendingChange.objects.filter(job=job).exists()

    # The API refuses djsync's token: the target is unavailable, whatever the rows. The
    # changes wait, none is counted as an attempt nor parked however often it is tried,
    # and the job's recipients hear once. (Each commit wakes the consumer: eager Celery.)
    job.notify_on_failure = ["ops@example.com"]
    job.save(update_fields=["notify_on_failure"])
    settings.DJSYNC = {
        **settings.DJSYNC,
        "CREDENTIALS": {"directory": "a revoked token"},
        "REALTIME_BACKOFF": 0.5,
        "REALTIME_MAX_ATTEMPTS": 2,
    }
    ann = Listing.objects.get(sku="ann")
    ann.name = "Ann Lee-Smith"
    ann.save()
    job.refresh_from_db()
    waiting = outage.state(job)
    assert waiting is not None and waiting["failures"] == 1 and "401" in waiting["error"]
    Listing.objects.get(sku="bob").delete()  # while it waits: claimed by no one
    assert drained(job)[-1].state == "waiting"
    failed_runs = SyncRun.objects.filter(job=job, status=SyncRun.Status.FAILED)
    assert failed_runs.count() == 1
    for _try in range(3):  # tries after each backoff: still down
        time.sleep(0.6 * 2**_try)
        drained(job)
    job.refresh_from_db()
    assert outage.state(job)["failures"] == 4
    pending = PendingChange.objects.filter(job=job)
    assert pending.count() == 2
    assert all(p.attempts == 0 and p.parked_at is None for p in pending)
    assert [m.subject for m in mail.outbox] == [
        "[djsync] accounts: the target is unavailable; changes wait"
    ]
    assert "401" in mail.outbox[0].body
    assert sorted(accounts.values_list("username", "full_name")) == [
        ("ann", "Ann Lee"),
        ("bob", "Bob Ray"),
    ]
    page = admin_page(job)
    assert "the target is unavailable since" in page and "4 failed tries" in page

    # The token is put right: the waiting changes reach the API, once; the outage ends.
    settings.DJSYNC = {**settings.DJSYNC, "CREDENTIALS": {"directory": TOKEN}}
    time.sleep(4.1)  # the backoff after the fourth failure
    drained(job)
    assert list(accounts.values_list("username", "full_name")) == [("ann", "Ann Lee-Smith")]
    assert not PendingChange.objects.filter(job=job).exists()
    job.refresh_from_db()
    assert outage.state(job) is None
    drained(job)  # nothing left: nothing sent again
    assert accounts.count() == 1
    assert len(mail.outbox) == 1


def test_a_bad_row_still_parks_its_key(make_job: Any, directory: str, settings: Any) -> None:
    """A row the target cannot take (an account needs a full name) is the row's problem,
    not an outage: with ``on_row_error = "fail"`` its key is parked after
    REALTIME_MAX_ATTEMPTS, and the others go through."""
    settings.DJSYNC = {**settings.DJSYNC, "REALTIME_BACKOFF": 0, "REALTIME_MAX_ATTEMPTS": 2}
    job = make_job("test_realtime_accounts", name="accounts", realtime=True, on_row_error="fail")
    listing("nameless", name="")
    listing("named", name="Ann Lee")
    drained(job)
    job.refresh_from_db()
    assert outage.state(job) is None
    parked = PendingChange.objects.filter(job=job, parked_at__isnull=False)
    assert list(parked.values_list("key", flat=True)) == [
        str(Listing.objects.get(sku="nameless").pk)
    ]
    assert list(Account.objects.using("other").values_list("username", flat=True)) == ["named"]


def admin_page(job: SyncJob) -> str:
    from django.contrib.auth.models import User
    from django.test import Client

    user = User.objects.create_superuser("admin-rt", "admin@example.com", "pw")
    client = Client()
    client.force_login(user)
    response = client.get(f"/admin/djsync/syncjob/{job.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def test_an_export_file_is_rewritten_as_its_model_changes(
    make_job: Any, tmp_path: Any, file_root: Any
) -> None:
    """A real-time export: each batch of changes to the exported model is one export run,
    which rewrites the file whole (or leaves it, when nothing it holds changed)."""
    Product.objects.create(sku="A1", name="Saw", price=Decimal("5.50"), qty=2)
    job = make_job(
        "test_products",
        name="products-live",
        realtime=True,
        target={"kind": "file", "path": "live/products.csv"},
    )
    path = tmp_path / "live" / "products.csv"
    drained(job)
    assert not path.exists()  # nothing changed yet: no run, no file
    djsync.run(job)  # the first export
    assert rows(path) == [("A1", "Saw", "2")]

    Product.objects.create(sku="B2", name="Hammer", price=Decimal("3.00"), qty=5)
    saw = Product.objects.get(sku="A1")
    saw.qty = 7
    saw.save()
    drained(job)
    assert rows(path) == [("A1", "Saw", "7"), ("B2", "Hammer", "5")]
    Product.objects.filter(sku="A1").delete()
    drained(job)
    assert rows(path) == [("B2", "Hammer", "5")]
    assert not PendingChange.objects.filter(job=job).exists()
    live = SyncRun.objects.filter(job=job, trigger=SyncRun.Trigger.REALTIME)
    # The batches joined one run (djsync.realtime.history): after the API's run, in a minute.
    assert [(r.created, r.updated, r.deleted) for r in live] == [(1, 1, 1)]


def rows(path: Any) -> list[tuple[str, str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [(r["sku"], r["name"], r["qty"]) for r in csv.DictReader(handle)]

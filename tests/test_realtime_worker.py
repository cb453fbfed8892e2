"""Real-time sync on a real Celery worker (with its embedded beat polling for changes) on
the machine's Redis and the test run's PostgreSQL database.

Changes made by the test process — ``save()``, ``bulk_update``, raw SQL — are captured by
the trigger in their own transaction; the worker consumes them. A worker process killed
in the middle of a batch loses nothing and applies nothing twice.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction

from djsync.models import PendingChange, SyncChange, SyncJob, SyncRun
from tests import celery_helpers  # noqa: F401 - the gated importer, as the worker has it
from tests.test_celery import REDIS_URL, ROOT, Process, _reconnect, wait_for
from tests.testapp.models import Listing, Product

pytestmark = [
    pytest.mark.celery,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        os.environ.get("DJSYNC_TEST_DB") == "sqlite",
        reason="a worker process cannot share the in-memory SQLite test database; "
        "the real-worker tests run on PostgreSQL (DJSYNC_TEST_DB=postgres)",
    ),
]

SETTINGS = {
    "LOCK_TTL": 2,
    "HEARTBEAT_INTERVAL": 0.4,
    "STALE_AFTER": 2,
    "REALTIME_CLAIM_TTL": 3,
    "REALTIME_POLL": 0.5,
    "REALTIME_MAX_ATTEMPTS": 2,
    "REALTIME_BACKOFF": 0.2,
    "REALTIME_BACKOFF_MAX": 1,
}


@pytest.fixture(scope="module")
def worker(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Redis checked, the test process's Celery app pointed at it, a worker with its beat."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=5).ping()
    except redis.RedisError as exc:  # never a skip: these tests need Redis
        pytest.fail(f"Redis at {REDIS_URL} does not answer: {exc}")
    from tests.celery_app import app

    base = tmp_path_factory.mktemp("realtime")
    (base / "gates").mkdir()
    queue = f"djsync-rt-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.celery_worker_settings",
        "DJSYNC_WORKER_DB": connection.settings_dict["NAME"],
        "DJSYNC_WORKER_BROKER": REDIS_URL,
        "DJSYNC_WORKER_QUEUE": queue,
        "DJSYNC_WORKER_DJSYNC": json.dumps(SETTINGS),
        "DJSYNC_WORKER_POLL": "0.5",
        "DJSYNC_TEST_GATE_DIR": str(base / "gates"),
    }
    saved = {
        key: app.conf[key]
        for key in ("broker_url", "result_backend", "task_always_eager", "task_default_queue")
    }
    _reconnect(
        app,
        broker_url=REDIS_URL,
        result_backend=REDIS_URL,
        task_always_eager=False,
        task_default_queue=queue,
    )
    args = ["worker", "-B", "-s", str(base / "beat-schedule"), "-l", "info", "-P", "prefork"]
    args += ["-c", "2", "-Q", queue, "-n", f"{queue}@%h", "--without-gossip"]
    args += ["--without-mingle", "--without-heartbeat", "--prefetch-multiplier", "1"]
    process = Process(args, env, base / "worker.log")
    try:
        process.wait_for_log(" ready.")
        yield {"process": process, "gates": base / "gates", "env": env}
    finally:
        for hold in (base / "gates").glob("*.hold"):
            hold.unlink()
        process.stop()
        _reconnect(app, **saved)
        redis.Redis.from_url(REDIS_URL).delete(queue)


@pytest.fixture(autouse=True)
def same_settings(worker: dict, settings: Any) -> None:
    settings.DJSYNC = SETTINGS


def realtime_job(importer: str = "test_realtime_products") -> SyncJob:
    return SyncJob.objects.create(name=importer.replace("_", "-"), importer=importer, realtime=True)


def table(model: Any) -> dict[str, tuple[str, Decimal, int, bool]]:
    return {r.sku: (r.name, r.price, r.qty, r.active) for r in model.objects.all()}


def in_step(what: str, timeout: float = 60) -> None:
    """Wait until the target equals the source and no change is pending."""
    wait_for(
        lambda: table(Product) == table(Listing) and not PendingChange.objects.exists(),
        what,
        timeout=timeout,
    )


def listings(*skus: str) -> list[Listing]:
    with transaction.atomic():
        return [
            Listing.objects.create(sku=s, name=f"Listing {s}", price=Decimal("1.00"), qty=1)
            for s in skus
        ]


def test_bulk_updates_and_raw_sql_reach_the_target_through_the_worker(worker):
    realtime_job()
    rows = listings(*(f"W{i}" for i in range(20)))
    in_step("the creates on the target")
    for row in rows:
        row.qty = 5
    Listing.objects.bulk_update(rows, ["qty"])  # no signal, no wake-up: the beat's poll
    with connection.cursor() as cursor:
        cursor.execute("UPDATE testapp_listing SET price = 7.25 WHERE sku IN ('W1', 'W2')")
        cursor.execute("DELETE FROM testapp_listing WHERE sku = 'W3'")
    in_step("the bulk update, the raw UPDATE and DELETE on the target")
    assert table(Product)["W1"] == ("Listing W1", Decimal("7.25"), 5, True)
    assert "W3" not in table(Product)
    runs = SyncRun.objects.filter(trigger="realtime")
    assert runs.exists() and set(runs.values_list("status", flat=True)) == {"succeeded"}


def test_a_change_that_keeps_failing_is_parked_on_the_worker(worker):
    job = realtime_job()
    listings("OK1", "")  # an empty sku: a row error, every attempt
    wait_for(
        lambda: PendingChange.objects.filter(parked_at__isnull=False).exists(),
        "the bad change parked",
    )
    wait_for(lambda: Product.objects.filter(sku="OK1").exists(), "the good change applied")
    parked = PendingChange.objects.get()
    assert parked.attempts == 2 and "a value is required" in parked.error
    assert SyncRun.objects.filter(job=job, status="failed").count() >= 2


def test_a_worker_killed_mid_batch_loses_nothing_and_applies_nothing_twice(worker):
    job = realtime_job("test_realtime_gated")
    hold = worker["gates"] / "K5.hold"
    hold.touch()
    listings(*(f"K{i}" for i in range(10)))
    reached = worker["gates"] / "K5.reached"
    pid = int(wait_for(lambda: reached.exists() and reached.read_text().strip(), "the gate"))
    os.kill(pid, signal.SIGKILL)  # in the middle of the batch's apply
    hold.unlink()
    # While the batch waits for its lease to end, the source goes on changing.
    Listing.objects.filter(sku="K1").update(name="renamed")
    Listing.objects.filter(sku="K9").delete()
    listings("K10")
    in_step("the target in step after the kill", timeout=90)
    assert len(table(Product)) == 10 and table(Product)["K1"][0] == "renamed"
    creates = SyncChange.objects.filter(
        run__job=job, run__status="succeeded", action="create"
    ).values_list("key", flat=True)
    keys = sorted(k[0] for k in creates)
    assert len(keys) == len(set(keys)), "a row was created twice"
    assert set(keys) >= {f"K{i}" for i in range(9)} | {"K10"}
    dead = SyncRun.objects.filter(job=job, status="failed")
    assert dead.exists() and "stopped" in dead.first().error

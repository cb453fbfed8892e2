"""One run per job, cancel and dead-run detection, in process (both databases) and on Redis."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone

import djsync
from djsync import locks
from djsync.exceptions import ConfigurationError, RunLocked
from djsync.models import SyncLock, SyncRun
from djsync.monitor import cancel, reap_stale_runs
from tests.testapp.models import Product

pytestmark = pytest.mark.django_db


def product_rows(*skus: str) -> list[dict[str, str]]:
    return [
        {"sku": s, "name": f"Product {s}", "price": "1", "qty": "1", "updated": "", "active": "1"}
        for s in skus
    ]


def test_the_database_lock_is_held_by_one_owner_until_released_or_expired():
    first = locks.DatabaseLock("djsync:job:1", ttl=60, owner="run:1:a")
    second = locks.DatabaseLock("djsync:job:1", ttl=60, owner="run:2:b")
    assert first.acquire() and not second.acquire()
    assert second.holder() == "run:1:a" and locks.run_of(second.holder()) == 1
    assert first.renew() and not second.renew()
    first.release()
    assert first.holder() is None and second.acquire()
    SyncLock.objects.update(expires_at=timezone.now() - timedelta(seconds=1))  # holder died
    assert first.acquire() and not second.renew()


@pytest.mark.celery
def test_the_redis_lock_is_held_by_one_owner_until_released_or_expired():
    url = os.environ.get("DJSYNC_TEST_REDIS", "redis://127.0.0.1:6379/5")
    name = f"djsync:test-lock:{os.getpid()}"
    first = locks.RedisLock(name, ttl=60, owner="run:1:a", url=url)
    second = locks.RedisLock(name, ttl=60, owner="run:2:b", url=url)
    try:
        assert first.acquire() and not second.acquire()
        assert second.holder() == "run:1:a"
        assert first.renew() and not second.renew()
        second.release()  # not its lock: nothing happens
        assert first.holder() == "run:1:a"
        first.release()
        assert second.acquire() and second.holder() == "run:2:b"
        first.client.pexpire(name, 1)  # the holder died and its lock runs out
        first.client.delete(name)
        assert first.acquire()
    finally:
        first.client.delete(name)


def test_a_run_is_refused_while_another_run_of_the_job_holds_the_lock(make_job, write_csv):
    job = make_job("test_products")
    other = locks.acquire(job.pk, 999)
    with pytest.raises(RunLocked, match=r"run #999 of this job is active") as info:
        djsync.run(job, file=write_csv(product_rows("A1")))
    assert info.value.run.status == "failed" and "one run per job" in info.value.run.error
    assert not Product.objects.exists()
    other.release()
    assert djsync.run(job, file=write_csv(product_rows("A1"))).status == "succeeded"


def test_a_previewed_run_stays_previewed_when_its_apply_is_refused(make_job, write_csv):
    from djsync.services import apply_previewed

    job = make_job("test_products")
    preview = djsync.run(job, file=write_csv(product_rows("A1")), dry_run=True)
    other = locks.acquire(job.pk, 999)
    with pytest.raises(RunLocked):
        apply_previewed(preview)
    preview.refresh_from_db()
    assert preview.status == "previewed" and preview.error.startswith("not applied: run #999")
    other.release()
    assert apply_previewed(preview).status == "succeeded"


def test_cancel_a_queued_run_and_not_a_finished_one(make_job, write_csv):
    job = make_job("test_products")
    queued = SyncRun.objects.create(job=job, trigger="api", status="queued")
    assert cancel(queued).status == "cancelled"
    done = djsync.run(job, file=write_csv(product_rows("A1")))
    with pytest.raises(ConfigurationError, match="is succeeded; only a queued or running run"):
        cancel(done)


def test_a_run_whose_worker_died_is_marked_failed(make_job, settings):
    settings.DJSYNC = {**settings.DJSYNC, "STALE_AFTER": 60}
    job = make_job("test_products", notify_on_failure=["ops@example.com"])
    long_ago = timezone.now() - timedelta(minutes=5)
    dead = SyncRun.objects.create(job=job, trigger="api", status="applying", heartbeat_at=long_ago)
    alive = SyncRun.objects.create(
        job=make_job("test_categories"), trigger="api", status="reading", heartbeat_at=long_ago
    )
    lock = locks.acquire(alive.job_id, alive.pk)  # its worker still renews the lock
    fresh = SyncRun.objects.create(
        job=job, trigger="api", status="reading", heartbeat_at=timezone.now()
    )
    assert [run.pk for run in reap_stale_runs()] == [dead.pk]
    lock.release()
    dead.refresh_from_db()
    assert dead.status == "failed" and "the worker running it stopped during applying" in (
        dead.error
    )
    assert SyncRun.objects.get(pk=fresh.pk).status == "reading"
    assert mail.outbox[0].subject.endswith("failed")


def test_a_new_run_marks_the_dead_runs_of_its_job_failed(make_job, write_csv):
    job = make_job("test_products")
    dead = SyncRun.objects.create(
        job=job,
        trigger="schedule",
        status="diffing",
        heartbeat_at=timezone.now() - timedelta(minutes=5),
    )
    assert djsync.run(job, file=write_csv(product_rows("A1"))).status == "succeeded"
    dead.refresh_from_db()
    assert dead.status == "failed" and "stopped during diffing" in dead.error


@pytest.mark.django_db(transaction=True)  # the task is sent when the run's row commits
def test_runsync_async_wait_and_cancel_in_eager_mode(make_job, write_csv):
    """Without a broker (the embedded default) --async runs the task in process."""
    job = make_job("test_products", source={"path": write_csv(product_rows("E1")).name})
    out = StringIO()
    call_command("runsync", job.name, "--async", stdout=out)
    run = SyncRun.objects.get(
        pk=int(re.fullmatch(r"test-products: queued run (\d+)\n", out.getvalue())[1])
    )
    assert run.status == "succeeded" and run.trigger == "command"

    out = StringIO()
    call_command("runsync", job.name, "--wait", "--dry-run", stdout=out)
    assert "test-products: previewed (dry run)" in out.getvalue()

    queued = SyncRun.objects.create(job=job, trigger="api", status="queued")
    out = StringIO()
    call_command("runsync", "--cancel", str(queued.pk), stdout=out)
    assert out.getvalue() == f"test-products: run {queued.pk} cancelled\n"
    with pytest.raises(CommandError, match="only a queued or running run"):
        call_command("runsync", "--cancel", str(queued.pk), stdout=StringIO())


@pytest.mark.celery
def test_lock_wait_waits_for_the_holder_then_takes_the_lock(settings):
    """With LOCK_WAIT a second run waits for the first to finish instead of being refused."""
    import threading

    url = os.environ.get("DJSYNC_TEST_REDIS", "redis://127.0.0.1:6379/5")
    settings.DJSYNC = {**settings.DJSYNC, "LOCK_BACKEND": "redis", "LOCK_REDIS_URL": url, "LOCK_WAIT": 10}
    job_id = 900_000 + os.getpid()
    holder = locks.acquire(job_id, run_id=1)
    try:
        with pytest.raises(RunLocked, match=r"run #1 .*run #2 was refused after waiting 0\.2 s"):
            locks.acquire(job_id, run_id=2, wait=0.2)
        releaser = threading.Timer(0.3, holder.release)
        releaser.start()
        second = locks.acquire(job_id, run_id=2)  # waits (LOCK_WAIT) until the release
        releaser.join()
        assert locks.run_of(second.holder()) == 2
        second.release()
    finally:
        holder.release()

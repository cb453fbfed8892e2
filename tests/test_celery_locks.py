"""One run per job, cancel, dead-run detection and retries, in process (both databases) and
on Redis."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone

import djsync
from djsync.exceptions import ConfigurationError, RunLocked
from djsync.models import SyncLock, SyncRun
from djsync.runs import locks
from djsync.runs.monitor import cancel, reap_stale_runs
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


def redis_url() -> str:
    return os.environ.get("DJSYNC_TEST_REDIS", "redis://127.0.0.1:6379/5")


@pytest.fixture
def redis_name() -> Iterator[str]:
    """A lock name of this test process, deleted afterwards."""
    import redis

    name = f"djsync:test-lock:{os.getpid()}:{time.monotonic_ns()}"
    yield name
    redis.Redis.from_url(redis_url()).delete(name)


def two_clients() -> tuple[Any, Any]:
    """Two redis-py clients with connections of their own: two workers, as Redis sees them."""
    import redis

    return redis.Redis.from_url(redis_url()), redis.Redis.from_url(redis_url())


@pytest.mark.celery
def test_the_redis_lock_is_held_by_one_owner_until_released(redis_name):
    first = locks.RedisLock(redis_name, ttl=60, owner="run:1:a", url=redis_url())
    second = locks.RedisLock(redis_name, ttl=60, owner="run:2:b", url=redis_url())
    assert first.acquire() and not second.acquire()
    assert second.holder() == "run:1:a" and locks.run_of(second.holder()) == 1
    assert first.owned() and not second.owned()
    assert first.renew() and not second.renew()
    second.release()  # not its lock: nothing happens
    assert first.holder() == "run:1:a"
    first.release()
    assert first.holder() is None and not first.renew()
    first.release()  # released twice: nothing happens
    assert second.acquire() and second.holder() == "run:2:b"


@pytest.mark.celery
def test_an_expired_redis_lock_is_taken_over_and_its_old_holder_cannot_touch_it(redis_name):
    """Two clients (two workers): the first stops renewing, its lock expires, the second
    takes it; the first can then neither renew nor release the second's lock."""
    one, two = two_clients()
    first = locks.RedisLock(redis_name, ttl=0.3, owner="run:1:a", client=one)
    second = locks.RedisLock(redis_name, ttl=60, owner="run:2:b", client=two)
    assert first.acquire() and not second.acquire()
    time.sleep(0.4)  # the first holder's worker died: nothing renews its lock
    assert first.holder() is None
    assert second.acquire() and second.holder() == "run:2:b"
    assert not first.renew() and not first.owned()
    first.release()
    assert second.holder() == "run:2:b" and second.owned() and second.renew()
    assert 59_000 < two.pttl(redis_name) <= 60_000


@pytest.mark.celery
def test_the_redis_lock_is_renewed_and_released_from_other_threads(redis_name):
    """The heartbeat thread renews the lock the run's thread took (a token that is not
    thread-local); a renew pushes the expiry a whole ttl ahead."""
    one, two = two_clients()
    lock = locks.RedisLock(redis_name, ttl=1, owner="run:1:a", client=one)
    assert lock.acquire()
    renewed: list[bool] = []
    for _ in range(4):  # 1.2 s in all, longer than the ttl
        time.sleep(0.3)
        beat = threading.Thread(target=lambda: renewed.append(lock.renew()))
        beat.start()
        beat.join()
    assert renewed == [True] * 4 and lock.holder() == "run:1:a"
    assert 500 < one.pttl(redis_name) <= 1000
    other = locks.RedisLock(redis_name, ttl=60, owner="run:2:b", client=two)
    assert not other.acquire()
    threading.Thread(target=lock.release).start()
    assert other.acquire(wait=2)  # redis-py waits (blocking_timeout) for the release
    assert other.holder() == "run:2:b"


@pytest.mark.celery
def test_a_runs_heartbeat_keeps_its_redis_locks_past_their_ttl(make_job, settings):
    """The monitor's heartbeat thread renews the job's and the model's Redis locks that the
    run's thread took; they outlive LOCK_TTL and go with the release."""
    from djsync.runs.monitor import RunMonitor

    settings.DJSYNC = {
        **settings.DJSYNC,
        "LOCK_BACKEND": "redis",
        "LOCK_REDIS_URL": redis_url(),
        "LOCK_TTL": 0.6,
        "HEARTBEAT_INTERVAL": 0.15,
    }
    run = SyncRun.objects.create(job=make_job("test_products"), trigger="api", status="reading")
    job_id, label = 800_000 + os.getpid(), f"testapp.Beat{os.getpid()}"  # no other test's
    lock = locks.acquire_run(job_id, run.pk, models=[(label, "default")])
    monitor = RunMonitor(run, lock)
    monitor.start()
    try:
        time.sleep(1.5)
        assert not monitor.lost_lock
        assert locks.run_of(locks.job_lock(job_id).holder()) == run.pk
        assert locks.run_of(locks.model_lock(label).holder()) == run.pk
    finally:
        monitor.stop()
        lock.release()
    assert locks.job_lock(job_id).holder() is None and locks.model_lock(label).holder() is None


@pytest.mark.django_db(transaction=True)
def test_a_database_lease_outlives_its_ttl_without_renewal_warnings(make_job, settings, caplog):
    """A run longer than LOCK_TTL keeps its lease. In SQLite the run's own thread renews it
    between batches (another connection would wait on the run's write transaction, then
    fail with a traceback); elsewhere the heartbeat thread does."""
    from django.db import connection, transaction

    from djsync.runs.monitor import RunMonitor

    settings.DJSYNC = {
        **settings.DJSYNC,
        "LOCK_BACKEND": "database",
        "LOCK_TTL": 0.6,
        "HEARTBEAT_INTERVAL": 0.1,
    }
    run = SyncRun.objects.create(job=make_job("test_products"), trigger="api", status="reading")
    job_id = 810_000 + os.getpid()
    lock = locks.acquire_run(job_id, run.pk, models=[])
    monitor = RunMonitor(run, lock)
    assert monitor.renew_inline == (connection.vendor == "sqlite")
    monitor.start()
    try:
        with transaction.atomic():  # the run's write transaction, as during an apply
            Product.objects.create(sku="held", name="x", price=1)
            for _ in range(15):  # 1.5 s of batches, each one checking in
                time.sleep(0.1)
                monitor.check()
            assert not monitor.lost_lock
        assert locks.run_of(locks.job_lock(job_id).holder()) == run.pk
    finally:
        monitor.stop()
        lock.release()
    assert "could not renew" not in caplog.text


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
    from djsync.runs.orchestrator import apply_previewed

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
    url = redis_url()
    settings.DJSYNC = {
        **settings.DJSYNC,
        "LOCK_BACKEND": "redis",
        "LOCK_REDIS_URL": url,
        "LOCK_WAIT": 10,
    }
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


# -- retries of transient source errors (Celery's autoretry, run eagerly in process) -------
def flaky_job(make_job: Any, write_csv: Any, fail_times: int) -> Any:
    import tests.celery_helpers  # noqa: F401 - registers the "flaky" source kind

    source = {
        "kind": "flaky",
        "path": write_csv(product_rows("R1")).name,
        "counter": "reads",
        "fail_times": fail_times,
    }
    return make_job("test_products", source=source)


@pytest.fixture
def at_retry() -> Iterator[list[tuple[str, str]]]:
    """(status, error) of the task's run each time Celery retries it.

    Eager tasks that propagate their exceptions (the test settings) raise Celery's Retry
    instead of retrying: retries run in process as with an eager Celery's defaults."""
    from celery import current_app
    from celery.signals import task_retry

    propagates, current_app.conf.task_eager_propagates = (
        current_app.conf.task_eager_propagates,
        False,
    )

    seen: list[tuple[str, str]] = []

    def record(request: Any, **kwargs: Any) -> None:
        seen.append(SyncRun.objects.values_list("status", "error").get(task_id=request.id))

    task_retry.connect(record, weak=False)
    yield seen
    task_retry.disconnect(record)
    current_app.conf.task_eager_propagates = propagates


def test_a_transient_source_error_is_retried_and_the_second_attempt_succeeds(
    make_job, write_csv, tmp_path, settings, at_retry
):
    from djsync.tasks import execute_run

    settings.DJSYNC = {**settings.DJSYNC, "MAX_RETRIES": 2}
    job = flaky_job(make_job, write_csv, fail_times=1)
    run = SyncRun.objects.create(job=job, trigger="api", status="queued")
    result = execute_run.apply(args=(run.pk,)).get()
    run.refresh_from_db()
    assert result["status"] == run.status == "succeeded" and run.attempts == 2
    assert (tmp_path / "reads").read_text() == "2" and Product.objects.get().sku == "R1"
    [(status, error)] = at_retry  # between the attempts: queued again, with the cause
    assert status == "queued"
    assert re.fullmatch(r"attempt 1 of 3 failed: .*the server is busy; retrying in \d+ s", error)


def test_a_run_job_retry_works_on_the_run_of_its_first_attempt(
    make_job, write_csv, settings, at_retry
):
    from djsync.tasks import run_job

    settings.DJSYNC = {**settings.DJSYNC, "MAX_RETRIES": 1}
    job = flaky_job(make_job, write_csv, fail_times=1)
    assert run_job.apply(args=(job.pk,)).get()["status"] == "succeeded"
    run = job.runs.get()
    assert (run.status, run.attempts, run.trigger) == ("succeeded", 2, "schedule")


def test_retries_run_out_and_the_run_ends_failed_with_its_attempts_counted(
    make_job, write_csv, settings, at_retry
):
    from djsync.exceptions import TransientSourceError
    from djsync.tasks import execute_run

    settings.DJSYNC = {**settings.DJSYNC, "MAX_RETRIES": 2}
    job = flaky_job(make_job, write_csv, fail_times=99)
    run = SyncRun.objects.create(job=job, trigger="api", status="queued")
    result = execute_run.apply(args=(run.pk,))
    assert result.failed() and isinstance(result.result, TransientSourceError)
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("failed", 3)
    assert "read 3: the server is busy" in run.error and "retrying" not in run.error
    assert [status for status, _ in at_retry] == ["queued", "queued"]
    assert [error.split(" failed")[0] for _, error in at_retry] == [
        "attempt 1 of 3",
        "attempt 2 of 3",
    ]
    assert not Product.objects.exists()

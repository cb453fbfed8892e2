"""Celery tasks: thin wrappers that take ids and call the same services as ``runsync``.

Each task claims its run (queued → reading) so that a cancelled run, or a second delivery
of the same message, does nothing; runs whose source fails transiently
(:class:`~djsync.exceptions.TransientSourceError`) are retried by Celery's autoretry with
exponential backoff (:class:`RunTask`), other errors never. See docs/celery.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

try:
    from celery import Task, shared_task
except ImportError:  # the djsync[celery] extra: say so
    from djsync.extras import require

    require("celery", "a queued run (runsync --async, the admin's Run now and upload, a schedule)")
    raise
from django import db
from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.exceptions import RunCancelled, TransientSourceError
from djsync.models import SyncJob, SyncRun
from djsync.runs import monitor
from djsync.runs import orchestrator as services
from djsync.runs.lifecycle import RUNNING

logger = logging.getLogger("djsync")


class RunTask(Task):
    """A task that works on one run, retried by Celery when its source fails transiently.

    Celery's ``autoretry_for`` sends the task again (same task id, same arguments) after a
    random delay of at most ``RETRY_BACKOFF * 2**n`` seconds, never more than
    ``RETRY_BACKOFF_MAX`` (``retry_backoff`` with ``retry_jitter``: "full jitter", so that
    the retries of many runs of one failing source do not arrive together), up to
    ``MAX_RETRIES`` times; the last failure propagates. The settings are read through
    properties: ``MAX_RETRIES`` at every retry, the backoff when Celery builds the task
    (when the worker starts). Celery counts the backoff in whole seconds, at least 1.
    """

    autoretry_for = (TransientSourceError,)
    retry_jitter = True
    #: The delay when RETRY_BACKOFF is 0 (Celery's backoff off): retry at once.
    default_retry_delay = 0

    @property
    def max_retries(self) -> int:  # type: ignore[override]
        return int(settings.MAX_RETRIES)

    @property
    def retry_backoff(self) -> float:
        return float(settings.RETRY_BACKOFF)

    @property
    def retry_backoff_max(self) -> int:
        return int(settings.RETRY_BACKOFF_MAX)

    def will_retry(self) -> bool:
        """Whether a transient error of this attempt is retried: attempts are left and the
        task runs on a worker (or eagerly), not called as a function."""
        request = self.request
        return not request.called_directly and (request.retries or 0) < self.max_retries

    def retry(
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: Exception | None = None,
        throw: bool = True,
        eta: Any = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Any:
        """Celery's retry (what ``autoretry_for`` calls), after saying on the run, queued
        again by its failure, which attempt failed and when the next one starts."""
        if exc is not None and self.will_retry():
            delay = self.default_retry_delay if countdown is None else countdown
            runs = SyncRun.objects.filter(task_id=self.request.id, status=SyncRun.Status.QUEUED)
            attempts = runs.values_list("attempts", flat=True).first()
            if attempts is not None:
                error = _("attempt %(attempts)s of %(max_retries)s failed: %(exc)s") % {
                    "attempts": attempts,
                    "max_retries": self.max_retries + 1,
                    "exc": exc,
                }
                runs.update(
                    error=_("%(error)s; retrying in %(delay)s s")
                    % {"error": error, "delay": format(delay, "g")}
                )
        return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)


@shared_task(bind=True, base=RunTask, name="djsync.execute_run")
def execute_run(self: RunTask, run_id: int) -> dict[str, Any]:
    """Work on a queued run: read and diff, then apply unless it is a dry run."""
    return _work(self, run_id, services.execute_queued)


@shared_task(bind=True, base=RunTask, name="djsync.preview_run")
def preview_run(self: RunTask, run_id: int) -> dict[str, Any]:
    """Read and diff a queued dry run and store its plan (status: previewed)."""
    return _work(self, run_id, services.execute_queued)


def run_in_thread(task: Task, run_id: int, *args: Any) -> threading.Thread:
    """Run ``task`` for a run in a background thread of this process, through the same task
    and run lifecycle as on a worker: what an eager Celery (no broker, the in-process
    default) does with the admin's work (djsync.queue.in_background), so that the request
    returns at once and its progress page follows the run.

    Called once the request's transaction has committed (the thread's own connection must
    see the run). The run records its own failure; anything that escapes it (an error
    before the run could record one) fails the run here, so that none is left queued or
    running. The thread closes its database connections when done.
    """

    def work() -> None:
        try:
            result = task.apply(args=(run_id, *args), throw=False)
            if result.failed():
                logger.warning("djsync: run %s in a thread failed: %s", run_id, result.result)
                fail_left_over(run_id, result.result)
        except BaseException as exc:  # never let a thread die with a traceback on stderr
            logger.exception("djsync: run %s in a thread failed", run_id)
            fail_left_over(run_id, exc)
        finally:
            db.connections.close_all()
            BACKGROUND_RUNS.discard(threading.current_thread())

    thread = threading.Thread(target=work, name=f"djsync-run-{run_id}", daemon=True)
    BACKGROUND_RUNS.add(thread)
    thread.start()
    return thread


def fail_left_over(run_id: int, exc: BaseException) -> None:
    """After its thread ended: a run still queued or running has nobody working on it any
    more; it ends failed with ``exc`` as its cause (the lifecycle's fail transition)."""
    try:
        sync_run = SyncRun.objects.select_related("job").filter(pk=run_id).first()
        if sync_run is not None and sync_run.status in (SyncRun.Status.QUEUED, *RUNNING):
            SyncRun.objects.fail(sync_run, exc)
    except Exception:  # the database itself is gone: the stale-run reaper ends it later
        logger.exception("djsync: could not record the failure of run %s", run_id)


def working_on(run_id: int) -> bool:
    """Whether a thread of this process works on the run now (it is alive, whatever its
    heartbeat says: on SQLite a long apply writes none until it commits)."""
    name = f"djsync-run-{run_id}"
    return any(thread.name == name and thread.is_alive() for thread in list(BACKGROUND_RUNS))


def wait_for_background_runs(timeout: float | None = None) -> bool:
    """Wait until the runs this process started in threads (:func:`run_in_thread`) end;
    False if some still work after ``timeout`` seconds. For tests and a clean shutdown."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for thread in list(BACKGROUND_RUNS):
        left = None if deadline is None else max(deadline - time.monotonic(), 0)
        thread.join(left)
    return not any(thread.is_alive() for thread in list(BACKGROUND_RUNS))


#: Runs working in background threads of this process (see run_in_thread); a thread leaves
#: it when done.
BACKGROUND_RUNS: set[threading.Thread] = set()


@shared_task(bind=True, name="djsync.apply_run")
def apply_run(self: Task, run_id: int, user_id: int | None = None) -> dict[str, Any]:
    """Apply the plan stored on a previewed run (if the target has not moved since)."""
    sync_run = SyncRun.objects.select_related("job").get(pk=run_id)
    token = monitor.current_task.set(self)
    try:
        services.apply_previewed(sync_run, user=_user(user_id))
    except RunCancelled:
        pass
    finally:
        monitor.current_task.reset(token)
    return _result(sync_run)


@shared_task(bind=True, base=RunTask, name="djsync.run_job")
def run_job(
    self: RunTask,
    job_id: int,
    trigger: str = SyncRun.Trigger.SCHEDULE,
    run_id: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Read, diff and apply a job in one go: what beat's schedules call.

    A scheduled run of a disabled job is skipped. A retry (which keeps its task id) works
    on the run the first attempt created.
    """
    if run_id is None and self.request.retries and self.request.id:
        run_id = (
            SyncRun.objects.filter(job_id=job_id, task_id=self.request.id)
            .values_list("pk", flat=True)
            .first()
        )
    if run_id is None:
        job = SyncJob.objects.get(pk=job_id)
        if not job.enabled and trigger == SyncRun.Trigger.SCHEDULE:
            return {"job": job.name, "run": None, "status": "skipped (job disabled)"}
        run_id = SyncRun.objects.create(
            job=job,
            trigger=trigger,
            options={k: v for k, v in options.items() if v is not None},
            status=SyncRun.Status.QUEUED,
            task_id=self.request.id or "",
        ).pk
    return _work(self, run_id, services.execute_queued)


@shared_task(name="djsync.reap_stale_runs")
def reap_stale_runs() -> list[int]:
    """Mark failed the runs whose worker died (no heartbeat, lock expired)."""
    return [run.pk for run in monitor.reap_stale_runs()]


@shared_task(bind=True, name="djsync.drain_changes", max_retries=20)
def drain_changes(self: Task, job_id: int) -> dict[str, Any]:
    """Consume a real-time job's pending changes (djsync.realtime.consumer), one run per
    batch, for at most REALTIME_DRAIN_SECONDS; then hand over to a new task if changes are
    left, so that one job cannot hold a worker for ever. A job busy with another run is
    tried again shortly."""
    from djsync.realtime.consumer import drain

    outcomes = drain(job_id)
    last = outcomes[-1].state if outcomes else "idle"
    if last == "busy":
        raise self.retry(countdown=0.5)
    if last not in ("idle", "paused"):
        drain_changes.delay(job_id)
    return {
        "batches": sum(1 for o in outcomes if o.state in ("applied", "failed")),
        "changes": sum(o.changes for o in outcomes if o.state in ("applied", "failed")),
        "failed": sum(1 for o in outcomes if o.state == "failed"),
    }


@shared_task(name="djsync.poll_changes")
def poll_changes() -> list[int]:
    """For beat, every few seconds: wake the consumer of each real-time job with changes
    available (the fallback when a wake-up was lost, and the retries after their backoff)."""
    from djsync.realtime.queue import jobs_with_work

    jobs = jobs_with_work()
    for job_id in jobs:
        wake(job_id)
    return jobs


def wake(job_id: int) -> None:
    """Start a consumer of real-time job ``job_id`` unless one is on its way (once per job
    until that consumer starts: djsync.realtime.consumer.drain clears the mark). Never
    raises: with the broker down the change waits for the next poll or ``runsync --follow``."""
    from django.core.cache import cache

    from djsync.realtime.queue import wake_key

    try:
        if not cache.add(wake_key(job_id), 1, timeout=1):
            return
        drain_changes.delay(job_id)
    except Exception:  # noqa: BLE001 - after the commit: the user's write stands
        cache.delete(wake_key(job_id))
        logger.warning("djsync: could not wake the consumer of job %s", job_id, exc_info=True)


@shared_task(name="djsync.prune_sync_runs")
def prune_sync_runs(older_than_days: float | None = None) -> dict[str, int]:
    """Delete runs older than ``older_than_days`` (default KEEP_RUNS_DAYS) with their
    changes, row errors and uploads, in bounded batches; never an active run or a preview
    still waiting for its apply. What ``manage.py prunesyncruns`` does, for beat."""
    from dataclasses import asdict
    from datetime import timedelta

    from djsync.store import prune_runs

    days = settings.KEEP_RUNS_DAYS if older_than_days is None else older_than_days
    if days is None:  # KEEP_RUNS_DAYS None: history is kept for ever
        return {"runs": 0, "changes": 0, "row_errors": 0, "uploads": 0}
    return asdict(prune_runs(timedelta(days=float(days))))


def _work(task: RunTask, run_id: int, service: Callable[[SyncRun], SyncRun]) -> dict[str, Any]:
    """Claim the run and call the service; a TransientSourceError goes on to Celery's
    autoretry (:class:`RunTask`), after the run recorded itself "queued" again — or "failed"
    on the last attempt, or when the task was called as a function (no retry then)."""
    sync_run = monitor.claim(run_id, task.request.id or "")
    if sync_run is None:  # cancelled while queued, or already taken
        status = SyncRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
        return {"run": run_id, "status": status, "skipped": True}
    tokens = (monitor.current_task.set(task), monitor.retry_pending.set(task.will_retry()))
    try:
        service(sync_run)
    except RunCancelled:
        pass
    finally:
        monitor.current_task.reset(tokens[0])
        monitor.retry_pending.reset(tokens[1])
    return _result(sync_run)


def _result(sync_run: SyncRun) -> dict[str, Any]:
    return {
        "run": sync_run.pk,
        "job": sync_run.job.name,
        "status": sync_run.status,
        "counts": sync_run.counts,
        "error": sync_run.error or None,
    }


def _user(user_id: int | None) -> Any:
    if user_id is None:
        return None
    from django.contrib.auth import get_user_model

    return get_user_model()._default_manager.filter(pk=user_id).first()

"""Celery tasks: thin wrappers that take ids and call the same services as ``runsync``.

Each task claims its run (queued → reading) so that a cancelled run, or a second delivery
of the same message, does nothing; runs whose source fails transiently
(:class:`~djsync.exceptions.TransientSourceError`) are retried by Celery's autoretry with
exponential backoff (:class:`RunTask`), other errors never. See docs/celery.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

try:
    from celery import Task, shared_task
except ImportError:  # the djsync[celery] extra: say so
    from djsync.extras import require

    require("celery", "a queued run (runsync --async, a schedule)")
    raise
from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.exceptions import TransientSourceError
from djsync.models import SyncJob, SyncRun
from djsync.runs import background, monitor, partitions
from djsync.runs import orchestrator as services
from djsync.runs.background import (  # re-exported: the threads are this module's too
    BACKGROUND_RUNS as BACKGROUND_RUNS,
)
from djsync.runs.background import fail_left_over as fail_left_over
from djsync.runs.background import wait_for_background_runs as wait_for_background_runs
from djsync.runs.background import working_on as working_on

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
    return _work(self, run_id, _execute)


@shared_task(bind=True, base=RunTask, name="djsync.preview_run")
def preview_run(self: RunTask, run_id: int) -> dict[str, Any]:
    """Read and diff a queued dry run and store its plan (status: previewed)."""
    return _work(self, run_id, _execute)


def _execute(sync_run: SyncRun) -> SyncRun:
    """Carry out a claimed run: in this task, or split into partitions (a chord of
    :func:`load_partition` tasks, then :func:`finish_partitions`) when it asks for more
    than one and can be split (djsync.runs.partitions)."""
    from celery import chord, current_app

    try:
        specs = partitions.prepare(sync_run)
    except Exception as exc:
        services.fail(sync_run, exc)
        exc.run = sync_run  # type: ignore[attr-defined]
        raise
    if specs is None:
        try:
            return services.execute_queued(sync_run)
        finally:
            partitions.add_note(sync_run)
    if current_app.conf.task_always_eager:  # no worker: the partitions in sequence, here
        return partitions.run_in_process(sync_run, specs) or sync_run
    header = [load_partition.si(sync_run.pk, spec) for spec in specs]
    chord(header)(finish_partitions.si(sync_run.pk, specs[0]))
    return sync_run


class PartitionTask(RunTask):
    """A partition: acknowledged once done, so that one whose worker died (killed, out of
    memory) is delivered again and replaces its own rows; retried on transient errors."""

    acks_late = True
    reject_on_worker_lost = True


@shared_task(bind=True, base=PartitionTask, name="djsync.load_partition")
def load_partition(self: PartitionTask, run_id: int, spec: dict[str, Any]) -> str:
    """Read one range of a split run's file into the run's staging."""
    return partitions.load_partition(run_id, spec, last_attempt=not self.will_retry())


@shared_task(bind=True, name="djsync.finish_partitions")
def finish_partitions(self: Task, run_id: int, spec: dict[str, Any]) -> dict[str, Any]:
    """The chord's callback: classify and apply a split run once, every partition in."""
    token = monitor.current_task.set(self)
    try:
        sync_run = partitions.finish(run_id, spec)
    except Exception as exc:
        sync_run = getattr(exc, "run", None)
        if sync_run is None:
            raise
    finally:
        monitor.current_task.reset(token)
    if sync_run is None:
        return {"run": run_id, "status": None}
    return _result(sync_run)


def run_in_thread(task: Task, run_id: int, *args: Any) -> threading.Thread:
    """Run ``task`` for a run in a background thread of this process, through the same task
    and run lifecycle as on a worker: what an eager Celery (no broker, the in-process
    default) does with the admin's work (djsync.queue.in_background), so that the request
    returns at once and its progress page follows the run. See
    :func:`djsync.runs.background.run_in_thread`."""

    def work() -> None:
        result = task.apply(args=(run_id, *args), throw=False)
        if result.failed():
            logger.warning("djsync: run %s in a thread failed: %s", run_id, result.result)
            fail_left_over(run_id, result.result)

    return background.run_in_thread(run_id, work)


@shared_task(bind=True, name="djsync.apply_run")
def apply_run(self: Task, run_id: int, user_id: int | None = None) -> dict[str, Any]:
    """Apply the plan stored on a previewed run (if the target has not moved since)."""
    return _result(background.apply_stored(run_id, user_id, task=self))


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
    return _work(self, run_id, _execute)


@shared_task(name="djsync.reap_stale_runs")
def reap_stale_runs() -> list[int]:
    """Mark failed the runs whose worker died (no heartbeat, lock expired)."""
    return [run.pk for run in monitor.reap_stale_runs()]


@shared_task(bind=True, name="djsync.drain_changes", max_retries=20)
def drain_changes(self: Task, job_id: int) -> dict[str, Any]:
    """Consume a real-time job's pending changes (djsync.realtime.consumer), one run per
    batch, for at most REALTIME_DRAIN_SECONDS; then hand over to a new task if changes are
    left, so that one job cannot hold a worker for ever. A job busy with another run is
    tried again shortly; one whose target is down waits for beat's poll_changes."""
    from djsync.realtime.consumer import drain

    outcomes = drain(job_id)
    last = outcomes[-1].state if outcomes else "idle"
    if last == "busy":
        raise self.retry(countdown=0.5)
    if last not in ("idle", "paused", "waiting"):
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


@shared_task(name="djsync.watch_job")
def watch_job(job_id: int) -> dict[str, Any]:
    """One poll of a watched job (djsync.watch.poll), sent by beat every ``job.watch``
    seconds (djsync.runs.schedules). A poll while another of the same job is under way, or
    one that waited past its interval in the queue (its PeriodicTask expires it), does
    nothing: polls are skipped, never queued up."""
    from django.core.cache import cache

    from djsync.watch.poll import poll

    job = SyncJob.objects.filter(pk=job_id).only("pk", "watch").first()
    if job is None or job.watch is None:
        return {"job": job_id, "state": "off"}
    key = f"djsync:watch:{job_id}"
    if not cache.add(key, 1, timeout=max(int(job.watch), 1) * 10):
        return {"job": job_id, "state": "busy"}
    try:
        outcome = poll(job_id)
    finally:
        cache.delete(key)
    return {"job": job_id, "state": outcome.state, "runs": [run.pk for run in outcome.runs]}


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
    """Claim the run and carry it out; a TransientSourceError goes on to Celery's
    autoretry (:class:`RunTask`), after the run recorded itself "queued" again — or "failed"
    on the last attempt, or when the task was called as a function (no retry then)."""
    sync_run = background.work_on(
        run_id, task.request.id or "", task=task, retry_pending=task.will_retry(), service=service
    )
    if sync_run is None:  # cancelled while queued, or already taken
        status = SyncRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
        return {"run": run_id, "status": status, "skipped": True}
    return _result(sync_run)


def _result(sync_run: SyncRun) -> dict[str, Any]:
    return {
        "run": sync_run.pk,
        "job": sync_run.job.name,
        "status": sync_run.status,
        "counts": sync_run.counts,
        "error": sync_run.error or None,
    }

"""Watching a run while it works: the job's lock, heartbeat, progress, cancel and dead runs.

Every run of a job — in process, on a worker, from beat — goes through :func:`guard`,
which takes the job's lock and the lock of each model it writes (:mod:`djsync.runs.locks`),
starts a heartbeat thread that renews them, writes progress to the SyncRun *outside* the
sync transaction (so that others see it while the run works), reports it as Celery task
state, and checks between phases and batches whether someone asked to cancel.
"""

from __future__ import annotations

import contextvars
import copy
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.db import connections, router, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.exceptions import QueueError, RunCancelled, RunLocked
from djsync.models import SyncJob, SyncRun
from djsync.runs import locks
from djsync.runs.lifecycle import READING, RUNNING
from djsync.runs.lifecycle import (
    end_status as end_status,  # re-exported: services imports it from here
)
from djsync.runs.lifecycle import retry_pending as retry_pending  # re-exported: tasks sets it here
from djsync.runs.progress import Extent, Progress, snapshot

logger = logging.getLogger("djsync")

#: The Celery task executing the current run, set by :mod:`djsync.tasks`.
current_task: contextvars.ContextVar[Any] = contextvars.ContextVar("djsync_task", default=None)


# -- where progress is written ------------------------------------------------------------
def progress_using() -> str:
    """The database alias progress goes through while the sync transaction is open.

    PostgreSQL (and other client/server databases): a second connection to the runs'
    database, registered on first use, so progress commits at once while the apply
    transaction is still open. SQLite allows one writer at a time, so progress goes
    through the run's own connection and shows when the apply transaction commits.
    """
    if settings.PROGRESS_DATABASE:
        return settings.PROGRESS_DATABASE
    base = router.db_for_write(SyncRun)
    if connections[base].vendor == "sqlite":
        return base
    alias = f"{base}__djsync_progress"
    if alias not in connections.settings:
        connections.settings[alias] = copy.deepcopy(connections[base].settings_dict)
    return alias


def write_progress(
    run_id: int, using: str | None = None, *, wait: bool = True, **fields: Any
) -> None:
    """Update a run's progress fields, committed at once; a failure is logged, not raised.
    ``wait=False``: on PostgreSQL, give up after a second if the run's row is locked."""
    alias = using or progress_using()
    rows = SyncRun.objects.using(alias).filter(pk=run_id)
    try:
        if wait or connections[alias].vendor != "postgresql":
            rows.update(**fields)
            return
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', '1s', true)")
            rows.update(**fields)
    except Exception:  # progress must never break a run
        logger.debug("djsync: could not write progress of run %s", run_id, exc_info=True)


# -- the monitor ---------------------------------------------------------------------------
class RunMonitor:
    """Heartbeat, progress and cancel checks of one run that holds its job's lock."""

    #: Seconds between two progress writes from callbacks (batches can be fast).
    write_every = 0.5

    def __init__(self, sync_run: SyncRun, lock: locks.JobLock, *, task: Any = None) -> None:
        self.run = sync_run
        self.lock = lock
        self.task = task
        self.using = progress_using()
        #: The run's own connection, and how deep in transactions its caller had it: deeper
        #: while a source is read means a staged read's transaction (:meth:`_read_alias`).
        self.own = connections[router.db_for_write(SyncRun)]
        self.depth = len(self.own.atomic_blocks)
        self.status = sync_run.status
        self.rows_read = 0
        self.rows_applied = 0
        self.total = 0
        #: The current phase's progress as recorded on the run (progress.snapshot); the
        #: extent its source last told, and when the phase began (epoch seconds).
        self.recorded: dict[str, Any] = {}
        self.extent: Extent | None = None
        self.since = time.time()
        self.lost_lock = False
        #: A lease in SQLite: one writer at a time, so while the run's own connection holds a
        #: write transaction another connection cannot renew it (it would wait, then fail).
        #: The run's own thread renews it instead, between batches (:meth:`check`).
        self.renew_inline = locks.in_sqlite(lock)
        self._last_renew = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_write = self._last_check = time.monotonic()

    # heartbeat thread
    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._beat, name=f"djsync-heartbeat-{self.run.pk}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _beat(self) -> None:
        try:
            while not self._stop.wait(float(settings.HEARTBEAT_INTERVAL)):
                self.heartbeat(from_thread=True)
        finally:
            connections.close_all()  # this thread's own connections

    def heartbeat(self, *, from_thread: bool = False) -> None:
        """Renew the lock and write the heartbeat with the progress so far."""
        if not (from_thread and self.renew_inline):
            self.renew()
        if from_thread and connections[self.using].vendor == "sqlite":
            return  # one writer at a time: the run's own connection writes its progress
        write_progress(
            self.run.pk,
            self.using,
            wait=not from_thread,  # the heartbeat thread's next renewal must not wait
            heartbeat_at=timezone.now(),
            rows_read=self.rows_read,
            rows_applied=self.rows_applied,
            **({"progress": self.recorded} if self.recorded else {}),
        )

    # callbacks
    def progress(self, outer: Progress) -> Progress:
        """A Progress that feeds this monitor, then the caller's own callbacks."""

        def on_extent(extent: Extent) -> None:
            self.extent = extent
            if outer.on_extent:
                outer.on_extent(extent)

        def on_read(rows: int) -> None:
            self.rows_read = rows
            extent = self.extent or Extent(done=rows, total=None, unit="rows")
            self.recorded = snapshot(
                "reading",
                self.since,
                done=extent.done,
                total=extent.total,
                unit=extent.unit,
                rows=rows,
            )
            write_progress(
                self.run.pk,
                self._read_alias(),
                rows_read=rows,
                heartbeat_at=timezone.now(),
                progress=self.recorded,
            )
            self.check(every=self.write_every)
            self._report()
            if outer.on_read:
                outer.on_read(rows)

        def on_apply(done: int, total: int) -> None:
            self.rows_applied, self.total = done, total
            self.recorded = snapshot(
                "applying",
                self.since,
                done=done,
                total=total,
                unit="changes",
                rows=self.rows_read,
            )
            self.check(every=0 if done >= total else self.write_every)  # always before commit
            if time.monotonic() - self._last_write >= self.write_every:
                self._last_write = time.monotonic()
                self.heartbeat()
            self._report()
            if outer.on_apply:
                outer.on_apply(done, total)

        def on_status(status: str) -> None:
            if status != self.status or status == READING:  # a phase (or a source) begins
                self.since, self.extent, self.recorded = time.time(), None, {}
            self.status = status
            if status in RUNNING:
                self.check()
            self._report(force=True)
            if outer.on_status:
                outer.on_status(status)

        return Progress(
            on_read=on_read,
            on_apply=on_apply,
            on_status=on_status,
            on_extent=on_extent,
            extra=outer.extra,
        )

    def _read_alias(self) -> str:
        """Where a read's progress is written: the run's own connection while no transaction
        of the run is open on it (a generic read), so it shows at once; during a staged read
        (a transaction of its own), the progress connection: a row updated in that
        transaction stays locked until it commits, and the heartbeat's write of it would
        wait as long, its lease unrenewed (SQLite: the same connection either way)."""
        if len(self.own.atomic_blocks) > self.depth:
            return self.using
        return self.own.alias

    def renew(self) -> None:
        self._last_renew = time.monotonic()
        try:
            if not self.lock.renew():
                self.lost_lock = True
        except Exception as exc:  # the next beat tries again; losing it is lost_lock's job
            logger.warning("djsync: could not renew the lock of run %s: %s", self.run.pk, exc)

    def check(self, *, every: float = 0.0) -> None:
        """Raise if the run was cancelled or lost its lock; called between phases and batches
        (at most once per ``every`` seconds). A lease in SQLite is renewed here."""
        if self.renew_inline and time.monotonic() - self._last_renew >= float(
            settings.HEARTBEAT_INTERVAL
        ):
            self.renew()
        if every and time.monotonic() - self._last_check < every:
            return
        self._last_check = time.monotonic()
        if self.lost_lock:
            raise RunLocked(
                _(
                    "run #%(pk)s lost its job's lock (no heartbeat for %(lock_ttl)s s); stopped "
                    "so that two runs never write at once"
                )
                % {"pk": self.run.pk, "lock_ttl": settings.LOCK_TTL}
            )
        if cancel_requested(self.run.pk):
            self.run.cancel_requested = True
            raise RunCancelled(
                _("run #%(pk)s was cancelled; nothing was written") % {"pk": self.run.pk}
            )

    def _report(self, *, force: bool = False) -> None:
        """Celery task state ``PROGRESS`` with the counts, for ``AsyncResult(id).info``."""
        task = self.task
        if task is None or getattr(task.request, "is_eager", False) or not task.request.id:
            return
        now = time.monotonic()
        if not force and now - getattr(self, "_last_state", 0.0) < self.write_every:
            return
        self._last_state = now
        from celery.backends.base import DisabledBackend

        if isinstance(task.backend, DisabledBackend):
            return
        try:
            task.update_state(state="PROGRESS", meta=self.state())
        except Exception:
            logger.debug("djsync: could not report task state", exc_info=True)

    def state(self) -> dict[str, Any]:
        return {
            "run": self.run.pk,
            "status": self.status,
            "rows_read": self.rows_read,
            "rows_applied": self.rows_applied,
            "total": self.total,
            "progress": self.recorded,
            "pid": os.getpid(),
        }


@contextmanager
def guard(sync_run: SyncRun, progress: Progress | None = None) -> Iterator[Progress]:
    """Hold the job's lock for the duration of a run and watch it; yields its Progress.

    Raises :class:`RunLocked` when another run of the job is active (after waiting
    ``LOCK_WAIT`` seconds) and :class:`RunCancelled` when the run was cancelled already.
    """
    progress = progress or Progress()
    if cancel_requested(sync_run.pk):
        raise RunCancelled(_("run #%(pk)s was cancelled before it started") % {"pk": sync_run.pk})
    lock = locks.acquire_run(sync_run.job_id, sync_run.pk, models=written_models(sync_run.job))
    monitor = RunMonitor(sync_run, lock, task=current_task.get())
    try:
        fail_dead_runs(sync_run)
        monitor.start()
        yield monitor.progress(progress)
    finally:
        monitor.stop()
        try:
            lock.release()
        except Exception:
            logger.warning("djsync: could not release the lock of run %s", sync_run.pk)
        if monitor.using != router.db_for_write(SyncRun):
            connections[monitor.using].close()  # the second connection lives as long as a run


def written_models(job: SyncJob) -> list[tuple[str, str]]:
    """``(model label, database alias)`` of every model a run of ``job`` writes: its
    importer's, or each importer's of a multi-model job; none for an export. An importer
    that cannot be found is left out (the run then fails on it with its own message)."""
    from djsync.exports.step import is_export
    from djsync.mapping.registry import get_importer_class
    from djsync.runs.steps import importer_names

    if is_export(job):
        return []
    found = []
    for name in importer_names(job):
        try:
            cls = get_importer_class(name)
        except Exception:  # noqa: BLE001 - reported by the run itself
            continue
        model = getattr(cls, "model", None)
        if model is not None:
            using = getattr(cls, "database", None) or router.db_for_write(model)
            found.append((model._meta.label, using))
    return found


def cancel_requested(run_id: int) -> bool:
    return SyncRun.objects.filter(pk=run_id, cancel_requested=True).exists()


# -- cancel --------------------------------------------------------------------------------
def cancel(sync_run: SyncRun) -> SyncRun:
    """Cancel a queued or running run: it ends "cancelled" and writes nothing to the target.

    A queued run is cancelled at once (and its task revoked); a running one stops at its
    next check — between phases, every 1,000 rows read and after every batch applied —
    and its apply transaction rolls back.
    """
    if SyncRun.objects.cancel(sync_run):  # else: asked to stop; RunStateError if done
        _revoke(sync_run.task_id)
    sync_run.refresh_from_db()
    return sync_run


def _revoke(task_id: str) -> None:
    if not task_id:
        return
    try:
        from celery import current_app
    except ImportError:  # no Celery (the djsync[celery] extra): the run was in process
        return

    if current_app.conf.task_always_eager:
        return
    try:
        current_app.control.revoke(task_id)
    except Exception:  # the run's status is what counts; the worker re-checks it
        logger.info("djsync: could not revoke task %s", task_id, exc_info=True)


# -- dead runs -----------------------------------------------------------------------------
def fail_dead_runs(sync_run: SyncRun) -> list[SyncRun]:
    """With the job's lock in hand, other running runs of the job have no live worker."""
    cutoff = timezone.now() - timedelta(seconds=float(settings.LOCK_TTL) / 2)
    dead = SyncRun.objects.silent_since(cutoff).filter(job_id=sync_run.job_id)
    return [mark_dead(run) for run in dead.exclude(pk=sync_run.pk)]


def reap_stale_runs() -> list[SyncRun]:
    """Mark failed every running run without a heartbeat for STALE_AFTER s whose lock is free."""
    cutoff = timezone.now() - timedelta(seconds=float(settings.STALE_AFTER))
    candidates = SyncRun.objects.silent_since(cutoff)
    return [mark_dead(run) for run in candidates if not is_held(run)]


def is_stale(sync_run: SyncRun) -> bool:
    """A running run whose heartbeat is older than STALE_AFTER and whose job lock is free."""
    if sync_run.status not in RUNNING:
        return False
    last = sync_run.heartbeat_at or sync_run.started_at or sync_run.created_at
    if timezone.now() - last < timedelta(seconds=float(settings.STALE_AFTER)):
        return False
    return not is_held(sync_run)


def is_held(sync_run: SyncRun) -> bool:
    """Whether this run holds its job's lock now."""
    return locks.run_of(locks.job_lock(sync_run.job_id).holder()) == sync_run.pk


def mark_dead(sync_run: SyncRun) -> SyncRun:
    """Record a run whose worker died as failed (its transaction rolled back: nothing written)."""
    SyncRun.objects.mark_dead(sync_run)  # the reaper, a follower, a new run: one of them
    return sync_run


# -- workers -------------------------------------------------------------------------------
def claim(run_id: int, task_id: str = "") -> SyncRun | None:
    """Move a queued run to "reading" for this worker; None if it is not queued any more
    (cancelled, or taken by another delivery of the same task)."""
    sync_run = SyncRun.objects.claim(run_id, task_id)
    if sync_run is None:
        return None
    if sync_run.attempts > 1:  # a retry starts from a clean slate
        sync_run.changes.all().delete()
        sync_run.row_errors.all().delete()
    return sync_run


def follow(
    run_id: int,
    *,
    on_update: Callable[[SyncRun], None] | None = None,
    poll: float = 0.5,
    no_worker_after: float | None = None,
) -> SyncRun:
    """Poll a run until it is done (or previewed); a run whose worker died is marked failed.

    With ``no_worker_after`` (runsync --wait: WAIT_NO_WORKER), a run still queued after
    that many seconds makes the workers be asked whether any is alive: if none answers,
    the run is marked failed (:func:`fail_unclaimed`) and returned; if some do, they are
    busy, and the wait goes on.
    """
    last: tuple[Any, ...] | None = None
    queued_since = time.monotonic()
    while True:
        sync_run = SyncRun.objects.select_related("job").get(pk=run_id)
        seen = (
            sync_run.status,
            sync_run.rows_read,
            sync_run.rows_applied,
            (sync_run.progress or {}).get("done"),
            sync_run.error,
        )
        if on_update and seen != last:
            on_update(sync_run)
            last = seen
        if sync_run.is_done or sync_run.status == SyncRun.Status.PREVIEWED:
            return sync_run
        if is_stale(sync_run):
            return mark_dead(sync_run)
        if sync_run.status != SyncRun.Status.QUEUED:
            queued_since = time.monotonic()
        elif no_worker_after and time.monotonic() - queued_since >= no_worker_after:
            if not workers_alive():
                return fail_unclaimed(sync_run, waited=time.monotonic() - queued_since)
            queued_since = time.monotonic()  # workers answer: busy, keep waiting
        time.sleep(poll)


def workers_alive(timeout: float = 1.0) -> bool:
    """Whether any Celery worker answers a ping within ``timeout`` seconds."""
    try:
        from celery import current_app
    except ImportError:  # no Celery (the djsync[celery] extra): no worker either
        return False
    try:
        return bool(current_app.control.ping(timeout=timeout))
    except Exception:  # noqa: BLE001 - a broker that does not answer: no worker either
        logger.info("djsync: could not ping the workers", exc_info=True)
        return False


def fail_unclaimed(sync_run: SyncRun, *, waited: float) -> SyncRun:
    """Mark failed a queued run that no worker took (none is running): it will not run
    when a worker starts later (a worker only takes queued runs); its upload is removed."""
    from djsync.uploads import release_upload

    error = QueueError(
        _(
            "no Celery worker took run #%(pk)s in %(waited)s s and none answers (the "
            "WAIT_NO_WORKER setting); it is marked failed and will not run, nothing was written. "
            "Start a worker (celery -A <project> worker) and run the job again"
        )
        % {"pk": sync_run.pk, "waited": format(waited, ".0f")}
    )
    if not SyncRun.objects.fail(sync_run, error):  # queued → failed, unless taken meanwhile
        return SyncRun.objects.select_related("job").get(pk=sync_run.pk)
    _revoke(sync_run.task_id)
    release_upload(sync_run)
    return sync_run

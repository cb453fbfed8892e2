"""The consumer: a batch of a job's pending changes applied as one run of the job.

A batch is read back from the source as it is now (the changed rows, by primary key,
through the job's own queryset source) and diffed against the target rows under the same
keys only: a row that was deleted, or left the source's queryset, is deleted on the target
(when the job deletes); the others are created or updated. The run goes through the one
orchestrator, so the limits, row errors, history and the job's lock are those of every
run. A successful batch then joins the job's open real-time run (djsync.realtime.history),
and one that changed nothing leaves no run behind; a failed one stays a run of its own,
mailed only once its changes are parked (djsync.realtime.parking).

:func:`drain` consumes until nothing is left (``djsync.tasks.drain_changes``, started by
``djsync.tasks.wake`` after a commit); :func:`follow` consumes in the foreground
(``runsync --follow``), woken by PostgreSQL's NOTIFY or every ``REALTIME_POLL`` seconds.
"""

from __future__ import annotations

import contextvars
import logging
import select
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connections, router
from django.utils import timezone
from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.engine.diff import Key, RowError, SourceRow
from djsync.exceptions import RunLocked
from djsync.exports.step import is_export
from djsync.mapping.registry import get_importer_class
from djsync.models import PendingChange, SyncJob, SyncRun
from djsync.realtime import capture, history, outage, parking, queue
from djsync.runs import locks, orchestrator
from djsync.signals import batch_applied
from djsync.sources.querysets import QuerySetSource

logger = logging.getLogger("djsync")

__all__ = ["ChangedRows", "Outcome", "consume", "drain", "follow"]


#: Changed rows from which a batch may take the staged path (set-based SQL): below, the
#: generic path's few statements answer sooner.
STAGED_FROM = 200

#: An export job's batch takes this many times REALTIME_BATCH changes: each batch
#: rewrites the whole file, so fewer, larger batches.
EXPORT_BATCHES = 20


class ChangedRows(QuerySetSource):
    """The job's queryset source narrowed to the rows that changed, and the keys they had
    (their rows before, for updates and deletes): the run is the truth for those keys only."""

    def __init__(self, base: QuerySetSource, batch: queue.Batch) -> None:
        model = base.queryset.model
        pks = []
        for key in batch.keys:
            try:
                pks.append(model._meta.pk.to_python(key))
            except ValidationError:
                continue  # a key the model cannot hold any more: its old row still counts
        super().__init__(
            queryset=base.queryset,
            filter={**base.filter, "pk__in": pks},
            exclude=base.exclude,
            fields=base.fields,
            chunk_size=base.chunk_size,
            name=_("%(count)s changed rows of %(name)s") % {"count": len(pks), "name": base},
        )
        self.olds = batch.olds
        self.pks = pks
        #: The changed rows as the source gives them, read once (by :meth:`scope_keys`).
        self.records: list[dict[str, Any]] | None = None

    def read(self) -> Iterator[dict[str, Any]]:
        if self.records is None:
            yield from super().read()
            return
        yield from self.records

    def scope_keys(self, importer: Any) -> set[Key]:
        """The keys of the changed rows now (in the source's queryset or out of it: a row
        that left it is deleted from the target), and of the same rows before the change.
        The rows are kept for the run's read; a large batch, held in memory, may then take
        the staged path although the source is the target's database (no cursor is open)."""
        self.records = list(self._rows())
        columns = self.columns or []
        if len(self.records) >= STAGED_FROM:
            self.database = None
        model = self.queryset.model
        left = model._base_manager.using(self.queryset.db).filter(pk__in=self.pks)
        outside, _names = self._values(left.exclude(pk__in=self.get_queryset().values("pk")))
        rows = [*self.records, *({c: row[c] for c in columns} for row in outside.iterator())]
        rows += [self._as_record(old, columns) for old in self.olds]
        keys: set[Key] = set()
        for item in importer.convert(iter(rows), self):
            if isinstance(item, SourceRow):
                keys.add(item.key)
            elif isinstance(item, RowError) and item.key is not None:
                keys.add(item.key)
        importer.rows_read = 0  # the run counts its own read
        return keys

    def _as_record(self, old: dict[str, Any], columns: list[str]) -> dict[str, Any]:
        """A row as captured (by database column) as the source gives it (by its columns)."""
        model = self.queryset.model
        paths = self.fields if isinstance(self.fields, dict) else {c: c for c in columns}
        record: dict[str, Any] = {}
        for column, path in paths.items():
            try:
                record[column] = old.get(str(getattr(model._meta.get_field(path), "column", path)))
            except Exception:  # noqa: BLE001 - a path through a relation: not in the row
                record[column] = None
        return record


@dataclass
class Outcome:
    """What one call of :func:`consume` did."""

    #: "idle" (nothing to do), "paused", "busy" (another run of the job holds its lock),
    #: "waiting" (its target is unavailable: djsync.realtime.outage), "applied" or "failed".
    state: str
    changes: int = 0
    run: SyncRun | None = None
    parked: int = 0
    error: str = ""


def consume(job: SyncJob | int, *, limit: int | None = None) -> Outcome:
    """Claim one batch of ``job``'s pending changes and apply it as one run."""
    job = job if isinstance(job, SyncJob) else SyncJob.objects.get(pk=job)
    if not job.realtime or job.realtime_paused or not job.enabled:
        return Outcome("paused")
    if outage.waiting_until(job) is not None:  # its target is down: the next try is later
        return Outcome("waiting")
    export = is_export(job)
    if export and limit is None:  # one run rewrites the file for all of them
        limit = int(settings.REALTIME_BATCH) * EXPORT_BATCHES
    batch = queue.claim(job, limit=limit)
    if batch is None:
        return Outcome("idle")
    if locks.job_lock(job.pk).holder():  # a full run of the job: after it
        queue.release(batch, delay=1)
        return Outcome("busy", len(batch))
    try:
        # An export writes its file whole: the run exports every row as it is now, which
        # covers every change claimed (and any committed since: those find nothing to do).
        base = None if export else capture.source_of(job)
        source = None if base is None else ChangedRows(base, batch)
        with _acknowledged(job, batch):
            run = orchestrator.run(
                job, source=source, trigger=SyncRun.Trigger.REALTIME, delete_guard=1.0
            )
    except RunLocked as exc:  # lost the race for the lock: no attempt counted
        queue.release(batch, delay=1)
        _forget(getattr(exc, "run", None))
        return Outcome("busy", len(batch))
    except Exception as exc:  # noqa: BLE001 - recorded on the run, and on the changes
        failed: SyncRun | None = getattr(exc, "run", None)
        error = failed.error if failed is not None and failed.error else orchestrator.cause(exc)
        if outage.unavailable(exc):  # not the rows: the batch waits whole, nothing parked
            outage.failed(job, batch, error)
            return Outcome("waiting", len(batch), failed, 0, error)
        parked = queue.failed(batch, error)
        if parked.changes:
            logger.warning("djsync: job %s parked %s changes: %s", job.name, parked.changes, error)
            parking.parked(job, parked, error)
        return Outcome("failed", len(batch), failed, parked.changes, error)
    queue.done(batch)
    outage.recovered(job)
    history.count(job, changes=len(batch), rows=run.created + run.updated + run.deleted)
    if not (run.created or run.updated or run.deleted or run.errors or run.warnings):
        _forget(run)  # nothing changed: no run in the history for it
        return Outcome("applied", len(batch))
    named = None if base is None else str(base)
    return Outcome("applied", len(batch), history.join(run, source=named))


#: The batch being applied in this thread, for :func:`_ack`.
_applying: contextvars.ContextVar[queue.Batch | None] = contextvars.ContextVar(
    "djsync_realtime_batch", default=None
)


@contextmanager
def _acknowledged(job: SyncJob, batch: queue.Batch) -> Iterator[None]:
    """While ``batch`` is applied to a model on djsync's own database, its changes are
    deleted inside the apply's transaction, at its first written batch of rows
    (``batch_applied``): they go if and only if the apply commits. Elsewhere (another
    database, an API) they are deleted after the run succeeds; a consumer that dies in
    between leaves them to be applied again, which changes nothing (the diff)."""
    importer = get_importer_class(job.importer)
    model = getattr(importer, "model", None)
    if model is None or importer.target_class is not None:
        yield
        return
    uid = f"djsync.realtime.ack.{model._meta.label}"
    batch_applied.connect(_ack, sender=model, dispatch_uid=uid)
    token = _applying.set(batch)
    try:
        yield
    finally:
        _applying.reset(token)
        batch_applied.disconnect(sender=model, dispatch_uid=uid)


def _ack(sender: Any, run: Any = None, using: str | None = None, **kwargs: Any) -> None:
    batch = _applying.get()
    if batch is None or batch.acknowledged or run is None:
        return
    if run.trigger != SyncRun.Trigger.REALTIME or using != router.db_for_write(PendingChange):
        return
    queue.done(batch)
    batch.acknowledged = True


def _forget(run: SyncRun | None) -> None:
    if run is not None and run.pk:
        SyncRun.objects.filter(pk=run.pk).delete()


def drain(
    job: SyncJob | int,
    *,
    seconds: float | None = None,
    on_batch: Callable[[Outcome], object] | None = None,
) -> list[Outcome]:
    """Consume batches until nothing is available, the job is busy or paused, or
    ``seconds`` have passed (REALTIME_DRAIN_SECONDS); the outcomes of the batches."""
    job_id = job if isinstance(job, int) else job.pk
    cache.delete(queue.wake_key(job_id))  # changes committed from now on wake a new consumer
    budget = float(settings.REALTIME_DRAIN_SECONDS if seconds is None else seconds)
    deadline = time.monotonic() + budget
    outcomes: list[Outcome] = []
    while True:
        outcome = consume(job_id)
        outcomes.append(outcome)
        tried = outcome.state in ("applied", "failed") or outcome.run is not None
        if tried and on_batch is not None:
            on_batch(outcome)
        if outcome.state in ("idle", "paused", "busy", "waiting"):
            return outcomes
        if time.monotonic() >= deadline:
            return outcomes


def follow(
    job: SyncJob,
    *,
    stop: Callable[[], bool],
    on_batch: Callable[[Outcome], object] | None = None,
) -> None:
    """Consume ``job``'s changes in this process until ``stop()`` is true: after each
    NOTIFY of its trigger (PostgreSQL), and every REALTIME_POLL seconds in any case."""
    capture.install(job)
    followed = SyncJob.objects.filter(pk=job.pk)
    lease = timedelta(seconds=FOLLOW_LEASE)
    renewed = 0.0
    try:
        for _woken in _wakeups(stop):
            if time.monotonic() - renewed > FOLLOW_LEASE / 3:  # its trigger NOTIFYs meanwhile
                followed.update(realtime_followed_until=timezone.now() + lease)
                renewed = time.monotonic()
            drain(job.pk, seconds=float("inf"), on_batch=on_batch)
    finally:
        followed.update(realtime_followed_until=None)


#: Seconds the trigger keeps notifying after a ``runsync --follow`` last renewed its lease
#: (about every third of it, between two batches; a batch longer than the lease lets
#: the trigger stop notifying until the next renewal, and the poll takes over).
FOLLOW_LEASE = 60


def _wakeups(stop: Callable[[], bool]) -> Iterator[None]:
    """Yield at once, then after each NOTIFY on CHANNEL or poll interval, until ``stop()``."""
    using = router.db_for_write(PendingChange)
    listening = capture.uses_triggers(using)
    connection = connections[using]
    if listening:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {capture.CHANNEL}")
    poll = max(float(settings.REALTIME_POLL), 0.05)
    try:
        while not stop():
            yield None
            if listening:
                raw = connection.connection
                select.select([raw.fileno()], [], [], min(poll, 0.5))
                for _note in raw.notifies(timeout=0, stop_after=1000):
                    pass  # drained: one wake-up for any number of notes
            else:
                time.sleep(min(poll, 0.5))
    finally:
        if listening and connection.connection is not None:
            with connection.cursor() as cursor:
                cursor.execute(f"UNLISTEN {capture.CHANNEL}")

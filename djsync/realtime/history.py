"""The compact record of a real-time job: its batches gathered into few runs, and what its
consumer applied minute by minute (its throughput).

A busy job consumes several batches a second; one run each would flood the history. So a
successful batch joins the job's open real-time run — the job's latest run, succeeded,
started less than ``REALTIME_RUN_WINDOW`` seconds ago, holding fewer than
``REALTIME_RUN_CHANGES`` changes: its counts are added, its changes and row errors move
to it, and its end moves to the batch's. A failed batch stays a run of its own, and a run
of any other kind closes the open one: the history reads in order.

The batch is applied and recorded as a run of its own first, through the orchestrator, so
its guarantees are those of every run (its changes acknowledged in the apply's
transaction); joining happens after, in a transaction of its own. A consumer that dies in
between leaves the batch a run of its own: nothing is lost, the history is one run longer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, router, transaction
from django.db.models import F, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.models import ConsumedMinute, SyncChange, SyncJob, SyncRowError, SyncRun

__all__ = ["Throughput", "count", "join", "throughput"]

#: Counts a joined run adds up, on the run and in each model's ``stats``.
COUNTS = ("created", "updated", "deleted", "unchanged", "errors")
STAT_COUNTS = (*COUNTS, "rows_read", "rows_in_scope", "refused")
#: Warnings a joined run keeps (the first ones).
MOST_WARNINGS = 50
#: Minutes of counts kept per job.
KEEP_MINUTES = 24 * 60


def join(run: SyncRun, *, source: str | None) -> SyncRun:
    """Add the successful batch's ``run`` to its job's open real-time run, if there is one,
    and delete it; the run that holds the batch now. ``source`` names the job's source
    (None: the open run keeps its source's name, e.g. an export's)."""
    window = float(settings.REALTIME_RUN_WINDOW)
    if window <= 0 or run.status != SyncRun.Status.SUCCEEDED:
        return run
    using = router.db_for_write(SyncRun)
    since = (run.finished_at or timezone.now()) - timedelta(seconds=window)
    most = int(settings.REALTIME_RUN_CHANGES)
    with transaction.atomic(using=using):
        runs = SyncRun.objects.using(using).filter(job_id=run.job_id).exclude(pk=run.pk)
        latest = runs.order_by("-created_at", "-pk").values_list("pk", flat=True).first()
        if latest is None:
            return run
        opened = _locked(SyncRun.objects.using(using).filter(pk=latest)).first()
        if (
            opened is None
            or opened.trigger != SyncRun.Trigger.REALTIME
            or opened.status != SyncRun.Status.SUCCEEDED
            or opened.started_at is None
            or opened.started_at < since
            or _changes(opened) + _changes(run) > most
        ):
            return run
        SyncChange.objects.using(using).filter(run=run).update(run=opened)
        SyncRowError.objects.using(using).filter(run=run).update(run=opened)
        for name in (*COUNTS, "rows_read", "rows_applied"):
            setattr(opened, name, getattr(opened, name) + getattr(run, name))
        opened.stats = _stats(opened.stats or {}, run.stats or {})
        opened.warnings = list(dict.fromkeys([*(opened.warnings or []), *(run.warnings or [])]))
        opened.warnings = opened.warnings[:MOST_WARNINGS]
        opened.finished_at = run.finished_at
        opened.source_name = (
            _("%(count)s changed rows of %(name)s") % {"count": opened.rows_read, "name": source}
        )[:500]
        opened.save(
            update_fields=[
                *COUNTS,
                "rows_read",
                "rows_applied",
                "stats",
                "warnings",
                "finished_at",
                "source_name",
            ]
        )
        SyncRun.objects.using(using).filter(pk=run.pk).delete()
    return opened


def _locked(runs: Any) -> Any:
    from django.db import connections

    if connections[runs.db].features.has_select_for_update:
        return runs.select_for_update()
    return runs  # SQLite: one writer at a time already


def _changes(run: SyncRun) -> int:
    return run.created + run.updated + run.deleted + run.errors


def _stats(into: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """Per-model stats of two runs of one job: counts added, the rest as the newer says."""
    merged = dict(into)
    for model, stats in more.items():
        before = merged.get(model) or {}
        joined = {**before, **stats}
        for name in STAT_COUNTS:
            if isinstance(before.get(name), int) and isinstance(stats.get(name), int):
                joined[name] = before[name] + stats[name]
        merged[model] = joined
    return merged


def _minute(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


def count(job: SyncJob | int, *, changes: int, rows: int) -> None:
    """Note that ``job``'s consumer applied ``changes`` captured changes, writing ``rows``
    target rows, this minute (one row per job and minute, a day of them kept)."""
    job_id = job if isinstance(job, int) else job.pk
    using = router.db_for_write(ConsumedMinute)
    minute = _minute(timezone.now())
    minutes = ConsumedMinute.objects.using(using).filter(job_id=job_id)
    added = {"changes": F("changes") + changes, "rows": F("rows") + rows}
    if minutes.filter(minute=minute).update(**added):
        return
    try:
        with transaction.atomic(using=using):
            ConsumedMinute.objects.using(using).create(
                job_id=job_id, minute=minute, changes=changes, rows=rows
            )
    except IntegrityError:  # another consumer created it meanwhile
        minutes.filter(minute=minute).update(**added)
        return
    minutes.filter(minute__lt=minute - timedelta(minutes=KEEP_MINUTES)).delete()


@dataclass
class Throughput:
    """What a job's consumer applied over its last ``minutes``."""

    minutes: int
    #: Captured changes consumed, and target rows written, in that time.
    changes: int
    rows: int
    #: The seconds the figures cover (a little over ``minutes``: whole minutes are counted).
    seconds: float

    @property
    def changes_per_minute(self) -> float:
        return self.changes * 60 / self.seconds if self.seconds else 0.0

    @property
    def rows_per_minute(self) -> float:
        return self.rows * 60 / self.seconds if self.seconds else 0.0


def throughput(job: SyncJob | int, minutes: int = 1) -> Throughput:
    """Changes consumed per minute by ``job`` over its last ``minutes`` (1 to a day): the
    counts of the minute under way and of the ``minutes`` before it, over the time they
    cover. Reads at most ``minutes + 1`` rows, through their unique index."""
    minutes = max(1, min(int(minutes), KEEP_MINUTES))
    now = timezone.now()
    start = _minute(now) - timedelta(minutes=minutes)
    found = ConsumedMinute.objects.using(router.db_for_read(ConsumedMinute)).filter(
        job=job, minute__gte=start
    )
    sums = found.aggregate(changes=Sum("changes"), rows=Sum("rows"))
    return Throughput(
        minutes=minutes,
        changes=sums["changes"] or 0,
        rows=sums["rows"] or 0,
        seconds=(now - start).total_seconds(),
    )

"""The pending changes of a job: claimed in batches, deleted once applied, backed off and
parked when they keep failing.

A claim is a lease: the claimed rows are locked (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so two consumers never take the same rows) and marked unavailable until the
lease ends. A consumer that dies mid-batch leaves them to be claimed again when it runs
out: nothing is lost. Applying them again is harmless, because a batch applies the
source's current rows through the diff: what the target holds already is unchanged.

A change that failed is retried alone with its key (so one bad row does not hold back the
others), after a backoff that doubles each time; after ``REALTIME_MAX_ATTEMPTS`` it is
parked, for a person to retry or discard in the admin. Attempts, parking, retry and discard
go by key, since a batch applies a key's current row whatever its changes were: a key's
changes share their attempts, park together, and a change of a parked key that comes later
waits parked with them (applied alone, it would skip the rows before of the parked ones).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, router, transaction
from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.models import PendingChange, SyncJob

__all__ = [
    "Batch",
    "Parked",
    "claim",
    "discard",
    "done",
    "failed",
    "lag",
    "release",
    "retry",
    "with_their_keys",
]


@dataclass
class Batch:
    """Claimed changes of one job, coalesced: each key once, in the order of its first change."""

    job_id: int
    ids: list[int]
    #: The source primary keys (as text) that changed, each once.
    keys: list[str]
    #: The rows as they were before updates and deletes (where their target rows are).
    olds: list[dict[str, Any]] = field(default_factory=list)
    #: When the oldest change of the batch was captured.
    first_at: datetime | None = None
    #: True when the batch retries changes that failed before (one key).
    retrying: bool = False
    #: True once its changes were deleted inside the apply's transaction.
    acknowledged: bool = False

    def __len__(self) -> int:
        return len(self.ids)


def wake_key(job_id: int) -> str:
    """The cache key set while a consumer of ``job_id`` is on its way (djsync.tasks.wake)."""
    return f"djsync:realtime:wake:{job_id}"


def _db() -> str:
    return router.db_for_write(PendingChange)


def pending(job: SyncJob | int) -> QuerySet[PendingChange]:
    """The job's changes that are not parked."""
    return PendingChange.objects.using(_db()).filter(job=job, parked_at__isnull=True)


def claim(job: SyncJob | int, *, limit: int | None = None) -> Batch | None:
    """Take the next batch of ``job``'s available changes (None: nothing to do): up to
    ``limit`` changes in order, leaving out the keys that wait for a retry; else a change
    due for its retry, alone with its key."""
    limit = int(limit or settings.REALTIME_BATCH)
    job_id = job if isinstance(job, int) else job.pk
    now = timezone.now()
    lease = now + timedelta(seconds=float(settings.REALTIME_CLAIM_TTL))
    parked_keys = _park_arrivals(job_id, now)
    available = pending(job_id).filter(Q(available_at__isnull=True) | Q(available_at__lte=now))
    if parked_keys is not None:
        available = available.exclude(key__in=parked_keys)
    waiting = pending(job_id).filter(attempts__gt=0).values("key")
    found = _take(available.filter(attempts=0).exclude(key__in=waiting), limit, lease)
    retrying = False
    if not found:
        due = available.filter(attempts__gt=0).order_by("id").values_list("key", flat=True)
        key = due.first()
        if key is None:
            return None
        found, retrying = _take(available.filter(key=key), limit, lease), True
        if not found:
            return None
    found.sort(key=lambda row: row[0])
    olds = [json.loads(old) if isinstance(old, str) else old for _i, _k, old, _t in found]
    return Batch(
        job_id=job_id,
        ids=[row[0] for row in found],
        keys=list(dict.fromkeys(row[1] for row in found)),
        olds=[old for old in olds if isinstance(old, dict)],
        first_at=min(row[3] for row in found),
        retrying=retrying,
    )


def _park_arrivals(job_id: int, now: datetime) -> QuerySet[PendingChange, Any] | None:
    """Park the changes that came for keys already parked (they wait with their key); the
    parked keys, or None when the job has none (the usual case: one indexed look-up)."""
    parked = PendingChange.objects.using(_db()).filter(job=job_id, parked_at__isnull=False)
    if not parked.exists():
        return None
    keys = parked.values("key")
    pending(job_id).filter(key__in=keys).update(
        parked_at=now, error=_("waits with the parked changes of its key")
    )
    return keys


def _take(rows: QuerySet[PendingChange], limit: int, lease: datetime) -> list[Any]:
    """Lease the first ``limit`` of ``rows``: ``(id, key, old, created_at)`` of each. On
    PostgreSQL one statement (``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)
    RETURNING``); elsewhere a select and an update in a transaction."""
    using = rows.db
    connection = connections[using]
    columns = ("id", "key", "old", "created_at")
    if connection.vendor == "postgresql":
        # One statement, atomic in itself: FOR UPDATE written here, since Django refuses
        # it outside a transaction block.
        chosen = rows.order_by("id").values("id")[:limit]
        sql, params = chosen.query.get_compiler(using).as_sql()
        table = connection.ops.quote_name(PendingChange._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET available_at = %s "
                f"WHERE id IN ({sql} FOR UPDATE SKIP LOCKED) "
                f"RETURNING {', '.join(connection.ops.quote_name(c) for c in columns)}",
                [lease, *params],
            )
            return list(cursor.fetchall())
    with transaction.atomic(using=using):
        found = list(_locked(rows.order_by("id")).values_list(*columns)[:limit])
        if found:
            ids = [row[0] for row in found]
            PendingChange.objects.using(using).filter(id__in=ids).update(available_at=lease)
    return found


def _locked(queryset: QuerySet[PendingChange]) -> QuerySet[PendingChange]:
    """Rows locked for this claim, skipping those another consumer is claiming."""
    if connections[queryset.db].features.has_select_for_update_skip_locked:
        return queryset.select_for_update(skip_locked=True)
    return queryset  # SQLite: one writer at a time already


def done(batch: Batch) -> int:
    """The batch was applied: its changes go. Returns how many."""
    deleted, _ = PendingChange.objects.using(_db()).filter(id__in=batch.ids).delete()
    return deleted


def release(batch: Batch, *, delay: float = 0.0) -> None:
    """Give the batch back untouched (its job was busy): available again after ``delay``."""
    when = timezone.now() + timedelta(seconds=delay)
    PendingChange.objects.using(_db()).filter(id__in=batch.ids).update(available_at=when)


def backoff(attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: REALTIME_BACKOFF doubled each time, capped."""
    first = float(settings.REALTIME_BACKOFF)
    return min(first * 2 ** max(attempts - 1, 0), float(settings.REALTIME_BACKOFF_MAX))


@dataclass
class Parked:
    """The changes a failed batch parked: how many, and their keys (source primary keys)."""

    changes: int = 0
    keys: list[str] = field(default_factory=list)


def failed(batch: Batch, error: str) -> Parked:
    """The batch failed with ``error``: one attempt more for each of its keys (a key's
    changes share the count), a retry after the backoff, and every change of a key parked
    after REALTIME_MAX_ATTEMPTS. Returns what was parked now."""
    using = _db()
    now = timezone.now()
    most = int(settings.REALTIME_MAX_ATTEMPTS)
    error = error[:2000]
    with transaction.atomic(using=using):
        rows = PendingChange.objects.using(using).filter(id__in=batch.ids, parked_at__isnull=True)
        found = list(rows.values_list("id", "key", "attempts"))
        tries: dict[str, int] = {}
        for _id, key, attempts in found:
            tries[key] = max(tries.get(key, 0), attempts + 1)
        parking = [key for key, attempts in tries.items() if attempts >= most]
        by_attempts: dict[int, list[int]] = {}
        for change_id, key, _attempts in found:
            if tries[key] < most:
                by_attempts.setdefault(tries[key], []).append(change_id)
        for attempts, ids in by_attempts.items():
            when = now + timedelta(seconds=backoff(attempts))
            PendingChange.objects.using(using).filter(id__in=ids).update(
                attempts=attempts, error=error, available_at=when
            )
        parked = 0
        if parking:  # the key's every change, those outside this batch too
            parked = (
                pending(batch.job_id)
                .filter(key__in=parking)
                .update(attempts=most, error=error, parked_at=now)
            )
    return Parked(parked, parking)


def with_their_keys(changes: QuerySet[PendingChange]) -> QuerySet[PendingChange]:
    """``changes`` and every other change of their keys (in their jobs): what a retry or a
    discard acts on, since a key is applied, parked and retried as a whole."""
    pairs = changes.order_by().values_list("job_id", "key").distinct()
    by_job: dict[int, set[str]] = {}
    for job_id, key in pairs.iterator():
        by_job.setdefault(job_id, set()).add(key)
    where = Q(pk__in=[])
    for job_id, keys in by_job.items():
        where |= Q(job_id=job_id, key__in=sorted(keys))
    return PendingChange.objects.using(changes.db).filter(where)


def retry(changes: QuerySet[PendingChange]) -> int:
    """Parked (or backed-off) changes, with every change of their keys, given a new start:
    consumed at the next batch. Returns how many."""
    return with_their_keys(changes).update(parked_at=None, attempts=0, available_at=None, error="")


def discard(changes: QuerySet[PendingChange]) -> int:
    """Changes dropped without being applied, with every change of their keys (the next
    full run makes up for them). Returns how many."""
    deleted, _ = with_their_keys(changes).delete()
    return deleted


@dataclass
class Lag:
    """How far behind a job's consumer is."""

    pending: int
    parked: int
    #: When the oldest change not yet consumed was captured (None: none waits).
    oldest: datetime | None

    @property
    def seconds(self) -> float:
        return 0.0 if self.oldest is None else (timezone.now() - self.oldest).total_seconds()


def lag(job: SyncJob | int) -> Lag:
    """Pending and parked changes of ``job``, and the age of the oldest pending one."""
    counts = PendingChange.objects.using(_db()).filter(job=job)
    found = counts.aggregate(
        pending=Count("id", filter=Q(parked_at__isnull=True)),
        parked=Count("id", filter=Q(parked_at__isnull=False)),
        oldest=Min("created_at", filter=Q(parked_at__isnull=True)),
    )
    return Lag(pending=found["pending"], parked=found["parked"], oldest=found["oldest"])


def jobs_with_work() -> list[int]:
    """Ids of the enabled, unpaused real-time jobs with changes available now."""
    now = timezone.now()
    return list(
        PendingChange.objects.using(_db())
        .filter(parked_at__isnull=True, job__realtime=True, job__realtime_paused=False)
        .filter(job__enabled=True)
        .filter(Q(available_at__isnull=True) | Q(available_at__lte=now))
        .order_by()
        .values_list("job_id", flat=True)
        .distinct()
    )

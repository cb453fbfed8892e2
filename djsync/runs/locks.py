"""One run per job, and one writer per model, at a time: locks with a time to live,
renewed by the run's heartbeat.

Two backends, one contract (``acquire``/``renew``/``release``/``holder``):

- :class:`RedisLock` — redis-py's :class:`redis.lock.Lock` (``SET NX PX`` with the owner
  token, renewed and released by Lua scripts that check the token); the default when the
  Celery broker is Redis, so workers on several machines share it.
- :class:`DatabaseLock` — a lease row in djsync's ``SyncLock`` table, claimed with a
  conditional ``UPDATE``; works on every database, for projects without Redis.

Both expire on their own: a worker that dies stops renewing its lock, and the job is free
again ``LOCK_TTL`` seconds later.

A run takes its job's lock, then one lock per model it writes (every model of a
multi-model job), always in the same order (sorted by name) so that two runs never wait on
each other: two jobs that write one model run one after the other (:func:`acquire_run`).
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.exceptions import ConfigurationError, RunLocked

#: Prefix of lock names, in Redis and in the SyncLock table.
PREFIX = "djsync:job:"
#: Prefix of the lock of a target model (``djsync:model:default:shop.Product``).
MODEL_PREFIX = "djsync:model:"


class JobLock:
    """A named lock held by one owner token for ``ttl`` seconds unless renewed."""

    #: Longest pause, in seconds, between two tries while waiting for a lock.
    poll = 0.5

    def __init__(self, name: str, *, ttl: float, owner: str | None = None) -> None:
        self.name = name
        self.ttl = ttl
        #: Who holds it: the run id plus a random part, so a stale holder cannot release it.
        self.owner = owner or uuid.uuid4().hex

    def acquire(self, wait: float = 0) -> bool:
        """Take the lock if it is free (or expired), waiting up to ``wait`` seconds for
        its holder to let go; with no wait, never blocks."""
        deadline = time.monotonic() + wait
        while not self.try_acquire():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(self.poll, max(0.05, left)))
        return True

    def try_acquire(self) -> bool:
        """Take the lock if it is free (or expired), at once."""
        raise NotImplementedError

    def renew(self) -> bool:
        """Push the expiry ``ttl`` seconds ahead; False if this owner no longer holds it."""
        raise NotImplementedError

    def release(self) -> None:
        """Give the lock up if this owner still holds it."""
        raise NotImplementedError

    def holder(self) -> str | None:
        """The owner token of whoever holds the lock now, or None if it is free."""
        raise NotImplementedError

    def owned(self) -> bool:
        """Whether this owner holds the lock now."""
        return self.holder() == self.owner


class RedisLock(JobLock):
    """redis-py's :class:`~redis.lock.Lock`, with this lock's owner token as its token.

    The token is not thread-local (``thread_local=False``): the run's heartbeat thread
    renews the lock that the run's own thread took and releases. redis-py checks the token
    in every renew and release, so a holder whose lock expired and was taken by another
    run can neither renew nor release it.
    """

    def __init__(
        self,
        name: str,
        *,
        ttl: float,
        owner: str | None = None,
        url: str | None = None,
        client: Any = None,
    ) -> None:
        super().__init__(name, ttl=ttl, owner=owner)
        if client is None and not url:
            raise ConfigurationError("a Redis lock needs a Redis URL or client")
        self.url = url
        #: The redis-py client: given, or one per URL for the whole process.
        self.client = client if client is not None else redis_client(url or "")
        self.lock = self.client.lock(name, timeout=ttl, blocking=False, thread_local=False)

    def acquire(self, wait: float = 0) -> bool:
        """Take the lock, redis-py waiting up to ``wait`` seconds (``blocking_timeout``)."""
        return bool(self.lock.acquire(blocking=wait > 0, blocking_timeout=wait, token=self.owner))

    def try_acquire(self) -> bool:
        return self.acquire()

    def renew(self) -> bool:
        from redis.exceptions import LockError

        if self.lock.local.token is None:  # never taken, or given up
            return False
        try:
            return bool(self.lock.reacquire())  # the ttl again, if the token is still ours
        except LockError:  # LockNotOwnedError: it expired, and maybe another run took it
            return False

    def release(self) -> None:
        from redis.exceptions import LockError

        if self.lock.local.token is None:
            return
        try:
            self.lock.release()
        except LockError:  # no longer ours: it expired (and may be another run's now)
            pass

    def holder(self) -> str | None:
        value = self.client.get(self.name)
        return value.decode() if isinstance(value, bytes) else value


@functools.cache
def redis_client(url: str) -> Any:
    """One redis-py client (and connection pool) per URL in a process; redis-py gives a
    forked worker process its own connections."""
    from djsync.extras import require

    redis = require("redis", "the Redis lock backend (the LOCK_BACKEND setting)")
    return redis.Redis.from_url(url, socket_timeout=10)


class DatabaseLock(JobLock):
    """A lease row: claimed when absent or expired, renewed and expired only by its owner.

    Released leases stay as expired rows, so that taking the lock again is one ``UPDATE``.

    Each statement runs on its own (autocommit) so that other processes see the lease at
    once; on SQLite a lease taken inside a write transaction is seen when that commits.
    """

    def __init__(self, name: str, *, ttl: float, owner: str | None = None) -> None:
        super().__init__(name, ttl=ttl, owner=owner)
        from djsync.models import SyncLock

        self.model = SyncLock
        self.using = router.db_for_write(SyncLock)

    def _rows(self) -> Any:
        return self.model._default_manager.using(self.using).filter(name=self.name)

    def try_acquire(self) -> bool:
        now = timezone.now()
        expires = now + timedelta(seconds=self.ttl)
        if self._rows().filter(expires_at__lt=now).update(owner=self.owner, expires_at=expires):
            return True
        try:
            with transaction.atomic(using=self.using):
                self.model._default_manager.using(self.using).create(
                    name=self.name, owner=self.owner, expires_at=expires
                )
        except IntegrityError:
            return False
        return True

    def renew(self) -> bool:
        expires = timezone.now() + timedelta(seconds=self.ttl)
        return bool(self._rows().filter(owner=self.owner).update(expires_at=expires))

    def release(self) -> None:
        self._rows().filter(owner=self.owner).update(expires_at=timezone.now() - timedelta(1))

    def holder(self) -> str | None:
        return (
            self._rows()
            .filter(expires_at__gte=timezone.now())
            .values_list("owner", flat=True)
            .first()
        )


def backend() -> str:
    """The lock backend in use: the LOCK_BACKEND setting, "auto" resolved."""
    choice = settings.LOCK_BACKEND
    if choice == "auto":
        return "redis" if _redis_url() else "database"
    if choice not in ("redis", "database"):
        raise ConfigurationError(
            f'DJSYNC["LOCK_BACKEND"] must be "auto", "redis" or "database", not {choice!r}'
        )
    return choice


def _redis_url() -> str | None:
    if settings.LOCK_REDIS_URL:
        return settings.LOCK_REDIS_URL
    try:
        from celery import current_app
    except ImportError:  # no Celery (the djsync[celery] extra): no broker to lock on
        return None
    url = str(current_app.conf.broker_url or "")
    return url if url.startswith(("redis://", "rediss://", "unix://")) else None


def job_lock(job_id: int, *, owner: str | None = None) -> JobLock:
    """The lock of one job, on the configured backend."""
    return _lock(PREFIX, str(job_id), owner=owner)


def model_lock(label: str, using: str = "default", *, owner: str | None = None) -> JobLock:
    """The lock of one target model (``app_label.Model``) on one database alias."""
    return _lock(MODEL_PREFIX, f"{using}:{label}", owner=owner)


def _lock(prefix: str, name: str, *, owner: str | None) -> JobLock:
    ttl = float(settings.LOCK_TTL)
    if backend() == "redis":
        url = _redis_url()
        if not url:
            raise ConfigurationError(
                'the Redis lock needs DJSYNC["LOCK_REDIS_URL"] or a Redis Celery broker'
            )
        return RedisLock(f"{prefix}{_database_name()}:{name}", ttl=ttl, owner=owner, url=url)
    return DatabaseLock(f"{prefix}{name}", ttl=ttl, owner=owner)


class LockSet(JobLock):
    """A run's locks as one: its job's lock first, then one per target model, sorted.

    Taken in that fixed order, each waiting out LOCK_WAIT, so two runs never hold one lock
    each and wait for the other's; renewed and released together."""

    def __init__(self, locks: list[JobLock], owner: str) -> None:
        super().__init__(locks[0].name, ttl=locks[0].ttl, owner=owner)
        self.locks = locks
        self.held: list[JobLock] = []

    def acquire(self, wait: float = 0) -> bool:
        """Take the locks not held yet in order, all within ``wait`` seconds."""
        deadline = time.monotonic() + wait
        for lock in self.locks[len(self.held) :]:
            if not lock.acquire(max(0.0, deadline - time.monotonic())):
                return False
            self.held.append(lock)
        return True

    def try_acquire(self) -> bool:
        return self.acquire()

    def renew(self) -> bool:
        held = self.held
        if held and all(isinstance(lock, DatabaseLock) for lock in held):
            # One statement for every lease: on SQLite each write waits its turn.
            first: DatabaseLock = held[0]  # type: ignore[assignment]
            expires = timezone.now() + timedelta(seconds=self.ttl)
            manager = first.model._default_manager.using(first.using)
            names = [lock.name for lock in held]
            renewed = manager.filter(name__in=names, owner=self.owner).update(expires_at=expires)
            return renewed == len(held)
        return all([lock.renew() for lock in held])

    def release(self) -> None:
        for lock in reversed(self.held):
            lock.release()
        self.held = []

    def holder(self) -> str | None:
        return self.locks[0].holder()

    def blocker(self) -> JobLock | None:
        """The first lock not taken yet (the one another run holds)."""
        return self.locks[len(self.held)] if len(self.held) < len(self.locks) else None


def in_sqlite(lock: JobLock) -> bool:
    """Whether ``lock`` is a lease row (or leases) in a SQLite database."""
    held = lock.locks if isinstance(lock, LockSet) else [lock]
    return any(
        isinstance(each, DatabaseLock) and connections[each.using].vendor == "sqlite"
        for each in held
    )


def _database_name() -> str:
    """Part of a Redis lock's name, so projects (and test runs) sharing a Redis never meet."""
    from django.db import connections

    from djsync.models import SyncJob

    return str(connections[router.db_for_write(SyncJob)].settings_dict["NAME"])


def owner_token(run_id: int) -> str:
    """A lock owner that names the run holding it (``run:12:3f9c…``)."""
    return f"run:{run_id}:{uuid.uuid4().hex[:12]}"


def run_of(owner: str | None) -> int | None:
    """The run id inside an owner token made by :func:`owner_token`."""
    if owner and owner.startswith("run:"):
        try:
            return int(owner.split(":")[1])
        except (IndexError, ValueError):
            return None
    return None


def acquire(job_id: int, run_id: int, *, wait: float | None = None) -> JobLock:
    """Take the job's lock for a run, waiting up to ``wait`` seconds (LOCK_WAIT).

    Raises :class:`RunLocked` naming the run that holds it.
    """
    return acquire_run(job_id, run_id, models=(), wait=wait)


def acquire_run(
    job_id: int,
    run_id: int,
    *,
    models: Iterable[tuple[str, str]] = (),
    wait: float | None = None,
) -> JobLock:
    """Take the job's lock, then the lock of each model the run writes (``(label,
    database alias)`` pairs) in sorted order, waiting up to ``wait`` seconds in all
    (LOCK_WAIT). Raises :class:`RunLocked` naming the run — and for a model, the job —
    that holds the lock; the locks taken so far are given back."""
    owner = owner_token(run_id)
    parts = [job_lock(job_id, owner=owner)]
    wanted = sorted(set(models), key=lambda m: (m[1], m[0]))
    parts += [model_lock(label, using, owner=owner) for label, using in wanted]
    lock = parts[0] if len(parts) == 1 else LockSet(parts, owner)
    wait = float(settings.LOCK_WAIT if wait is None else wait)
    if not lock.acquire(wait):
        refused = _("this run #%(run_id)s was refused%(value)s") % {
            "run_id": run_id,
            "value": f" after waiting {wait:g} s" if wait else "",
        }
        blocker = lock.blocker() if isinstance(lock, LockSet) else lock
        lock.release()
        raise RunLocked(_locked_message(blocker or parts[0], refused))
    return lock


def _locked_message(lock: JobLock, refused: str) -> str:
    other = run_of(lock.holder())
    if MODEL_PREFIX not in lock.name:
        who = f"run #{other}" if other else _("another run")
        return _("%(who)s of this job is active; one run per job at a time (%(refused)s)") % {
            "who": who,
            "refused": refused,
        }
    label = lock.name.rsplit(":", 1)[-1]
    job = _job_name(other)
    who = (
        _("job %(job)r (run #%(other)s)") % {"job": job, "other": other}
        if job
        else f"run #{other}"
        if other
        else _("another run")
    )
    return _("%(who)s is writing model %(label)s; one run per model at a time (%(refused)s)") % {
        "who": who,
        "label": label,
        "refused": refused,
    }


def _job_name(run_id: int | None) -> str | None:
    if run_id is None:
        return None
    from djsync.models import SyncRun

    return SyncRun.objects.filter(pk=run_id).values_list("job__name", flat=True).first()

"""Change capture: each write to a real-time job's source model becomes a ``PendingChange``,
in the write's own transaction.

On PostgreSQL a row-level trigger per job (django-pgtrigger, the ``djsync[realtime]``
extra) records inserts, updates and deletes whoever makes them: ``save()``, ``bulk_create``,
``bulk_update``, ``QuerySet.update()``, raw SQL, another program. While ``runsync
--follow`` listens for the job (``SyncJob.realtime_followed_until``), it also sends a ``NOTIFY
djsync_realtime`` with the job's id: only then, because PostgreSQL serializes the commits
of the transactions that NOTIFY (one per WAL flush: some 800 commits/s on a small disk).

On other databases (SQLite) ``post_save`` and ``post_delete`` receivers write the change
instead. They see only what Django saves one object at a time: ``bulk_create``,
``bulk_update``, ``QuerySet.update()``/``delete()`` without signals and raw SQL are missed
(docs/realtime.md), and an update keeps no "before" (a changed natural key leaves the old
target row to the next full run).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connections, models, router, transaction
from django.utils.translation import gettext as _

from djsync.exceptions import ConfigurationError
from djsync.extras import require
from djsync.models import PendingChange, SyncJob

if TYPE_CHECKING:
    from djsync.sources.querysets import QuerySetSource

logger = logging.getLogger("djsync")

#: The channel of the NOTIFY a captured change sends (payload: the job's id).
CHANNEL = "djsync_realtime"
#: Name of a job's trigger (and of its function) on the source table: prefix + job id.
TRIGGER_PREFIX = "djsync_rt_"


# -- which model a job captures ------------------------------------------------------------
def source_of(job: SyncJob) -> QuerySetSource:
    """The job's source, checked for real-time use: one importer, a queryset source, on the
    database that holds djsync's tables (the change must be written in its transaction).
    An export's source is its importer's model, in scope: a change to it rewrites the file."""
    from djsync.exports.step import is_export
    from djsync.runs.job_sources import make_source
    from djsync.runs.steps import is_multi, make_importer
    from djsync.sources.querysets import QuerySetSource

    if is_multi(job):
        raise ConfigurationError(
            _("job %(name)r: real-time sync takes a job with one importer") % {"name": job.name}
        )
    importer = make_importer(job)
    if is_export(job):
        source: Any = QuerySetSource(queryset=importer.get_scope(importer.get_queryset()))
    else:
        source = make_source(job, importer)
    if not isinstance(source, QuerySetSource):
        raise ConfigurationError(
            _(
                "job %(name)r: real-time sync needs a queryset source (a Django model), not "
                "%(source)s"
            )
            % {"name": job.name, "source": source}
        )
    ours = router.db_for_write(PendingChange)
    if source.database != ours:
        raise ConfigurationError(
            _(
                "job %(name)r: the source reads database %(db)r; real-time capture writes each "
                "change in its transaction, so the source must be on djsync's database %(ours)r"
            )
            % {"name": job.name, "db": source.database, "ours": ours}
        )
    return source


def check(job: SyncJob) -> None:
    """Raise ConfigurationError (or ImproperlyConfigured naming the extra) if ``job`` cannot
    be real-time here: its source (:func:`source_of`), and django-pgtrigger on PostgreSQL."""
    source_of(job)
    if uses_triggers(router.db_for_write(PendingChange)):
        require("pgtrigger", _("real-time capture on PostgreSQL"))


def source_model(job: SyncJob) -> type[models.Model]:
    """The concrete model whose table a real-time job captures."""
    return source_of(job).queryset.model._meta.concrete_model  # type: ignore[return-value]


def uses_triggers(using: str) -> bool:
    """Whether changes on this database are captured by triggers (PostgreSQL)."""
    return connections[using].vendor == "postgresql"


# -- PostgreSQL: one trigger per job -------------------------------------------------------
def trigger_for(job_id: int, model: type[models.Model]) -> Any:
    """The django-pgtrigger trigger that captures ``model``'s changes for job ``job_id``:
    only while the job exists and is real-time, so that a trigger left behind (a job
    switched off by ``update()``, deleted in SQL) never fails nor burdens a write."""
    pgtrigger = require("pgtrigger", _("real-time capture on PostgreSQL"))
    table = connections[router.db_for_write(PendingChange)].ops.quote_name(
        PendingChange._meta.db_table
    )
    jobs = connections[router.db_for_write(PendingChange)].ops.quote_name(SyncJob._meta.db_table)
    pk = connections[router.db_for_write(model)].ops.quote_name(model._meta.pk.column)
    label = model._meta.label.replace("'", "''")
    func = f"""
        IF TG_OP = 'UPDATE' THEN
            before := to_jsonb(OLD);
            IF before = to_jsonb(NEW) THEN RETURN NULL; END IF;
        ELSIF TG_OP = 'DELETE' THEN
            before := to_jsonb(OLD);
        END IF;
        SELECT coalesce(realtime_followed_until > clock_timestamp(), false) INTO listened
        FROM {jobs} WHERE id = {int(job_id)} AND realtime;
        IF NOT FOUND THEN RETURN NULL; END IF;
        INSERT INTO {table} (job_id, model, key, operation, old, created_at, attempts, error)
        VALUES (
            {int(job_id)}, '{label}',
            (CASE WHEN TG_OP = 'DELETE' THEN OLD.{pk} ELSE NEW.{pk} END)::text,
            CASE TG_OP WHEN 'INSERT' THEN 'create' WHEN 'UPDATE' THEN 'update' ELSE 'delete' END,
            before, clock_timestamp(), 0, ''
        );
        IF listened THEN
            PERFORM pg_notify('{CHANNEL}', '{int(job_id)}');
        END IF;
        RETURN NULL;
    """

    class CaptureTrigger(pgtrigger.Trigger):  # type: ignore[name-defined]
        def get_pgid(self, model: Any) -> str:
            # Not "pgtrigger_…": pgtrigger's own prune leaves a trigger it did not register.
            return f"{TRIGGER_PREFIX}{int(job_id)}"

    return CaptureTrigger(
        name=f"{TRIGGER_PREFIX}{int(job_id)}",
        when=pgtrigger.After,
        operation=pgtrigger.Insert | pgtrigger.Update | pgtrigger.Delete,
        level=pgtrigger.Row,
        declare=[("before", "jsonb"), ("listened", "boolean")],
        func=func,
    )


def installed_triggers(using: str) -> dict[int, str]:
    """Job id → table of every capture trigger installed on the database ``using``."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT tgname, tgrelid::regclass::text FROM pg_trigger WHERE tgname LIKE %s",
            [TRIGGER_PREFIX.replace("_", r"\_") + "%"],
        )
        found = {}
        for name, table in cursor.fetchall():
            suffix = name[len(TRIGGER_PREFIX) :]
            if suffix.isdigit():
                found[int(suffix)] = table
        return found


def install(job: SyncJob) -> bool:
    """Install (or bring up to date) the capture of ``job``'s source model; True if the
    database uses triggers. Idempotent: an up-to-date trigger is left alone."""
    model = source_model(job)
    using = router.db_for_write(PendingChange)
    if not uses_triggers(using):
        return False
    trigger = trigger_for(job.pk, model)
    status, _enabled = trigger.get_installation_status(model, database=using)
    if status != "INSTALLED":
        trigger.install(model, database=using)
    return True


def uninstall(job_id: int, using: str | None = None) -> None:
    """Remove job ``job_id``'s capture trigger and its function, wherever it is."""
    using = using or router.db_for_write(PendingChange)
    if not uses_triggers(using):
        return
    table = installed_triggers(using).get(job_id)
    name = f"{TRIGGER_PREFIX}{int(job_id)}"
    with connections[using].cursor() as cursor:
        if table is not None:
            cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        cursor.execute(f"DROP FUNCTION IF EXISTS {name}() CASCADE")


def sync_capture(using: str | None = None) -> dict[str, list[str]]:
    """Make the installed triggers match the real-time jobs: install the missing or
    outdated ones, remove those of jobs that are gone or no longer real-time. Jobs that
    cannot capture (not a queryset source) are reported, not raised."""
    using = using or router.db_for_write(PendingChange)
    report: dict[str, list[str]] = {"installed": [], "removed": [], "errors": []}
    if not uses_triggers(using):
        return report
    wanted = set()
    for job in SyncJob.objects.using(using).filter(realtime=True):
        try:
            install(job)
        except ConfigurationError as exc:
            report["errors"].append(str(exc))
            continue
        wanted.add(job.pk)
        report["installed"].append(job.name)
    for job_id in set(installed_triggers(using)) - wanted:
        uninstall(job_id, using)
        report["removed"].append(str(job_id))
    return report


# -- every database: signals (SQLite captures with them; PostgreSQL only wakes up) ----------
def jobs_by_model() -> dict[str, list[int]]:
    """Model label → ids of the real-time jobs that capture it (read from the database; a
    job whose source cannot be built is left out: its consumer reports why)."""
    found: dict[str, list[int]] = {}
    try:  # in a savepoint: a database without djsync's tables yet breaks no transaction
        with transaction.atomic(using=router.db_for_read(SyncJob)):
            jobs = list(SyncJob.objects.filter(realtime=True))
    except DatabaseError:
        jobs = []
    for job in jobs:
        try:
            found.setdefault(source_model(job)._meta.label, []).append(job.pk)
        except Exception:  # noqa: BLE001 - the job's consumer reports its configuration
            continue
    return found


def capture(jobs: list[int], instance: models.Model, operation: str, using: str, old: Any) -> None:
    """Write the change of ``instance`` for each of ``jobs`` (the signal fallback: on a
    database without triggers), in the transaction of the write."""
    label = instance._meta.concrete_model._meta.label  # type: ignore[union-attr]
    PendingChange.objects.using(using).bulk_create(
        PendingChange(job_id=j, model=label, key=str(instance.pk), operation=operation, old=old)
        for j in jobs
    )

"""System checks on stored jobs: a job whose source or target no longer passes the trust
policy (docs/security.md) is reported by ``manage.py check``, so a site knows what to fix
after upgrading."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.db import DatabaseError

from djsync.exceptions import DjsyncError

#: Jobs looked at per check (a check must stay fast; the rest fail when they run).
MAX_JOBS_CHECKED = 1000


def check_jobs(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Every stored job's source and export target must pass djsync.sources.policy."""
    from djsync.models import SyncJob

    messages: list[checks.CheckMessage] = []
    try:
        jobs = list(SyncJob.objects.order_by("name")[:MAX_JOBS_CHECKED])
    except DatabaseError:  # not migrated yet, or no database: nothing stored to check
        return messages
    for job in jobs:
        problem = job_problem(job)
        if problem:
            messages.append(
                # A warning, not an error: errors would stop `migrate` (which rewrites old
                # jobs) and every other command; the job itself fails with this message.
                checks.Warning(
                    problem,
                    hint='Edit the job\'s source/target to pick what DJSYNC["FILE_ROOTS"], '
                    'DJSYNC["SQL_QUERIES"] and its importer declare (docs/security.md).',
                    obj=job,
                    id="djsync.W010",
                )
            )
    return messages


def job_problem(job: Any) -> str | None:
    """Why ``job`` would be refused before reading anything, or None."""
    from djsync.exports.jobs import check_target, is_export
    from djsync.runs.steps import make_importer, make_importers, make_source

    try:
        if is_export(job):
            check_target(job, make_importer(job))
        else:
            for importer in make_importers(job):
                if job.source or importer.source:
                    make_source(job, importer)
    except DjsyncError as exc:
        message = str(exc)
        return (
            message if message.startswith(f"job {job.name!r}") else f"job {job.name!r}: {message}"
        )
    except Exception as exc:  # noqa: BLE001 - a check reports, it never breaks `check`
        return f"job {job.name!r}: {type(exc).__name__}: {exc}"
    return None


def source_problem(importer: str, source: Any, *, name: str = "") -> str | None:
    """Why a job with this importer (one name or several, comma-separated) and ``source``
    would be refused (djsync.sources.policy), or None: for the admin's job form."""
    from djsync.mapping.registry import get_importer_class
    from djsync.models import SyncJob
    from djsync.sources import get_source

    try:
        for each in filter(None, (n.strip() for n in (importer or "").split(","))):
            get_importer_class(each)
        known = bool(importer)
    except Exception:  # noqa: BLE001 - an unregistered importer is the importer field's error
        known = False
    if not known:  # check the source alone
        try:
            get_source(source, job=name)
        except DjsyncError as exc:
            return str(exc)
        return None
    problem = job_problem(SyncJob(name=name, importer=importer, source=source))
    prefix = f"job {name!r}: "
    return problem[len(prefix) :] if problem and problem.startswith(prefix) else problem

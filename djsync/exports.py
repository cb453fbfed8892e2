"""Export runs: a job whose target is a file writes its model's rows in scope to that file.

"Everything is an import from the target's side": an export reads the importer's model
(its scope, through its mapping, so the file can be synced back) and writes a file. It is
recorded as a run like any other. The admin's export action calls :func:`export_queryset`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.utils import timezone

from .exceptions import ConfigurationError
from .models import SyncJob, SyncRun
from .targets.files import Columns, ExportResult, export_formats, export_queryset

__all__ = [
    "Columns",
    "ExportResult",
    "export_formats",
    "export_job",
    "export_queryset",
    "export_run",
    "is_export",
]

TARGET_OPTIONS = frozenset({"kind", "path", "format", "neutralize_formulas", "filter"})


def is_export(job: SyncJob) -> bool:
    """True when the job's target is a file rather than its importer's model."""
    return (job.target or {}).get("kind") == "file"


def export_job(
    job: str | SyncJob,
    *,
    path: str | Path | None = None,
    format: str | None = None,
    trigger: str = SyncRun.Trigger.API,
    user: Any = None,
) -> SyncRun:
    """Write the job's model rows (in the importer's scope) to a file; return the run.

    ``path`` overrides the job's target path (placeholders such as ``{date}`` are filled),
    so any job can be exported, e.g. ``runsync products --export out.xlsx``. On failure the
    run is recorded as failed and the error raised with the run as ``exc.run``.
    """
    from .services import fail, get_job

    job = get_job(job)
    sync_run = SyncRun.objects.create(
        job=job,
        trigger=trigger,
        user=user if getattr(user, "pk", None) else None,
        status=SyncRun.Status.READING,
        started_at=timezone.now(),
    )
    try:
        return export_run(sync_run, path=path, format=format)
    except Exception as exc:
        fail(sync_run, exc)
        exc.run = sync_run  # type: ignore[attr-defined]
        raise


def export_run(
    sync_run: SyncRun, *, path: str | Path | None = None, format: str | None = None
) -> SyncRun:
    """Carry out an export on a run already recorded (``services.execute`` calls this)."""
    from .services import make_importer

    job = sync_run.job
    options = dict(job.target or {}) if is_export(job) else {}
    unknown = set(options) - TARGET_OPTIONS
    if unknown:
        raise ConfigurationError(
            f"job {job.name!r}: unknown target options {', '.join(sorted(unknown))}"
        )
    destination = path or options.get("path")
    if not destination:
        raise ConfigurationError(f"job {job.name!r}: give the export a path")
    importer = make_importer(job)
    queryset = importer.get_scope(importer.get_queryset())
    if options.get("filter"):
        queryset = queryset.filter(**options["filter"])
    sync_run.source_name = importer.label
    sync_run.status = SyncRun.Status.READING
    SyncRun.objects.filter(pk=sync_run.pk).update(
        status=sync_run.status, source_name=sync_run.source_name
    )
    result = export_queryset(
        queryset,
        destination,
        format=format or options.get("format"),
        importer=importer,
        neutralize_formulas=options.get("neutralize_formulas", True),
        job=job.name,
    )
    sync_run.rows_read = sync_run.rows_applied = result.rows
    sync_run.stats = {
        importer.label: {
            "exported": result.rows,
            "path": str(result.path),
            "format": result.format,
        }
    }
    sync_run.status = SyncRun.Status.SUCCEEDED
    sync_run.finished_at = timezone.now()
    sync_run.save()
    return sync_run

"""Export jobs: a job whose target is a file, run through the same engine as every target.

The job's step (djsync.exports.step) compares the model's rows in scope with the file
already at the path and writes a :class:`~djsync.targets.file.FileTarget`: dry runs,
``runsync --diff``, previews, limits and history as for any target (docs/exports.md).
"Everything is an import from the target's side." The admin's export actions call
:func:`export_queryset`, a plain download with no run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.utils import timezone

from djsync.exports.files import Columns, ExportResult, export_formats, export_queryset
from djsync.exports.step import TARGET_OPTIONS, ExportTo, check_target, is_export
from djsync.models import SyncJob, SyncRun

__all__ = [
    "TARGET_OPTIONS",
    "Columns",
    "ExportResult",
    "ExportTo",
    "check_target",
    "export_formats",
    "export_job",
    "export_queryset",
    "is_export",
]


def export_job(
    job: str | SyncJob,
    *,
    path: str | Path | None = None,
    format: str | None = None,
    dry_run: bool = False,
    trigger: str = SyncRun.Trigger.API,
    user: Any = None,
) -> SyncRun:
    """Run an export: the job's model rows (in the importer's scope) into its file, or into
    ``path`` (any job can be exported so); return the run.

    It is a run like any other (djsync.runs.orchestrator): compared with the file already
    there, recorded, a dry run writes nothing. On failure the run is recorded as failed and
    the error raised with the run as ``exc.run``.
    """
    from djsync.runs.orchestrator import execute, new_run

    sync_run = new_run(
        job,
        trigger=trigger,
        dry_run=dry_run,
        user=user,
        options={},
        status=SyncRun.Status.READING,
        started_at=timezone.now(),
    )
    export = ExportTo(path, format) if path is not None else None
    return execute(sync_run, export=export)

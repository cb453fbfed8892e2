"""Which watch a job can have: its incremental source polled with the saved cursor
("cursor"), or its drop folder polled for new files ("folder")."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.exceptions import DjsyncError
from djsync.exports.step import is_export
from djsync.mapping.registry import get_importer_class, split_names
from djsync.models import SyncJob
from djsync.runs.job_sources import source_options

#: The watch modes, by what their source options say.
CURSOR, FOLDER = "cursor", "folder"


def watch_mode(job: SyncJob) -> str | None:
    """FOLDER when the job's source is a drop folder, CURSOR when a source of the job
    reads incrementally, else None (a job that reads everything is not polled)."""
    if is_export(job):
        return None
    mode = None
    names = split_names(job.importer)
    for name in names:
        try:
            importer = get_importer_class(name)
            if len(names) > 1:
                base, options = source_options(job, importer)
            else:
                base = dict(importer.source or {})
                options = dict(job.source or {}) if isinstance(job.source, dict) else {}
        except DjsyncError:
            return None
        kind = options.get("kind", base.get("kind", "file"))
        merged: dict[str, Any] = (
            {**base, **options} if base.get("kind", "file") == kind else options
        )
        if kind == "drop":
            return FOLDER
        if merged.get("incremental"):
            mode = CURSOR
    return mode


def watch_problem(job: SyncJob) -> str | None:
    """Why ``job`` cannot be watched every ``job.watch`` seconds, or None."""
    if job.watch is not None and watch_mode(job) is None:
        return _(
            'Only a job whose source reads incrementally ("incremental": {"column": …}) or '
            'is a drop folder ("kind": "drop") can be watched.'
        )
    return None


def interval(job: SyncJob) -> float:
    """Seconds between the polls of ``job``: its watch setting, else the shortest allowed."""
    return float(job.watch or settings.WATCH_MIN_INTERVAL)

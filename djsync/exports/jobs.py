"""Export runs: a job whose target is a file writes its model's rows in scope to that file.

"Everything is an import from the target's side": an export reads the importer's model
(its scope, through its mapping, so the file can be synced back) and writes a file. It is
recorded as a run like any other. The admin's export action calls :func:`export_queryset`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext, gettext_noop

from djsync.exceptions import ConfigurationError
from djsync.exports.files import Columns, ExportResult, export_formats, export_queryset, render_path
from djsync.models import SyncJob, SyncRun

__all__ = [
    "Columns",
    "ExportResult",
    "export_formats",
    "export_job",
    "export_queryset",
    "export_run",
    "is_export",
]

#: What an export job's ``target`` (data, untrusted) may set.
TARGET_OPTIONS = frozenset({"kind", "root", "path", "format", "neutralize_formulas", "filter"})
#: Lookups a target filter may use on one of the importer's mapped fields (no relation path:
#: a filter that follows relations could probe other tables, e.g. a user's password).
FILTER_LOOKUPS = frozenset(
    {
        "exact",
        "iexact",
        "in",
        "gt",
        "gte",
        "lt",
        "lte",
        "range",
        "isnull",
        "contains",
        "icontains",
        "startswith",
        "istartswith",
        "endswith",
        "iendswith",
        "year",
        "month",
        "day",
    }
)


def is_export(job: SyncJob) -> bool:
    """True when the job's target is a file rather than its importer's model."""
    return isinstance(job.target, dict) and job.target.get("kind") == "file"


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
    from djsync.runs.steps import get_job

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
        SyncRun.objects.fail(sync_run, exc)
        exc.run = sync_run  # type: ignore[attr-defined]
        raise


def export_run(
    sync_run: SyncRun, *, path: str | Path | None = None, format: str | None = None
) -> SyncRun:
    """Carry out an export on a run already recorded (``services.execute`` calls this)."""
    from djsync.runs.steps import make_importer

    job = sync_run.job
    options = dict(job.target or {}) if is_export(job) else {}
    importer = make_importer(job)
    destination, filter = check_target(job, importer, path=path)
    queryset = importer.get_scope(importer.get_queryset())
    if filter:
        queryset = queryset.filter(**filter)
    SyncRun.objects.advance(sync_run, SyncRun.Status.READING, source_name=importer.label)
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
    SyncRun.objects.finish(sync_run, SyncRun.Status.SUCCEEDED)
    return sync_run


def check_target(
    job: SyncJob, importer: Any, *, path: str | Path | None = None
) -> tuple[str | Path, dict[str, Any]]:
    """Where an export job writes and its row filter, from its ``target`` (data: checked,
    djsync.sources.policy) unless ``path`` is given by code or the command line."""
    options = dict(job.target or {}) if is_export(job) else {}
    unknown = set(options) - TARGET_OPTIONS
    if unknown:
        raise ConfigurationError(
            gettext(
                "job %(name)r: unknown target options %(sorted)s (a target may set: %(sorted2)s)"
            )
            % {
                "name": job.name,
                "sorted": ", ".join(sorted(unknown)),
                "sorted2": ", ".join(sorted(TARGET_OPTIONS)),
            }
        )
    if path is not None:
        destination: str | Path = path  # from code or the command line: trusted
    elif options.get("path"):
        destination = job_target_path(options.get("path"), options.get("root"), job=job.name)
    else:
        raise ConfigurationError(
            gettext("job %(name)r: give the export a path") % {"name": job.name}
        )
    filter = options.get("filter")
    return destination, check_filter(filter, importer, job=job.name) if filter else {}


def job_target_path(template: Any, root: Any = None, *, job: str) -> str:
    """The real path an export job's target ``path`` names under ``DJSYNC["FILE_ROOTS"]``,
    its placeholders filled ({job} too: a job's name is data as well); refused when it
    leaves its root, as a source path is (djsync.sources.policy.resolve_path)."""
    from djsync.sources.policy import JobContext, resolve_path

    context = JobContext(job=job)
    if not isinstance(template, str) or "\x00" in template or template.startswith("~"):
        resolve_path(
            template, root, context=context, what=gettext_noop("export path")
        )  # refuses these
    real = resolve_path(
        str(render_path(template, job=job)), root, context=context, what=gettext_noop("export path")
    )
    return real.replace("{", "{{").replace("}", "}}")  # export_queryset fills placeholders again


def check_filter(value: Any, importer: Any, *, job: str) -> dict[str, Any]:
    """An export target's ``filter``: plain lookups on the importer's mapped fields only."""
    if not isinstance(value, dict):
        raise ConfigurationError(
            gettext('job %(job)r: the target filter is an object, e.g. {"active": true}')
            % {"job": job}
        )
    fields = set(importer.bound_fields)
    scalar = (str, int, float, bool, type(None))
    for key, item in value.items():
        name, _, lookup = str(key).partition("__")
        if name not in fields or (lookup and lookup not in FILTER_LOOKUPS):
            raise ConfigurationError(
                gettext(
                    "job %(job)r: the target filter cannot use %(key)r: a filter names one of the "
                    "importer's fields (%(sorted)s), optionally with a lookup such as __gte, "
                    "never a relation path"
                )
                % {"job": job, "key": key, "sorted": ", ".join(sorted(fields))}
            )
        items = item if isinstance(item, list) else [item]
        if not all(isinstance(v, scalar) for v in items):
            raise ConfigurationError(
                gettext("job %(job)r: the target filter %(key)r takes plain values")
                % {"job": job, "key": key}
            )
    return dict(value)

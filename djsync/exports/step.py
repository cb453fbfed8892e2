"""An export job's step: its importer pointed at a file, its source the importer's model.

The step reads the model's rows in scope through the importer's mapping (so the file can
be synced back) and writes a :class:`~djsync.targets.file.FileTarget`; the orchestrator runs
it like any step (djsync.runs.steps). A job's ``target`` is data: checked here against
``DJSYNC["FILE_ROOTS"]`` and the importer's fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.utils.translation import gettext, gettext_noop

from djsync.conf import settings
from djsync.exceptions import ConfigurationError
from djsync.exports.files import Columns, format_for, render_path
from djsync.mapping.switches import SWITCH_NAMES, Switches, job_switches
from djsync.models import SyncJob
from djsync.sources.base import Source
from djsync.targets.file import FileTarget

__all__ = [
    "TARGET_OPTIONS",
    "ExportTo",
    "check_target",
    "export_step",
    "export_switches",
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


@dataclass(frozen=True)
class ExportTo:
    """A file to export a job to for one run, given by code or the command line (trusted):
    ``runsync products --export out.xlsx``. Placeholders such as ``{date}`` are filled."""

    path: str | Path
    format: str | None = None
    #: The file as a stored preview compared with it (djsync.targets.file): applying the
    #: preview checks the file is still that one.
    compared: dict[str, Any] | None = None


def export_step(
    job: SyncJob, importer: Any, export: ExportTo | None = None
) -> tuple[FileTarget, Source]:
    """Point ``importer`` at the file its export job names (or ``export``): a
    :class:`FileTarget` in place of its model. Returns the target and the step's source,
    the model's rows in scope."""
    options = dict(job.target or {}) if is_export(job) else {}
    destination, filter = check_target(job, importer, path=export.path if export else None)
    queryset = importer.get_scope(importer.get_queryset())
    if filter:
        queryset = queryset.filter(**filter)
    if not queryset.ordered:  # the same rows in the same order: a file that diffs well
        queryset = queryset.order_by("pk")
    path = render_path(destination, job=job.name)
    fmt = format_for(path, (export.format if export else None) or options.get("format"))
    columns = Columns.for_importer(importer)
    target = FileTarget(
        path,
        format=fmt,
        headers=columns.headers,
        rows=lambda: columns.rows(queryset),
        label=importer.label,
        neutralize_formulas=options.get("neutralize_formulas", True),
        compared=export.compared if export else None,
        count=queryset.count,
    )
    importer.target = target
    return target, ModelRows(queryset, columns, name=importer.label)


class ModelRows(Source):
    """An export's source: the model's rows in scope, one record per row, by the column
    each importer field reads (its mapping in reverse), values as the database gives them."""

    first_row = 1

    def __init__(self, queryset: Any, columns: Columns, *, name: str) -> None:
        self.queryset = queryset
        self.paths = list(columns.paths)
        self.headers = list(columns.headers)
        self.name = name
        self.database = queryset.db
        self.columns = None

    def read(self) -> Iterator[dict[str, Any]]:
        self.columns = self.headers
        rows = self.queryset.values_list(*self.paths).iterator(chunk_size=settings.BATCH_SIZE)
        for row in rows:
            yield dict(zip(self.headers, row, strict=True))


def export_switches(job: SyncJob, options: dict[str, Any]) -> Switches:
    """An export's switches. It writes the file whole, so it always adds, changes and
    removes rows (a run option that forbids one is refused; a job's create/update/delete
    fields do not apply). Its limits, delete guard and row-error rule come from the job
    and the run, not the importer: the importer's are about writing its model."""
    unknown = set(options) - set(SWITCH_NAMES)
    if unknown:
        raise ConfigurationError(f"unknown run options: {', '.join(sorted(unknown))}")
    forbidden = [n for n in ("create", "update", "delete") if options.get(n) is False]
    if forbidden:
        raise ConfigurationError(
            f"job {job.name!r} is an export: it writes the whole file, so it cannot run "
            f"without {', '.join(forbidden)}; use the limits (max_*) to stop a large change"
        )
    given = {k: v for k, v in job_switches(job).items() if k not in ("create", "update", "delete")}
    switches = Switches(delete_guard=settings.DELETE_GUARD).with_overrides(**given)
    return switches.with_overrides(**{**options, "create": True, "update": True, "delete": True})


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

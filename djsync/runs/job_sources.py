"""A job's sources: what each step of a run reads — the job's source options (data, checked
by djsync.sources.policy), the importer's (code), or a file given for the run (runsync
``--file``, an admin upload), which in a multi-model job stands for the job's shared file.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from django.utils.translation import gettext as _

from djsync.exceptions import ConfigurationError
from djsync.mapping.registry import get_importer_class
from djsync.models import SyncJob
from djsync.runs.steps import importer_names, is_multi
from djsync.sources import FileSource, Source, get_source

if TYPE_CHECKING:
    from djsync.mapping.importers import BaseImporter

__all__ = ["make_source", "reads_job_file", "source_options"]


def make_source(
    job: SyncJob,
    importer: BaseImporter,
    *,
    file: str | Path | IO[bytes] | None = None,
    source_options: dict[str, Any] | None = None,
) -> Source:
    """The source of one step: the job's (for a multi-model job, its entry for this
    importer), or a file given for this run (path or open file) read with the job's
    format options.

    The job's ``source`` is data: it only picks among what the importer and settings
    declare (djsync.sources.policy). The importer's ``source``, ``file`` and
    ``source_options`` (``runsync --encoding/--format``) come from code and are trusted.
    """
    if is_multi(job):
        return _step_source(job, importer, file=file, file_options=source_options)
    base = dict(importer.source or {})
    job_options = dict(job.source or {}) if isinstance(job.source, dict) else job.source
    if file is None:
        if not base and not job_options:
            raise ConfigurationError(
                _("job %(name)r has no source; give it a file") % {"name": job.name}
            )
        if source_options and isinstance(job_options, dict):
            extra = {k: v for k, v in source_options.items() if v is not None}
            job_options = {**job_options, **extra}  # plain format options, checked as a job's
        return get_source(job_options or {}, base=base, importer=importer, job=job.name)
    options = {**base, **(job_options if isinstance(job_options, dict) else {})}
    return _given_file(options, file, source_options)


def _given_file(
    options: dict[str, Any], file: str | Path | IO[bytes], source_options: dict[str, Any] | None
) -> Source:
    """A file given for this run, read with the format options of the source it stands
    for (``options``) and of the run (``source_options``)."""
    options = {**options, **(source_options or {})}
    keep = {
        k: options[k]
        for k in ("encoding", "delimiter", "sheet")
        if isinstance(options.get(k), str | int) and not isinstance(options.get(k), bool)
    }
    if source_options and "format" in source_options:
        keep["format"] = source_options["format"]
    if isinstance(file, str | Path):
        return FileSource(file, **keep)
    return FileSource(file=file, name=getattr(file, "name", None), **keep)


def source_options(
    job: SyncJob, importer: BaseImporter | type[BaseImporter]
) -> tuple[dict[str, Any], Any]:
    """Options of one importer's source in a multi-model job: its own defaults (code,
    trusted), and the job's (data, checked by djsync.sources.policy): the shared options
    and the job's ``"sources": {"<importer name>": {...}}`` entry for it."""
    shared = dict(job.source or {}) if isinstance(job.source, dict) else {}
    own = shared.pop("sources", {}) or {}
    if not isinstance(own, dict):
        raise ConfigurationError(
            _("job %(name)r: source 'sources' must map importer names") % {"name": job.name}
        )
    names = importer_names(job)
    unknown = [str(name)[:60] for name in own if name not in names]
    if unknown:
        more = (
            _(" and %(unknown)s more") % {"unknown": len(unknown) - 3} if len(unknown) > 3 else ""
        )
        raise ConfigurationError(
            _(
                "job %(name)r: sources names %(map)s%(more)s, not an importer of this job "
                "(%(names)s)"
            )
            % {
                "name": job.name,
                "map": ", ".join(map(repr, unknown[:3])),
                "more": more,
                "names": ", ".join(names),
            }
        )
    mine = own.get(importer.name) or {}
    if not isinstance(mine, dict):
        raise ConfigurationError(
            _("job %(name)r: sources[%(name2)r] is not an object")
            % {"name": job.name, "name2": importer.name}
        )
    if mine.get("kind", shared.get("kind", "file")) != shared.get("kind", "file"):
        return dict(importer.source or {}), dict(mine)  # another kind: shared ones do not apply
    return dict(importer.source or {}), {**shared, **mine}


def reads_job_file(job: SyncJob, importer: BaseImporter | type[BaseImporter]) -> bool:
    """Whether an importer of a multi-model job reads the job's shared file (the ``path``
    of its source options; its own entry names no file, nor another kind): a file given
    for the run (an upload) stands for that one."""
    base, options = source_options(job, importer)
    own = (job.source or {}).get("sources") or {} if isinstance(job.source, dict) else {}
    mine = own.get(importer.name) if isinstance(own, dict) else None
    kind = options.get("kind", base.get("kind", "file"))
    return kind in ("file", "drop") and not (isinstance(mine, dict) and "path" in mine)


def _step_source(
    job: SyncJob,
    importer: BaseImporter,
    file: Any = None,
    file_options: dict[str, Any] | None = None,
) -> Source:
    """One step's source in a multi-model job. A file given for the run is read by each
    importer that reads the job's shared file (:func:`reads_job_file`), and by the derived
    sources that take their rows from one of those."""
    if file is not None and reads_job_file(job, importer):
        return _given_file(_merged(job, importer), file, file_options)
    if file is not None and not any(
        reads_job_file(job, get_importer_class(name)) for name in importer_names(job)
    ):
        raise ConfigurationError(
            _(
                "job %(name)r gives each importer a file of its own; a file for the run stands "
                "for the job's shared file (its source's \"path\"), which none of them reads"
            )
            % {"name": job.name}
        )
    base, options = source_options(job, importer)
    if not base and not options:
        raise ConfigurationError(
            _("job %(name)r: importer %(name2)s has no source")
            % {"name": job.name, "name2": importer.name}
        )

    def sibling(name: str) -> tuple[dict[str, Any], Any, Any] | Source:
        if name not in importer_names(job):
            raise ConfigurationError(
                _(
                    "job %(name)r: %(name2)s derives from %(name3)r, which is not an importer of "
                    "this job"
                )
                % {"name": job.name, "name2": importer.name, "name3": name}
            )
        cls = get_importer_class(name)
        if file is not None and reads_job_file(job, cls):
            return _given_file(_merged(job, cls), file, file_options)
        return (*source_options(job, cls), cls)

    return get_source(options, base=base, importer=importer, job=job.name, sibling=sibling)


def _merged(job: SyncJob, importer: Any) -> dict[str, Any]:
    base, options = source_options(job, importer)
    return {**base, **(options if isinstance(options, dict) else {})}

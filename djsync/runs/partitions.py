"""One big run split across Celery workers: its source read in ranges, applied once.

A run of a job with ``partitions`` > 1 (or ``runsync --partitions N``) is carried out in
three parts, each a function the Celery tasks of djsync.tasks call (a chord: a group of
partitions, then one callback):

1. :func:`prepare` (the worker that claimed the run): checks that the run may be split
   (:func:`unsupported`), cuts its source into ranges (djsync.runs.partition_specs: a CSV
   file's byte ranges, a partition column's key ranges, an API's pages) and creates the
   run's shared staging (djsync.backends.partitioned).
2. :func:`load_partition` (one task per range, on any worker): reads and converts its rows
   and COPYs them into the run's staging, replacing what an earlier attempt left.
3. :func:`finish` (the chord's callback): classifies and applies the whole run in one
   transaction through the orchestrator, under the job's lock, as one process would — the
   same preview, limits, delete guard, row errors and history.

A partition that fails after its retries, or a cancel, ends the run with nothing written;
a file's range that cannot be read on its own makes the last step read the file in one
process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from django.db import connections
from django.utils import timezone
from django.utils.translation import gettext as _

from djsync.backends import choose, partitioned
from djsync.backends.postgresql import PostgresPlan
from djsync.backends.staged import LIVE
from djsync.conf import settings
from djsync.exceptions import ConfigurationError, PartitionError, RunCancelled, SourceError
from djsync.exports.step import is_export
from djsync.models import MAX_PARTITIONS, SyncJob, SyncRun
from djsync.runs import job_sources, orchestrator, partition_specs, steps
from djsync.runs.lifecycle import RUNNING
from djsync.runs.monitor import cancel_requested, progress_using, write_progress
from djsync.runs.progress import snapshot
from djsync.sources import FileSource, Source

logger = logging.getLogger("djsync")


def check(partitions: Any) -> int:
    """A number of partitions asked for (a run option or a job's setting), or an error."""
    if isinstance(partitions, bool) or not isinstance(partitions, int):
        raise ConfigurationError(_("partitions must be a whole number"))
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise ConfigurationError(
            _("partitions must be from 1 to %(max)s, not %(value)s")
            % {"max": MAX_PARTITIONS, "value": partitions}
        )
    return partitions


def wanted(sync_run: SyncRun) -> int:
    """How many partitions the run asks for (its own option, else its job's setting)."""
    return int(sync_run.partitions or sync_run.job.partitions or 1)


def unsupported(job: SyncJob, importer: Any, source: Source) -> str | None:
    """Why a run of ``job`` reading ``source`` cannot be split (None: it can)."""
    if steps.is_multi(job) or is_export(job):
        return _("only a single-model import job is split")
    vendor = connections[importer.using].vendor
    if vendor != "postgresql":
        return _("partitions need PostgreSQL (the target database is %(vendor)s)") % {
            "vendor": vendor
        }
    path = choose(importer, source)
    if not path.staged:
        return _("the run takes the generic path (%(why)s)") % {"why": path.detail}
    return partition_specs.unsplittable(source)


def _source(sync_run: SyncRun, importer: Any) -> Source:
    """The run's source as a single process builds it: its upload, or the job's."""
    job = sync_run.job
    if sync_run.upload:
        from djsync.uploads import storage

        try:
            path = storage().path(sync_run.upload)
        except NotImplementedError:
            path = None
        fmt = Path(sync_run.upload).suffix.lstrip(".") or None
        if path is None:
            return job_sources.make_source(job, importer, source_options={"format": fmt})
        source = job_sources.make_source(job, importer, file=path, source_options={"format": fmt})
        if isinstance(source, FileSource):
            source.name = sync_run.source_name or source.name
        return source
    return job_sources.make_source(job, importer)


# -- 1. cutting the source -------------------------------------------------------------------
def prepare(sync_run: SyncRun) -> list[dict[str, Any]] | None:
    """Cut the run's source and create its shared staging; the specs, one per partition.
    None when the run is read in one process (one partition asked for, or the run cannot
    be split: then a warning on the run says why)."""
    asked = wanted(sync_run)
    if asked <= 1:
        return None
    job = sync_run.job
    todo = steps.make_steps(job, sync_run.options)
    importer, switches = todo[0].importer, todo[0].switches
    source = _source(sync_run, importer)
    found = unsupported(job, importer, source) or _cut(source, asked)
    if isinstance(found, str):
        _note(
            sync_run,
            _("read in one process, not in %(n)s partitions: %(why)s") % {"n": asked, "why": found},
        )
        return None
    specs, columns = found
    _drop_leftovers(importer.using)
    importer.match_columns(columns, source)
    plan = PostgresPlan(importer, switches)  # its columns only: never staged itself
    LIVE.difference_update((plan.src, plan.act))
    partitioned.create(sync_run.pk, plan, [spec["total"] for spec in specs])
    SyncRun.objects.filter(pk=sync_run.pk).update(
        partitions=len(specs), source_name=str(source)[:500]
    )
    sync_run.partitions = len(specs)
    return [{**spec, "name": str(source), "columns": columns} for spec in specs]


def _cut(source: Source, asked: int) -> partition_specs.Cut | str:
    """The source cut into specs; a source that fails while it is cut (an API down, a
    query refused) is read in one process, which retries it and reports it as always."""
    try:
        return partition_specs.cut(source, asked)
    except SourceError as exc:
        return _("it could not be cut (%(exc)s)") % {"exc": orchestrator.cause(exc)}


def _drop_leftovers(using: str) -> None:
    """Drop the staging tables of split runs that ended without their last step (every
    worker of a partition died, say): each run drops its own otherwise."""
    for run_id in partitioned.leftovers(using):
        if not SyncRun.objects.filter(pk=run_id, status__in=RUNNING).exists():
            partitioned.drop(run_id, using)


def _note(sync_run: SyncRun, message: str) -> None:
    """Read in one process: the run says why among its warnings once it is recorded."""
    sync_run.partitions = 1
    SyncRun.objects.filter(pk=sync_run.pk).update(partitions=1)
    sync_run.partitions_note = message  # type: ignore[attr-defined]


def add_note(sync_run: SyncRun) -> None:
    """Add the note of :func:`_note` to the run's warnings (after the run recorded its own)."""
    note = getattr(sync_run, "partitions_note", None)
    if note:
        sync_run.warnings = [*(sync_run.warnings or []), note]
        SyncRun.objects.filter(pk=sync_run.pk).update(warnings=sync_run.warnings)


# -- 2. a partition --------------------------------------------------------------------------
def load_partition(run_id: int, spec: dict[str, Any], *, last_attempt: bool = True) -> str:
    """Read one range of the run's file into its shared staging. A cancelled or ended run
    is not read. A failure on the last attempt ends the run (nothing was written); a
    source error makes the last step read the whole file in one process, which reports it
    as a single process would."""
    sync_run = SyncRun.objects.select_related("job").filter(pk=run_id).first()
    if sync_run is None or sync_run.status not in RUNNING or cancel_requested(run_id):
        return "skipped"
    job = sync_run.job
    step = steps.make_steps(job, sync_run.options)[0]
    using = step.importer.using
    try:
        with _heartbeat(run_id):
            _load(sync_run, step, spec)
            record_run_progress(run_id, progress_using(), unit=spec.get("unit", "bytes"))
    except RunCancelled as exc:
        _end(sync_run, exc, using)
        return "cancelled"
    except Exception as exc:
        if last_attempt:
            _end(sync_run, _failed(exc, spec["part"], spec["parts"]), using)
        raise
    return "loaded"


def _load(sync_run: SyncRun, step: steps.Step, spec: dict[str, Any]) -> None:
    """Stage the partition ``spec``: the run's source as one process builds it, reading
    its range only (djsync.runs.partition_specs), its rows numbered as in the whole source."""
    ranged = partition_specs.narrow(_source(sync_run, step.importer), spec)
    load = partial(
        partitioned.load, sync_run.pk, spec["part"], step.importer, ranged, step.switches
    )
    try:
        load(progress=_partition_progress(sync_run, spec, ranged))
    except SourceError as exc:
        if spec.get("kind", "bytes") != "bytes":
            raise  # a query or a page that fails: the partition fails (after its retries)
        load(refused=str(exc) or type(exc).__name__)  # read as one process: exact message
    finally:
        partition_specs.close(ranged)


@contextmanager
def _heartbeat(run_id: int) -> Iterator[None]:
    """The run's heartbeat while a partition works, from a thread: a split run holds no
    lock until its last step, so its heartbeat alone tells it is alive
    (djsync.runs.monitor.is_stale)."""
    stop = threading.Event()
    alias = progress_using()

    def beat() -> None:
        try:
            while not stop.wait(float(settings.HEARTBEAT_INTERVAL)):
                write_progress(run_id, alias, heartbeat_at=timezone.now())
        finally:
            connections.close_all()

    write_progress(run_id, alias, heartbeat_at=timezone.now())
    thread = threading.Thread(target=beat, name=f"djsync-partition-{run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def _failed(exc: BaseException, part: int, parts: int) -> PartitionError:
    return PartitionError(
        _("partition %(part)s of %(parts)s failed: %(exc)s; nothing was written")
        % {"part": part + 1, "parts": parts, "exc": orchestrator.cause(exc)}
    )


def _end(sync_run: SyncRun, exc: BaseException, using: str) -> None:
    """End the run (failed or cancelled) and drop its shared staging."""
    sync_run.refresh_from_db()
    if sync_run.status in RUNNING:
        orchestrator.fail(sync_run, exc)
    try:
        partitioned.drop(sync_run.pk, using)
    except Exception:  # noqa: BLE001 - the next run of the job drops leftovers
        logger.warning("djsync: could not drop the staging of run %s", sync_run.pk)


def _partition_progress(sync_run: SyncRun, spec: dict[str, Any], source: Source) -> Any:
    """Progress of one partition, and of the run (summed over its partitions), written on
    the progress connection at most twice a second; a cancel stops the partition here."""
    alias = progress_using()
    last = [0.0]
    run_id = sync_run.pk

    def report(rows: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5:
            return
        last[0] = now
        unit = spec.get("unit", "bytes")
        extent = source.extent() if unit == "bytes" else None
        done = rows if unit != "bytes" else extent.done if extent else 0
        partitioned.report(run_id, alias, spec["part"], done=done, rows=rows)
        record_run_progress(run_id, alias, unit=unit)
        if cancel_requested(run_id):
            raise RunCancelled(_("run #%(pk)s was cancelled; nothing was written") % {"pk": run_id})

    return report


def record_run_progress(run_id: int, alias: str, *, unit: str = "bytes") -> None:
    """The run's progress from its partitions': bytes read of the file (or records of the
    source, ``unit``), rows, and each
    partition's own figures under ``partitions``; the reading began when the run's
    first partition said so. A failure is logged: progress must never break a run."""
    try:
        _record_run_progress(run_id, alias, unit)
    except Exception:  # noqa: BLE001
        logger.debug("djsync: could not record the progress of run %s", run_id, exc_info=True)


def _record_run_progress(run_id: int, alias: str, unit: str) -> None:
    each = partitioned.progress_of(run_id, alias)
    before = SyncRun.objects.using(alias).filter(pk=run_id).values_list("progress", flat=True)
    since = float((before.first() or {}).get("since") or time.time())
    rows = sum(p["rows"] for p in each)
    recorded = snapshot(
        "reading",
        since,
        done=sum(p["done"] for p in each),
        total=sum(p["total"] for p in each),
        unit=unit,
        rows=rows,
    )
    recorded["partitions"] = each
    write_progress(run_id, alias, rows_read=rows, heartbeat_at=timezone.now(), progress=recorded)


# -- 3. the whole run, applied once ----------------------------------------------------------
def finish(run_id: int, spec: dict[str, Any]) -> SyncRun | None:
    """Classify and apply the whole run from its staged partitions through the orchestrator;
    when some range could not be read on its own, read the file in one process instead."""
    sync_run = SyncRun.objects.select_related("job").filter(pk=run_id).first()
    if sync_run is None or sync_run.status not in RUNNING:
        return sync_run
    step = steps.make_steps(sync_run.job, sync_run.options)[0]
    using = step.importer.using
    try:
        refused = partitioned.refusals(run_id, using)
        if refused:
            partitioned.drop(run_id, using)
            _note(
                sync_run,
                _("read in one process: %(n)s partitions could not be read apart (%(why)s)")
                % {"n": spec["parts"], "why": "; ".join(refused)[:300]},
            )
            try:
                return orchestrator.execute_queued(sync_run)
            finally:
                add_note(sync_run)
        source = partitioned.LoadedSource(run_id, spec["name"], spec["columns"], spec["parts"])
        return orchestrator.execute(sync_run, source=source)
    finally:
        try:
            partitioned.drop(run_id, using)
        except Exception:  # noqa: BLE001 - an aborted connection: dropped next time
            logger.warning("djsync: could not drop the staging of run %s", run_id)


def run_in_process(sync_run: SyncRun, specs: list[dict[str, Any]]) -> SyncRun | None:
    """The partitions one after another in this process, then the last step: what an eager
    Celery does with the chord (and ``runsync --partitions N`` without a worker)."""
    for spec in specs:
        if load_partition(sync_run.pk, spec) != "loaded":
            break
    else:
        return finish(sync_run.pk, specs[0])
    sync_run.refresh_from_db()
    return sync_run


__all__ = [
    "add_note",
    "check",
    "finish",
    "load_partition",
    "prepare",
    "record_run_progress",
    "run_in_process",
    "unsupported",
    "wanted",
]

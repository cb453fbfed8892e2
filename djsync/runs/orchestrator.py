"""The one orchestrator: every door — runsync, ``djsync.run``, the admin, Celery, beat —
records a run and carries it out here, on one lifecycle (djsync.runs.lifecycle).

A job is a list of steps (djsync.runs.steps: one per importer, parents first); an export is
a step whose target is a file (djsync.exports.step, djsync.targets.file). Each step is
planned on the path :mod:`djsync.backends` chooses; the plans are recorded, and applied
unless the run is a dry run. A stored preview is applied later through
:func:`apply_previewed`, on the same path, after a staleness check where the data is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from django.utils import timezone
from django.utils.translation import gettext as _

from djsync.engine.apply import check_limits
from djsync.exceptions import ConfigurationError, RunLocked, RunStateError, TargetError
from djsync.exports.step import ExportTo
from djsync.mapping.columns import add_run_mapping
from djsync.mapping.switches import JOB_FIELDS, SWITCH_NAMES
from djsync.models import SyncJob, SyncRun
from djsync.runs import incremental, steps
from djsync.runs.lifecycle import cause
from djsync.runs.monitor import guard
from djsync.runs.progress import Progress
from djsync.runs.steps import get_job, make_importer, make_source, resolve_switches
from djsync.sources import Source
from djsync.uploads import release_upload

__all__ = [
    "JOB_FIELDS",
    "SWITCH_NAMES",
    "Progress",
    "apply_previewed",
    "cause",
    "execute",
    "execute_queued",
    "fail",
    "get_job",
    "make_importer",
    "make_source",
    "new_run",
    "resolve_switches",
    "run",
]

logger = logging.getLogger("djsync")


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """The run options that override the job's switches, checked when the run is recorded
    (not on the worker): unknown names and values of the wrong type are refused here.
    Options left as None mean "as the job says" and are dropped."""
    options = {k: v for k, v in options.items() if v is not None}
    unknown = set(options) - set(SWITCH_NAMES)
    if unknown:
        raise ConfigurationError(
            _("unknown run options: %(sorted)s") % {"sorted": ", ".join(sorted(unknown))}
        )
    for name, value in options.items():
        if name in ("create", "update", "delete", "force"):
            ok = isinstance(value, bool)
        elif name == "on_row_error":
            ok = value in ("fail", "skip")
        elif name == "delete_guard":
            ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1
        else:
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        if not ok:
            raise ConfigurationError(
                _("run option %(name)s=%(value)r is not valid") % {"name": name, "value": value}
            )
    return options


def run(
    job: str | SyncJob,
    *,
    file: str | Path | IO[bytes] | None = None,
    dry_run: bool = False,
    trigger: str = SyncRun.Trigger.API,
    user: Any = None,
    source: Source | None = None,
    source_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
    create: bool | None = None,
    update: bool | None = None,
    delete: bool | None = None,
    max_create: int | None = None,
    max_update: int | None = None,
    max_delete: int | None = None,
    max_total: int | None = None,
    delete_guard: float | None = None,
    on_row_error: str | None = None,
    force: bool | None = None,
) -> SyncRun:
    """Run a job now, in this process, and return its recorded run.

    ``create``, ``update``, ``delete``, the ``max_*`` limits, ``delete_guard``,
    ``on_row_error`` and ``force`` override the job's switches for this run (None: as the
    job says). On failure the run is recorded as failed and the error is raised with the
    run attached as ``exc.run``.
    """
    options = {
        "create": create,
        "update": update,
        "delete": delete,
        "max_create": max_create,
        "max_update": max_update,
        "max_delete": max_delete,
        "max_total": max_total,
        "delete_guard": delete_guard,
        "on_row_error": on_row_error,
        "force": force,
    }
    sync_run = new_run(
        job,
        trigger=trigger,
        dry_run=dry_run,
        user=user,
        options=options,
        status=SyncRun.Status.READING,
        started_at=timezone.now(),
    )
    return execute(
        sync_run, file=file, source=source, source_options=source_options, progress=progress
    )


def new_run(
    job: str | SyncJob,
    *,
    trigger: str,
    dry_run: bool,
    user: Any,
    options: dict[str, Any],
    **fields: Any,
) -> SyncRun:
    """Record a run of ``job`` with its options checked (:func:`check_options`)."""
    job = get_job(job)
    return SyncRun.objects.create(
        job=job,
        trigger=trigger,
        dry_run=dry_run,
        user=user if getattr(user, "pk", None) else None,
        options=check_options(options),
        **fields,
    )


def execute_queued(sync_run: SyncRun, *, progress: Progress | None = None) -> SyncRun:
    """Carry out a run a worker claimed (djsync.tasks): from its uploaded file if it has one."""
    from djsync.uploads import open_upload

    if sync_run.upload:
        with open_upload(sync_run.upload) as handle:
            return execute(
                sync_run,
                source=make_source(
                    sync_run.job,
                    make_importer(sync_run.job),
                    file=_named(handle, sync_run),
                    source_options={"format": Path(sync_run.upload).suffix.lstrip(".") or None},
                ),
                progress=progress,
            )
    return execute(sync_run, progress=progress)


def _named(handle: IO[bytes], sync_run: SyncRun) -> IO[bytes]:
    handle.name = sync_run.source_name or handle.name  # type: ignore[misc]
    return handle


def execute(
    sync_run: SyncRun,
    *,
    file: str | Path | IO[bytes] | None = None,
    source: Source | None = None,
    source_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
    export: ExportTo | None = None,
) -> SyncRun:
    """Read and plan every step, record the plans, and (unless a dry run) apply them.

    The job's lock is held throughout (one run per job at a time, see djsync.runs.monitor).
    ``file``, ``source`` and ``source_options`` give a single-importer job's source for
    this run; ``export`` a file to export it to instead (djsync.exports.jobs.export_job).
    """
    progress = progress or Progress()
    job = sync_run.job
    held = ExitStack()
    runs = SyncRun.objects
    try:
        progress = held.enter_context(guard(sync_run, progress))
        todo = steps.make_steps(job, sync_run.options, export=export)
        add_run_mapping([step.importer for step in todo], sync_run.column_mapping)
        held.callback(steps.close, todo)  # staging tables go when the run ends

        reading: list[Source] = []  # the source being read, for its extent

        def source_of(step: steps.Step) -> Source:
            if step.source is not None:  # an export: the model's rows in scope
                return step.source
            if source is not None and not steps.is_multi(job):
                reading[:] = [source]
            else:
                reading[:] = [
                    make_source(job, step.importer, file=file, source_options=source_options)
                ]
            return reading[0]

        steps.plan_steps(
            sync_run,
            todo,
            sources=source_of,
            on_source=lambda names: runs.advance(
                sync_run, SyncRun.Status.READING, progress=progress, source_name=names
            ),
            progress=_read_progress(progress, reading),
        )
        runs.advance(sync_run, SyncRun.Status.DIFFING, progress=progress)
        steps.record_plans(sync_run, todo)
        runs.record(sync_run)  # counts and stats visible while the run applies
        if sync_run.dry_run:
            problems = steps.limit_problems(todo)
            if problems:
                sync_run.error = _("a real run would fail: ") + "; ".join(problems)
            runs.finish(sync_run, SyncRun.Status.PREVIEWED, progress=progress)
            return sync_run
        _apply(sync_run, todo, progress)
        return sync_run
    except Exception as exc:
        fail(sync_run, exc, progress)
        exc.run = sync_run  # type: ignore[attr-defined]
        raise
    finally:
        held.close()


def _apply(
    sync_run: SyncRun, todo: list[steps.Step], progress: Progress, *, stale: bool = False
) -> None:
    """Write the plans (limits checked first; with ``stale``, a stored preview checked
    against the target in the same transaction) and end the run succeeded."""
    for step in todo:
        check_limits(step.plan, step.switches)  # type: ignore[arg-type]
    if not SyncRun.objects.advance(
        sync_run, SyncRun.Status.APPLYING, progress=progress, dry_run=False
    ):  # ended meanwhile (the reaper found no heartbeat): write nothing
        current = SyncRun.objects.filter(pk=sync_run.pk).values_list("status", flat=True).first()
        raise RunStateError(
            _("run #%(pk)s is %(current)s; it was not applied")
            % {"pk": sync_run.pk, "current": current}
        )
    total = sum(plan.total for plan in steps.plans(todo))
    try:
        try:
            with steps.write_transaction(todo):
                if stale:
                    for step in todo:
                        steps.check_stale(step.plan, step.importer)  # type: ignore[arg-type]
                sync_run.rows_applied = steps.apply_steps(
                    sync_run, todo, progress=_apply_progress(progress, total)
                )
            steps.finish_targets(sync_run, todo)  # staged writes take effect (a file renamed)
        except BaseException:
            steps.discard_targets(todo)
            raise
    except Exception as exc:
        kept = steps.untransacted_writes(todo)
        refused = steps.record_refusals(sync_run, todo)
        if not kept and not refused:
            raise
        sync_run.rows_applied = kept
        raise TargetError(
            _(
                "%(exc)s (%(kept)s of %(total)s changes were written before it stopped and stay "
                "written: the target is not transactional; a new run picks up from there)"
            )
            % {"exc": exc, "kept": format(kept, ","), "total": format(total, ",")}
        ) from exc
    refused = steps.record_refusals(sync_run, todo)
    incremental.save_cursor(sync_run.job, sync_run)
    if stale:
        release_upload(sync_run)  # applied: the preview's uploaded file has served its purpose
    if refused:
        message = steps.refusal_message(todo, total)
        if any(step.switches.on_row_error == "fail" for step in todo if step.result.refused):
            raise TargetError(message)
        sync_run.warnings = [*(sync_run.warnings or []), message]
    SyncRun.objects.finish(sync_run, SyncRun.Status.SUCCEEDED, progress=progress)


def apply_previewed(
    sync_run: SyncRun, *, user: Any = None, progress: Progress | None = None
) -> SyncRun:
    """Apply exactly the plans stored on a previewed run, if the target has not moved since.

    The stored plans are restaged (or read back) and checked against the target inside the
    write transaction: every row they update or delete must still hold the values the
    preview saw, no row may have appeared under a key they create, and every parent a
    foreign key names must still be there. Otherwise nothing is written.
    """
    progress = progress or Progress()
    runs = SyncRun.objects
    if sync_run.status != SyncRun.Status.PREVIEWED:
        raise RunStateError(
            _("run #%(pk)s is %(status)s; only a previewed run can be applied")
            % {"pk": sync_run.pk, "status": sync_run.status}
        )
    held = ExitStack()
    try:
        progress = held.enter_context(guard(sync_run, progress))
        # Under the job's lock: of two applies of one preview (two tabs, a duplicate task),
        # exactly one takes it from "previewed" to "applying".
        if not runs.claim_preview(sync_run):
            current = runs.filter(pk=sync_run.pk).values_list("status", flat=True).first()
            raise RunStateError(
                _("run #%(pk)s is %(current)s; only a previewed run can be applied")
                % {"pk": sync_run.pk, "current": current}
            )
        if user is not None and getattr(user, "pk", None):
            sync_run.user = user
        todo = steps.stored_steps(sync_run)
        held.callback(steps.close, todo)
        _apply(sync_run, todo, progress, stale=True)
        return sync_run
    except RunLocked as exc:  # another run is active: this preview stays, to apply later
        if sync_run.status == SyncRun.Status.PREVIEWED:
            runs.keep_preview(sync_run, exc)
        else:
            fail(sync_run, exc, progress)
        exc.run = sync_run  # type: ignore[attr-defined]
        raise
    except RunStateError as exc:  # applied or discarded meanwhile: leave the record alone
        sync_run.refresh_from_db()
        exc.run = sync_run  # type: ignore[attr-defined]
        raise
    except Exception as exc:
        fail(sync_run, exc, progress)
        exc.run = sync_run  # type: ignore[attr-defined]
        raise
    finally:
        held.close()


def fail(sync_run: SyncRun, exc: BaseException, progress: Progress | None = None) -> None:
    """Record the run as failed (or cancelled, or queued again for a retry) with its cause
    on one line (djsync.runs.lifecycle)."""
    SyncRun.objects.fail(sync_run, exc, progress=progress)


def _read_progress(progress: Progress, reading: list[Source]) -> Callable[[int], None]:
    """Rows read so far, told with how far through its source the read is (its extent);
    the run's monitor records both (djsync.runs.monitor)."""

    def report(rows: int) -> None:
        extent = reading[0].extent() if reading else None
        if extent is not None and progress.on_extent:
            progress.on_extent(extent)
        if progress.on_read:
            progress.on_read(rows)

    return report


def _apply_progress(progress: Progress, total: int) -> Callable[[int], None]:
    def report(done: int) -> None:
        if progress.on_apply:
            progress.on_apply(done, total)

    return report

"""The one orchestrator: every run — command, API, admin, Celery — goes through ``run_job``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from typing import IO, Any

from django.db import router, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError
from kombu.utils.url import maybe_sanitize_url

from . import backends, incremental, multimodel
from .apply import apply_plan, check_limits
from .conf import settings
from .diff import Create, Plan, StagedPlan, same
from .exceptions import (
    ConfigurationError,
    DjsyncError,
    QueueError,
    RowErrorsFound,
    RunLocked,
    RunStateError,
)
from .exports import export_run, is_export
from .importers import BaseImporter, Switches
from .models import SyncJob, SyncRun
from .monitor import end_status, guard
from .notifications import run_finished
from .registry import get_importer_class
from .sources import FileSource, Source, get_source
from .store import error_stats, save_plan
from .targets.stored import stale_error
from .uploads import release_upload

logger = logging.getLogger("djsync")

#: Run options that override a job's switches (None leaves the job's value).
SWITCH_NAMES = (
    "create",
    "update",
    "delete",
    "max_create",
    "max_update",
    "max_delete",
    "max_total",
    "delete_guard",
    "on_row_error",
    "force",
)

#: SyncJob fields whose names differ from the switch they set.
JOB_FIELDS = {"create": "allow_create", "update": "allow_update", "delete": "allow_delete"}


@dataclass
class Progress:
    """Progress callbacks a caller (progress bar, Celery task) can pass to a run."""

    on_read: Callable[[int], None] | None = None
    on_apply: Callable[[int, int], None] | None = None
    on_status: Callable[[str], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def get_job(job: str | SyncJob) -> SyncJob:
    if isinstance(job, SyncJob):
        return job
    try:
        return SyncJob.objects.get(name=job)
    except SyncJob.DoesNotExist:
        known = ", ".join(SyncJob.objects.values_list("name", flat=True)) or "none"
        raise ConfigurationError(f"no sync job named {job!r} (jobs: {known})") from None


def make_importer(job: SyncJob) -> BaseImporter:
    cls = get_importer_class(job.importer)
    return cls(using=cls.database or router.db_for_write(cls.model))


def resolve_switches(importer: BaseImporter, job: SyncJob, options: dict[str, Any]) -> Switches:
    """Run options beat the job's fields, which beat the importer's attributes."""
    switches = importer.default_switches()
    from_job = {name: getattr(job, JOB_FIELDS.get(name, name), None) for name in SWITCH_NAMES}
    if not from_job.get("on_row_error"):
        from_job.pop("on_row_error", None)
    switches = switches.with_overrides(**from_job)
    unknown = set(options) - set(SWITCH_NAMES)
    if unknown:
        raise ConfigurationError(f"unknown run options: {', '.join(sorted(unknown))}")
    return switches.with_overrides(**options)


def make_source(
    job: SyncJob,
    importer: BaseImporter,
    *,
    file: str | Path | IO[bytes] | None = None,
    source_options: dict[str, Any] | None = None,
) -> Source:
    """The job's source, or a file given for this run (path or open file) read with the
    job's format options.

    The job's ``source`` is data: it only picks among what the importer and settings
    declare (djsync.sources.policy). The importer's ``source``, ``file`` and
    ``source_options`` (``runsync --encoding/--format``) come from code and are trusted.
    """
    base = dict(importer.source or {})
    job_options = dict(job.source or {}) if isinstance(job.source, dict) else job.source
    if file is None:
        if not base and not job_options:
            raise ConfigurationError(f"job {job.name!r} has no source; give it a file")
        if source_options and isinstance(job_options, dict):
            extra = {k: v for k, v in source_options.items() if v is not None}
            job_options = {**job_options, **extra}  # plain format options, checked as a job's
        return get_source(job_options or {}, base=base, importer=importer, job=job.name)
    options = {**base, **(job_options if isinstance(job_options, dict) else {})}
    options.update(source_options or {})
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
    **options: Any,
) -> SyncRun:
    """Run a job now, in this process, and return its recorded run.

    ``options`` override the job's switches for this run (``delete=True``,
    ``max_delete=10``, ``force=True`` …). On failure the run is recorded as failed and the
    error is raised with the run attached as ``exc.run``.
    """
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
    """Record a run of ``job``; options left as None mean "as the job says" and are dropped."""
    return SyncRun.objects.create(
        job=get_job(job),
        trigger=trigger,
        dry_run=dry_run,
        user=user if getattr(user, "pk", None) else None,
        options={k: v for k, v in options.items() if v is not None},
        **fields,
    )


def queue_preview(
    job: str | SyncJob,
    *,
    upload: IO[bytes] | None = None,
    upload_name: str | None = None,
    trigger: str = SyncRun.Trigger.ADMIN,
    user: Any = None,
    format: str | None = None,
    **options: Any,
) -> SyncRun:
    """Create a queued dry run (from an uploaded file, or the job's own source) and send it
    to a worker once the surrounding transaction commits. ``format`` overrides the upload's
    extension; the stored file's extension is the format its preview reads it in.

    With an eager Celery (no broker), an upload larger than ``BACKGROUND_PREVIEW_SIZE`` is
    previewed in a background thread instead of inside the caller (the web request)."""
    from django.db import transaction as tx

    from .tasks import preview_in_thread, preview_run

    sync_run = new_run(
        job,
        trigger=trigger,
        dry_run=True,
        user=user,
        options=options,
        status=SyncRun.Status.QUEUED,
        source_name=upload_name or getattr(upload, "name", "") or "",
        upload=_store_upload(upload, upload_name, format) if upload is not None else "",
    )
    if _in_background(upload):
        tx.on_commit(lambda: preview_in_thread(sync_run.pk))
    else:
        tx.on_commit(lambda: _send(preview_run, sync_run))
    return sync_run


def _in_background(upload: IO[bytes] | None) -> bool:
    """A big upload with an eager Celery: previewed in a thread, not in the request."""
    from .tasks import preview_run

    limit = settings.BACKGROUND_PREVIEW_SIZE
    size = getattr(upload, "size", None)
    if upload is None or limit is None or size is None or size <= limit:
        return False
    return bool(preview_run.app.conf.task_always_eager)


def queue_run(
    job: str | SyncJob,
    *,
    dry_run: bool = False,
    file: str | Path | None = None,
    format: str | None = None,
    trigger: str = SyncRun.Trigger.COMMAND,
    user: Any = None,
    **options: Any,
) -> SyncRun:
    """Create a queued run (``runsync --async``) and send it to a worker once the surrounding
    transaction commits; a ``file`` is copied to private upload storage for the worker."""
    from .tasks import execute_run

    job = get_job(job)
    upload = ""
    if file is not None:
        try:
            with open(file, "rb") as handle:
                upload = _store_upload(handle, Path(file).name, format)
        except FileNotFoundError:
            raise ConfigurationError(f"{file}: file not found") from None
    sync_run = new_run(
        job,
        trigger=trigger,
        dry_run=dry_run,
        user=user,
        options=options,
        status=SyncRun.Status.QUEUED,
        source_name=str(file) if file is not None else "",
        upload=upload,
    )
    transaction.on_commit(lambda: _send(execute_run, sync_run), using=router.db_for_write(SyncRun))
    return sync_run


def _store_upload(upload: IO[bytes], name: str | None, format: str | None) -> str:
    from .uploads import save_upload

    name = name or upload.name
    return save_upload(upload, f"{name}.{format}" if format else name)


def publish(task: Any, *args: Any) -> str:
    """Send ``task`` to the broker and return its id. A broker that does not answer within
    SEND_TIMEOUT seconds (SEND_RETRIES more attempts) raises :class:`QueueError` instead of
    hanging or a traceback; with eager Celery the task runs here and now."""
    app = task.app
    if app.conf.task_always_eager:
        return task.apply_async(args).id or ""
    timeout = float(settings.SEND_TIMEOUT)
    url = maybe_sanitize_url(str(app.conf.broker_write_url or app.conf.broker_url or ""))
    try:
        with app.connection_for_write(
            transport_options={"socket_timeout": timeout, "socket_connect_timeout": timeout}
        ) as connection:
            result = task.apply_async(
                args,
                connection=connection,
                retry=True,
                retry_policy={
                    "max_retries": int(settings.SEND_RETRIES),
                    "interval_start": 0,
                    "interval_step": 0.5,
                    "interval_max": 1,
                },
            )
    except (KombuOperationalError, OSError) as exc:
        why = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
        raise QueueError(
            f"the Celery broker{f' at {url}' if url else ''} did not answer within "
            f"{timeout:g} s (the SEND_TIMEOUT setting): {why}"
        ) from None
    return result.id or ""


def _send(task: Any, sync_run: SyncRun, *args: Any) -> None:
    """Publish ``task`` for a new run; a broker that does not answer fails the run, removes
    its upload and raises :class:`QueueError` (with the run as ``exc.run``)."""
    try:
        task_id = publish(task, sync_run.pk, *args)
    except QueueError as exc:
        error = QueueError(f"{exc}; run #{sync_run.pk} was not queued; nothing was written")
        fail(sync_run, error)
        release_upload(sync_run)
        error.run = sync_run  # type: ignore[attr-defined]
        raise error from None
    SyncRun.objects.filter(pk=sync_run.pk, task_id="").update(task_id=task_id)


def execute_queued(sync_run: SyncRun, *, progress: Progress | None = None) -> SyncRun:
    """Run a queued run in this process (a worker): from its uploaded file if it has one."""
    from .uploads import open_upload

    sync_run.status = SyncRun.Status.READING
    sync_run.started_at = timezone.now()
    sync_run.save(update_fields=["status", "started_at"])
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
) -> SyncRun:
    """Read, diff, store the plan, and (unless a dry run) apply it; record everything.

    The job's lock is held throughout (one run per job at a time, see djsync.monitor).
    """
    progress = progress or Progress()
    job = sync_run.job
    held = ExitStack()
    try:
        progress = held.enter_context(guard(sync_run, progress))
        if is_export(job):
            return export_run(sync_run)
        if multimodel.is_multi(job):
            return multimodel.execute(sync_run, progress, file=file, source=source)
        importer = make_importer(job)
        switches = resolve_switches(importer, job, sync_run.options)
        if source is None:
            source = make_source(job, importer, file=file, source_options=source_options)
        diff_switches = incremental.prepare(source, job, switches, importer)
        _status(sync_run, SyncRun.Status.READING, progress, source_name=str(source))
        plan = backends.build_plan(
            importer, source, diff_switches, progress=_read_progress(sync_run, progress)
        )
        if isinstance(plan, StagedPlan):  # its temporary tables go when the run ends
            held.callback(plan.close)
        plan.source = str(source)
        incremental.finish_plan(plan, importer, source, switches, sync_run)
        _status(sync_run, SyncRun.Status.DIFFING, progress)
        record_plan(sync_run, plan)
        if sync_run.dry_run:
            try:
                check_limits(plan, switches)
            except DjsyncError as exc:
                sync_run.error = f"a real run would fail: {exc}"
            _finish(sync_run, SyncRun.Status.PREVIEWED, progress)
            return sync_run
        check_limits(plan, switches)
        _status(sync_run, SyncRun.Status.APPLYING, progress)
        apply_plan(plan, importer, progress=_apply_progress(sync_run, plan, progress))
        sync_run.rows_applied = plan.total
        incremental.save_cursor(job, sync_run)
        _finish(sync_run, SyncRun.Status.SUCCEEDED, progress)
        return sync_run
    except Exception as exc:
        fail(sync_run, exc, progress)
        exc.run = sync_run  # type: ignore[attr-defined]
        raise
    finally:
        held.close()


def apply_previewed(
    sync_run: SyncRun, *, user: Any = None, progress: Progress | None = None
) -> SyncRun:
    """Apply exactly the plan stored on a previewed run, if the target has not moved since.

    The stored plan is re-read and checked against the target inside the write transaction:
    every row it updates or deletes must still hold the values the preview saw, and no row
    may have appeared under a key it creates. Otherwise nothing is written.
    """
    progress = progress or Progress()
    if sync_run.status != SyncRun.Status.PREVIEWED:
        raise RunStateError(
            f"run #{sync_run.pk} is {sync_run.status}; only a previewed run can be applied"
        )
    held = ExitStack()
    try:
        progress = held.enter_context(guard(sync_run, progress))
        # Under the job's lock, take the run from "previewed" to "applying" in one statement:
        # a second apply of the same preview (another tab, a duplicate task) finds it taken.
        claimed = SyncRun.objects.filter(pk=sync_run.pk, status=SyncRun.Status.PREVIEWED).update(
            status=SyncRun.Status.APPLYING
        )
        if not claimed:
            current = SyncRun.objects.get(pk=sync_run.pk).status
            raise RunStateError(
                f"run #{sync_run.pk} is {current}; only a previewed run can be applied"
            )
        if user is not None and getattr(user, "pk", None):
            sync_run.user = user
        if multimodel.is_multi(sync_run.job):
            multimodel.apply_previewed(sync_run, progress)
            release_upload(sync_run)
            return sync_run
        _apply_stored_plan(sync_run, progress)
        release_upload(sync_run)  # applied: the uploaded file has served its purpose
        _finish(sync_run, SyncRun.Status.SUCCEEDED, progress)
        return sync_run
    except RunLocked as exc:  # another run is active: this preview stays, to apply later
        if sync_run.status == SyncRun.Status.PREVIEWED:
            sync_run.error = f"not applied: {exc}"
            SyncRun.objects.filter(pk=sync_run.pk, status=SyncRun.Status.PREVIEWED).update(
                error=sync_run.error
            )
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


def _apply_stored_plan(sync_run: SyncRun, progress: Progress) -> None:
    """Read the single importer's plan back from the run and write it, if still current."""
    importer = make_importer(sync_run.job)
    switches = resolve_switches(importer, sync_run.job, sync_run.options)
    if sync_run.errors and switches.on_row_error == "fail":
        raise RowErrorsFound(
            f"the preview has {sync_run.errors} row errors and the job fails on them; "
            "fix the source and preview again"
        )
    plan = backends.stored_plan(sync_run, importer, switches)
    try:
        check_limits(plan, switches)
        sync_run.dry_run = False
        _status(sync_run, SyncRun.Status.APPLYING, progress, dry_run=False)
        with transaction.atomic(using=importer.using):
            check_stale(plan, importer)
            apply_plan(plan, importer, progress=_apply_progress(sync_run, plan, progress))
    finally:
        if isinstance(plan, StagedPlan):
            plan.close()
    sync_run.rows_applied = plan.total
    stats = dict(sync_run.stats or {})
    stats[plan.model] = {**stats.get(plan.model, {}), "path": plan.path}
    sync_run.stats = stats  # the path the apply took, saved with the run
    incremental.save_cursor(sync_run.job, sync_run)


def check_stale(plan: Plan, importer: BaseImporter) -> None:
    """Raise ConflictError naming the keys whose target rows changed since the preview
    (a staged plan checks in SQL, against the target where it is)."""
    if isinstance(plan, StagedPlan):
        plan.check_stale()
        return
    current = importer.read_target()
    conflicts: list[tuple[str, str]] = []
    for action in plan.creates:
        if action.key in current:
            conflicts.append((_key(action.key), "created by someone else"))
    for action in [*plan.updates, *plan.deletes]:
        row = current.get(action.key)
        if row is None or row.pk != action.pk:
            conflicts.append((_key(action.key), "gone"))
        elif any(not same(_ms(row.values.get(f)), _ms(v)) for f, v in action.old.items()):
            conflicts.append((_key(action.key), "changed"))
    relations = [f for f in importer.active_fields if f.is_relation]
    for action in [*plan.creates, *plan.updates]:
        values = action.values if isinstance(action, Create) else action.new
        for f in relations:
            value = values.get(f.name)
            if value is not None and value not in importer.lookups.get(f.name, {}):
                name = f.model_field.related_model._meta.verbose_name
                conflicts.append((str(value), f"no {name} with {f.lookup} {value!r}"))
    if conflicts:
        raise stale_error(plan.model, conflicts[:10], len(conflicts))


def _ms(value: Any) -> Any:
    """Datetimes and times to the millisecond: a stored preview keeps no more."""
    if isinstance(value, datetime | time) and value.microsecond % 1000:
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    return value


def _key(key: tuple[Any, ...]) -> str:
    return str(key[0]) if len(key) == 1 else str(tuple(key))


def record_plan(sync_run: SyncRun, plan: Plan) -> None:
    """Counts on the run, actions and row errors in their tables."""
    counts = plan.counts
    sync_run.created = counts["created"]
    sync_run.updated = counts["updated"]
    sync_run.deleted = counts["deleted"]
    sync_run.unchanged = counts["unchanged"]
    sync_run.errors = counts["errors"]
    sync_run.rows_read = plan.rows_read
    sync_run.stats = {
        plan.model: {
            **counts,
            "rows_read": plan.rows_read,
            "rows_in_scope": plan.rows_in_scope,
            "path": plan.path,
            "fields": plan.compared,
            **error_stats(plan),
        }
    }
    save_plan(sync_run, plan)  # first: it may add a warning (changes left out of the audit)
    sync_run.warnings = list(plan.warnings)
    sync_run.plan = plan  # type: ignore[attr-defined]  # kept for callers in this process
    sync_run.save()


def fail(sync_run: SyncRun, exc: BaseException, progress: Progress | None = None) -> None:
    """Record the run as failed (or cancelled, or queued again for a retry) with its cause
    on one line; an unexpected exception's traceback goes to the ``djsync`` logger."""
    sync_run.error = cause(exc)
    if not isinstance(exc, DjsyncError):
        logger.error("djsync run %s failed: %s", sync_run.pk, sync_run.error, exc_info=exc)
    _finish(sync_run, end_status(sync_run, exc), progress)


#: Longest cause kept on a run for an unexpected exception (a database error can quote rows).
MAX_CAUSE = 2000


def cause(exc: BaseException) -> str:
    """What went wrong, on one line: a djsync error's message; for anything else its type
    and message (a database error's DETAIL lines joined on), at most MAX_CAUSE characters."""
    if isinstance(exc, DjsyncError):
        return str(exc)
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= MAX_CAUSE else text[: MAX_CAUSE - 1] + "…"


def _status(sync_run: SyncRun, status: str, progress: Progress, **fields: Any) -> None:
    sync_run.status = status
    for name, value in fields.items():
        setattr(sync_run, name, value)
    sync_run.heartbeat_at = timezone.now()
    SyncRun.objects.filter(pk=sync_run.pk).update(
        status=status, heartbeat_at=sync_run.heartbeat_at, **fields
    )
    if progress.on_status:
        progress.on_status(status)


def _finish(sync_run: SyncRun, status: str, progress: Progress | None) -> None:
    sync_run.status = status
    sync_run.finished_at = timezone.now()
    sync_run.save()
    if progress and progress.on_status:
        progress.on_status(status)
    run_finished(sync_run)  # mails failures and changes; never raises


def _read_progress(sync_run: SyncRun, progress: Progress) -> Callable[[int], None]:
    def report(rows: int) -> None:
        SyncRun.objects.filter(pk=sync_run.pk).update(rows_read=rows, heartbeat_at=timezone.now())
        if progress.on_read:
            progress.on_read(rows)

    return report


def _apply_progress(sync_run: SyncRun, plan: Plan, progress: Progress) -> Callable[[int], None]:
    def report(done: int) -> None:
        if progress.on_apply:
            progress.on_apply(done, plan.total)

    return report

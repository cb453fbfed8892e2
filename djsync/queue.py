"""Queued runs: record a run and send it to a Celery worker once the transaction commits.

The doors that do not wait for a run (``runsync --async``, the admin's upload and "Run
now", an API) queue it here; a worker claims it (djsync.tasks) and carries it out through
the orchestrator (djsync.runs.orchestrator). A broker that does not answer fails the run with a
one-line error instead of hanging the request.

Without Celery (the core install) or with an eager one (no broker), the work is done in
this process instead (djsync.runs.background): in a thread started on commit, or at commit
inside the caller, through the same claim and run lifecycle.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import IO, Any

from django.db import connections, router, transaction
from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.exceptions import ConfigurationError, QueueError
from djsync.models import SyncJob, SyncRun
from djsync.runs import background as local  # `background` is a flag of queue_apply
from djsync.runs.orchestrator import get_job, make_importer, new_run
from djsync.uploads import release_upload

__all__ = [
    "celery_tasks",
    "in_background",
    "in_process",
    "publish",
    "queue_apply",
    "queue_preview",
    "queue_run",
]


def queue_preview(
    job: str | SyncJob,
    *,
    upload: IO[bytes] | None = None,
    upload_name: str | None = None,
    trigger: str = SyncRun.Trigger.ADMIN,
    user: Any = None,
    format: str | None = None,
    column_mapping: dict[str, Any] | None = None,
    partitions: int | None = None,
    **options: Any,
) -> SyncRun:
    """Create a queued dry run (from an uploaded file, or the job's own source) and send it
    to a worker once the surrounding transaction commits. ``format`` overrides the upload's
    extension; the stored file's extension is the format its preview reads it in.
    ``column_mapping`` maps this upload's columns for this run only (the job's shape);
    ``partitions`` splits it as :func:`queue_run` does.

    Without Celery or with an eager one (no broker), the preview runs in a background
    thread of this process instead of inside the caller (the web request): see
    :func:`in_background`."""
    if partitions is not None:
        job = get_job(job)
        check_partitions(job, partitions)
    sync_run = new_run(
        job,
        trigger=trigger,
        dry_run=True,
        user=user,
        options=options,
        status=SyncRun.Status.QUEUED,
        source_name=upload_name or getattr(upload, "name", "") or "",
        upload=_store_upload(upload, upload_name, format) if upload is not None else "",
        column_mapping=column_mapping or {},
        partitions=partitions,
    )
    if _preview_in_background(upload):
        transaction.on_commit(lambda: _in_thread("preview_run", sync_run.pk))
    else:
        transaction.on_commit(lambda: _send("preview_run", sync_run))
    return sync_run


def celery_tasks() -> ModuleType | None:
    """djsync.tasks, or None without Celery (the core install, no ``djsync[celery]``)."""
    try:
        import celery  # noqa: F401
    except ImportError:
        return None
    from djsync import tasks

    return tasks


def in_process() -> bool:
    """Whether queued work is done in this process: no Celery (the core install), or a
    Celery that runs its tasks eagerly (no broker: the in-process default)."""
    tasks = celery_tasks()
    return tasks is None or bool(tasks.preview_run.app.conf.task_always_eager)


def in_background() -> bool:
    """Whether the admin's runs go to a background thread of this process: the work is done
    in process (:func:`in_process`) and ``BACKGROUND_THREADS`` allows threads. A broker's
    workers are the background otherwise."""
    return bool(settings.BACKGROUND_THREADS) and in_process()


#: What each task does, called here when there is no Celery (djsync.tasks wraps them).
LOCAL_WORK: dict[str, Callable[..., object]] = {
    "preview_run": local.work_on,
    "execute_run": local.work_on,
    "apply_run": local.apply_stored,
}


def _in_thread(task: str, run_id: int, *args: Any) -> None:
    """Do ``task``'s work for a run in a background thread of this process."""
    tasks = celery_tasks()
    if tasks is None:
        local.run_in_thread(run_id, partial(LOCAL_WORK[task], run_id, *args))
    else:
        tasks.run_in_thread(getattr(tasks, task), run_id, *args)


def _preview_in_background(upload: IO[bytes] | None) -> bool:
    """A preview in a thread: see :func:`in_background`; an upload of at most
    ``BACKGROUND_PREVIEW_SIZE`` bytes (None: every one) is previewed in the request."""
    limit = settings.BACKGROUND_PREVIEW_SIZE
    if not in_background() or limit is None:
        return False
    size = getattr(upload, "size", None)
    return upload is None or size is None or size > limit


def queue_run(
    job: str | SyncJob,
    *,
    dry_run: bool = False,
    file: str | Path | None = None,
    format: str | None = None,
    upload: IO[bytes] | None = None,
    upload_name: str | None = None,
    trigger: str = SyncRun.Trigger.COMMAND,
    user: Any = None,
    background: bool = False,
    partitions: int | None = None,
    **options: Any,
) -> SyncRun:
    """Create a queued run (``runsync --async``, the HTTP API) and send it to a worker once
    the surrounding transaction commits; a ``file`` (a path) or an ``upload`` (an uploaded
    file, shown as ``upload_name``) is copied to private upload storage for the worker.

    ``background`` (the admin's "Run now"): without Celery or with an eager one the run
    goes to a thread of this long-lived process (:func:`in_background`) instead of running
    in the caller; a command, whose process ends with it, never asks for that.
    ``partitions`` splits the run's file across that many workers (djsync.runs.partitions;
    None: as the job says)."""
    job = get_job(job)
    if partitions is not None:
        check_partitions(job, partitions)
    stored = ""
    if upload is not None:
        stored = _store_upload(upload, upload_name, format)
    elif file is not None:
        try:
            with open(file, "rb") as handle:
                stored = _store_upload(handle, Path(file).name, format)
        except FileNotFoundError:
            raise ConfigurationError(_("%(file)s: file not found") % {"file": file}) from None
    sync_run = new_run(
        job,
        trigger=trigger,
        dry_run=dry_run,
        user=user,
        options=options,
        status=SyncRun.Status.QUEUED,
        source_name=upload_name or (str(file) if file is not None else ""),
        upload=stored,
        partitions=partitions,
    )
    using = router.db_for_write(SyncRun)
    if background and in_background():
        transaction.on_commit(lambda: _in_thread("execute_run", sync_run.pk), using=using)
    else:
        transaction.on_commit(lambda: _send("execute_run", sync_run), using=using)
    return sync_run


def check_partitions(job: SyncJob, partitions: int) -> None:
    """Refuse a number of partitions out of range, or more than one for a job whose target
    is not PostgreSQL (a job's own setting falls back to one process with a warning)."""
    from djsync.runs import partitions as split

    split.check(partitions)
    if partitions > 1:
        using = make_importer(job).using
        vendor = connections[using].vendor
        if vendor != "postgresql":
            raise ConfigurationError(
                _("%(job)s: partitions need PostgreSQL (the target database is %(vendor)s)")
                % {"job": job.name, "vendor": vendor}
            )


def queue_apply(
    run: SyncRun, user: Any, *, options: dict[str, Any] | None = None, background: bool = False
) -> SyncRun:
    """Send the apply of a previewed run to a worker once the surrounding transaction
    commits; the worker's apply claims the preview (previewed → applying) under the job's
    lock and checks it is not stale. ``options`` (what this apply was allowed to do: skip
    row errors, pass the delete guard) are kept on the run first. A broker that does not
    answer leaves the preview, with a note, to apply later. ``background`` (the admin): with
    an eager Celery or none, in a thread of this process (:func:`in_background`)."""
    if options is not None and options != run.options:
        run.options = options
        SyncRun.objects.filter(pk=run.pk, status=SyncRun.Status.PREVIEWED).update(options=options)
    # An earlier attempt refused because the job was busy left a note; this is a new try.
    SyncRun.objects.clear_preview_note(run)

    user_pk = getattr(user, "pk", None)

    def send() -> None:
        tasks = celery_tasks()
        if tasks is None:  # no Celery: here and now, as an eager Celery does
            local.apply_stored(run.pk, user_pk)
            return
        try:
            publish(tasks.apply_run, run.pk, user_pk)
        except QueueError as exc:  # the preview stays, to apply once the broker answers
            SyncRun.objects.keep_preview(run, exc)

    if background and in_background():
        transaction.on_commit(lambda: _in_thread("apply_run", run.pk, user_pk))
    else:
        transaction.on_commit(send)
    return run


def _store_upload(upload: IO[bytes], name: str | None, format: str | None) -> str:
    from djsync.uploads import save_upload

    name = name or upload.name
    return save_upload(upload, f"{name}.{format}" if format else name)


def publish(task: Any, *args: Any) -> str:
    """Send ``task`` to the broker and return its id. A broker that does not answer within
    SEND_TIMEOUT seconds (SEND_RETRIES more attempts) raises :class:`QueueError` instead of
    hanging or a traceback; with eager Celery the task runs here and now."""
    app = task.app
    if app.conf.task_always_eager:
        return task.apply_async(args).id or ""
    from kombu.exceptions import OperationalError as KombuOperationalError
    from kombu.utils.url import maybe_sanitize_url

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
            _(
                "the Celery broker%(value)s did not answer within %(timeout)s s (the SEND_TIMEOUT "
                "setting): %(why)s"
            )
            % {"value": f" at {url}" if url else "", "timeout": format(timeout, "g"), "why": why}
        ) from None
    return result.id or ""


def _send(task: str, sync_run: SyncRun, *args: Any) -> None:
    """Publish ``task`` for a new run; a broker that does not answer fails the run, removes
    its upload and raises :class:`QueueError` (with the run as ``exc.run``). Without
    Celery, the task's work is done here and now, as an eager Celery does."""
    tasks = celery_tasks()
    if tasks is None:
        LOCAL_WORK[task](sync_run.pk, *args)
        return
    try:
        task_id = publish(getattr(tasks, task), sync_run.pk, *args)
    except QueueError as exc:
        error = QueueError(
            _("%(exc)s; run #%(pk)s was not queued; nothing was written")
            % {"exc": exc, "pk": sync_run.pk}
        )
        SyncRun.objects.fail(sync_run, error)
        release_upload(sync_run)
        error.run = sync_run  # type: ignore[attr-defined]
        raise error from None
    SyncRun.objects.filter(pk=sync_run.pk, task_id="").update(task_id=task_id)

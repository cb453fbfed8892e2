"""Queued runs: record a run and send it to a Celery worker once the transaction commits.

The doors that do not wait for a run (``runsync --async``, the admin's upload and "Run
now", an API) queue it here; a worker claims it (djsync.tasks) and carries it out through
the orchestrator (djsync.runs.orchestrator). A broker that does not answer fails the run with a
one-line error instead of hanging the request.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from django.db import router, transaction
from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.exceptions import ConfigurationError, QueueError
from djsync.models import SyncJob, SyncRun
from djsync.runs.orchestrator import get_job, new_run
from djsync.uploads import release_upload

__all__ = ["in_background", "publish", "queue_apply", "queue_preview", "queue_run"]


def queue_preview(
    job: str | SyncJob,
    *,
    upload: IO[bytes] | None = None,
    upload_name: str | None = None,
    trigger: str = SyncRun.Trigger.ADMIN,
    user: Any = None,
    format: str | None = None,
    column_mapping: dict[str, Any] | None = None,
    **options: Any,
) -> SyncRun:
    """Create a queued dry run (from an uploaded file, or the job's own source) and send it
    to a worker once the surrounding transaction commits. ``format`` overrides the upload's
    extension; the stored file's extension is the format its preview reads it in.
    ``column_mapping`` maps this upload's columns for this run only (the job's shape).

    With an eager Celery (no broker), the preview runs in a background thread of this
    process instead of inside the caller (the web request): see :func:`in_background`."""
    from django.db import transaction as tx

    from djsync.tasks import preview_run, run_in_thread  # the door this module serves

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
    )
    if _preview_in_background(upload):
        tx.on_commit(lambda: run_in_thread(preview_run, sync_run.pk))
    else:
        tx.on_commit(lambda: _send(preview_run, sync_run))
    return sync_run


def in_background() -> bool:
    """Whether the admin's runs go to a background thread of this process: Celery runs its
    tasks eagerly (no broker: the in-process default) and ``BACKGROUND_THREADS`` allows
    threads. A broker's workers are the background otherwise."""
    from djsync.tasks import preview_run

    return bool(settings.BACKGROUND_THREADS) and bool(preview_run.app.conf.task_always_eager)


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
    **options: Any,
) -> SyncRun:
    """Create a queued run (``runsync --async``, the HTTP API) and send it to a worker once
    the surrounding transaction commits; a ``file`` (a path) or an ``upload`` (an uploaded
    file, shown as ``upload_name``) is copied to private upload storage for the worker.

    ``background`` (the admin's "Run now"): with an eager Celery the run goes to a thread
    of this long-lived process (:func:`in_background`) instead of running in the caller; a
    command, whose process ends with it, never asks for that."""
    from djsync.tasks import execute_run, run_in_thread

    job = get_job(job)
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
    )
    using = router.db_for_write(SyncRun)
    if background and in_background():
        transaction.on_commit(lambda: run_in_thread(execute_run, sync_run.pk), using=using)
    else:
        transaction.on_commit(lambda: _send(execute_run, sync_run), using=using)
    return sync_run


def queue_apply(
    run: SyncRun, user: Any, *, options: dict[str, Any] | None = None, background: bool = False
) -> SyncRun:
    """Send the apply of a previewed run to a worker once the surrounding transaction
    commits; the worker's apply claims the preview (previewed → applying) under the job's
    lock and checks it is not stale. ``options`` (what this apply was allowed to do: skip
    row errors, pass the delete guard) are kept on the run first. A broker that does not
    answer leaves the preview, with a note, to apply later. ``background`` (the admin): with
    an eager Celery, in a thread of this process (:func:`in_background`)."""
    from djsync.tasks import apply_run, run_in_thread

    if options is not None and options != run.options:
        run.options = options
        SyncRun.objects.filter(pk=run.pk, status=SyncRun.Status.PREVIEWED).update(options=options)
    # An earlier attempt refused because the job was busy left a note; this is a new try.
    SyncRun.objects.clear_preview_note(run)

    def send() -> None:
        try:
            publish(apply_run, run.pk, getattr(user, "pk", None))
        except QueueError as exc:  # the preview stays, to apply once the broker answers
            SyncRun.objects.keep_preview(run, exc)

    if background and in_background():
        user_pk = getattr(user, "pk", None)
        transaction.on_commit(lambda: run_in_thread(apply_run, run.pk, user_pk))
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


def _send(task: Any, sync_run: SyncRun, *args: Any) -> None:
    """Publish ``task`` for a new run; a broker that does not answer fails the run, removes
    its upload and raises :class:`QueueError` (with the run as ``exc.run``)."""
    try:
        task_id = publish(task, sync_run.pk, *args)
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

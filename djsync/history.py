"""django-simple-history records of the rows a run writes, for an importer with
``Meta.history = True`` (the ``djsync[history]`` extra).

Bulk creates and set-based updates send no ``post_save``, so simple-history's own receivers
never see them. djsync writes those records from :data:`djsync.signals.batch_applied`
instead: each batch of created or updated rows is copied into the history table by one
``INSERT … SELECT`` (``+`` and ``~``, djsync.history_sql) in the run's transaction, or, for a
history model SQL cannot fill or another database, read back and recorded with the history
manager's ``bulk_history_create``.
Deletes go through Django's ``delete()``, whose ``post_delete`` simple-history records
itself row by row (``-``); djsync only signs those records. Every record names the run's
user as ``history_user`` (when the run has one) and the run in its change reason.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, NamedTuple

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, models

from djsync.conf import settings
from djsync.history_sql import SqlHistory, sql_history
from djsync.signals import batch_applied, batch_deleting

__all__ = ["change_reason", "connect"]

#: What a missing ``djsync[history]`` extra says.
MISSING = 'Meta.history needs django-simple-history: pip install "djsync[history]"'


class _Deleting(NamedTuple):
    """A batch of rows djsync is deleting, and how to sign their ``-`` records."""

    model: type[models.Model]
    pks: frozenset[str]
    user: Any
    reason: str


_deleting: ContextVar[_Deleting | None] = ContextVar("djsync_history_deleting", default=None)


def connect(importer: type) -> None:
    """Record the history of ``importer``'s model as runs write it (called when an importer
    with ``Meta.history`` is registered). Raises ImproperlyConfigured when
    django-simple-history is missing or the model is not registered with it."""
    try:
        from simple_history.exceptions import NotHistoricalModelError
        from simple_history.signals import pre_create_historical_record
        from simple_history.utils import get_history_manager_for_model
    except ImportError:
        raise ImproperlyConfigured(f"djsync: {importer.__qualname__}: {MISSING}") from None
    model = getattr(importer, "model", None)
    if model is None or getattr(importer, "target_class", None) is not None:
        raise ImproperlyConfigured(
            f"djsync: {importer.__qualname__}: Meta.history is for a model target"
        )
    try:
        manager = get_history_manager_for_model(model)
    except NotHistoricalModelError:
        raise ImproperlyConfigured(
            f"djsync: {importer.__qualname__}: Meta.history needs {model._meta.label} "
            "registered with django-simple-history (history = HistoricalRecords())"
        ) from None
    uid = f"djsync.history:{model._meta.label}"
    batch_applied.connect(record_batch, sender=model, dispatch_uid=uid)
    batch_deleting.connect(sign_deletes, sender=model, dispatch_uid=uid)
    pre_create_historical_record.connect(sign_record, sender=manager.model, dispatch_uid=uid)


def change_reason(run: Any) -> str:
    """The change reason of a run's history records: ``djsync run #12 (job 'products')``."""
    if run is None:
        return "djsync"
    job = getattr(run, "job", None)
    reason = f"djsync run #{run.pk}" + (f" (job {job.name!r})" if job is not None else "")
    return reason[:100]  # simple-history's history_change_reason holds 100 characters


def _user(run: Any) -> Any:
    return run.user if run is not None and run.user_id else None


def record_batch(
    sender: type[models.Model],
    *,
    run: Any,
    importer: Any,
    using: str,
    created: list[Any],
    updated: list[Any],
    deleted: list[Any],
    **kwargs: Any,
) -> None:
    """Receiver of ``batch_applied``: ``+`` records of the created rows, ``~`` of the updated
    ones, as they are now: copied in one statement per batch (djsync.history_sql), or read
    back for ``bulk_history_create`` where SQL cannot fill the history model."""
    from simple_history.utils import get_history_manager_for_model

    if deleted:
        _deleting.set(None)  # the deletes are done: their records are signed
    if not getattr(importer, "history", False):
        return
    manager = get_history_manager_for_model(sender)
    if not getattr(django_settings, "SIMPLE_HISTORY_ENABLED", True):
        return  # as bulk_history_create does
    writer = sql_history(sender, connections[using].vendor)
    user, reason = _user(run), change_reason(run)
    if user is None and isinstance(writer, SqlHistory):
        # what bulk_history_create would ask: simple-history's get_user (the request's user)
        user = manager.model.get_default_history_user(sender())
    rows = sender._base_manager.db_manager(using)
    for pks, update in ((created, False), (updated, True)):
        if not pks:
            continue
        kind = "~" if update else "+"
        if isinstance(writer, SqlHistory) and writer.write(using, pks, kind, user, reason):
            continue
        manager.bulk_history_create(
            list(rows.filter(pk__in=pks)),
            update=update,
            default_user=user,
            default_change_reason=reason,
            batch_size=settings.BATCH_SIZE,
        )


def sign_deletes(
    sender: type[models.Model], *, run: Any, importer: Any, pks: list[Any], **kwargs: Any
) -> None:
    """Receiver of ``batch_deleting``: the ``-`` records simple-history is about to write for
    these rows get the run's user and change reason (:func:`sign_record`)."""
    if getattr(importer, "history", False):
        batch = _Deleting(sender, frozenset(map(str, pks)), _user(run), change_reason(run))
        _deleting.set(batch)


def sign_record(
    sender: type, *, instance: models.Model, history_instance: Any, **kwargs: Any
) -> None:
    """Receiver of simple-history's ``pre_create_historical_record``: sign the ``-`` record
    of a row djsync deletes."""
    batch = _deleting.get()
    if (
        batch is None
        or history_instance.history_type != "-"
        or not isinstance(instance, batch.model)
        or str(instance.pk) not in batch.pks
    ):
        return
    if batch.user is not None and getattr(history_instance, "history_user", None) is None:
        history_instance.history_user = batch.user
    if not history_instance.history_change_reason:
        history_instance.history_change_reason = batch.reason

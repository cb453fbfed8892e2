"""A run's status changes here only: the transition table and the named transitions.

Every change of ``SyncRun.status`` is one of :data:`TRANSITIONS`, made by a method of
:class:`SyncRunQuerySet` — ``SyncRun.objects.claim(run_id)``, ``.advance(run, "diffing")``,
``.claim_preview(run)``, ``.finish(run, "succeeded")``, ``.fail(run, exc)``,
``.cancel(run)``, ``.discard(run)``, ``.mark_dead(run)`` — as one conditional UPDATE: the
row changes only while it is still in the status the caller holds (``run.status``). Races
(two tabs applying one preview, a second delivery of a task, the reaper against a slow
worker) are so decided by the database: one caller wins and gets True, its ``run`` moved
on; the others get False, their ``run`` left as they knew it (so that a worker that lost
its run to the reaper may still call ``fail``: a no-op). A transition the table does not
allow from the status the caller holds raises :class:`~djsync.exceptions.RunStateError`
in one line and changes nothing.

A transition that ends a run (finish, fail, mark_dead) tells the caller's
``Progress.on_status`` and sends :data:`djsync.signals.run_finished` (the run's mail),
once, by whoever won.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

from django.db import models
from django.db.models import F, Q
from django.db.models.expressions import Combinable
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from djsync.exceptions import DjsyncError, RunCancelled, RunStateError, TransientSourceError

if TYPE_CHECKING:
    from djsync.runs.progress import Progress

#: A djsync.models.SyncRun: that module imports this one for its manager, so the type is
#: named here without importing it (dependencies point one way).
SyncRun: TypeAlias = Any

logger = logging.getLogger("djsync")

# The values of SyncRun.Status (djsync.models imports this module, so not that class).
QUEUED = "queued"
READING = "reading"
DIFFING = "diffing"
PREVIEWED = "previewed"
APPLYING = "applying"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
DISCARDED = "discarded"
STATUSES = (
    QUEUED,
    READING,
    DIFFING,
    PREVIEWED,
    APPLYING,
    SUCCEEDED,
    FAILED,
    CANCELLED,
    DISCARDED,
)
#: Statuses of a run that a worker is working on (a queued run holds no lock yet).
RUNNING = (READING, DIFFING, APPLYING)


def _from(statuses: Iterable[str], to: str) -> frozenset[tuple[str, str]]:
    return frozenset((status, to) for status in statuses)


#: Every change of a run's status: transition → the (from, to) pairs it may make.
TRANSITIONS: dict[str, frozenset[tuple[str, str]]] = {
    # A worker takes a queued run (a second delivery of the task finds it taken).
    "claim": _from([QUEUED], READING),
    # The worker's phases; "reading" again for a multi-model job's next source, "applying"
    # again when a stored preview's apply starts writing.
    "advance": frozenset(
        {(READING, READING), (READING, DIFFING), (DIFFING, APPLYING), (APPLYING, APPLYING)}
    ),
    # The apply of a stored preview takes it, once: of two tabs or tasks, one wins.
    "claim_preview": _from([PREVIEWED], APPLYING),
    # A dry run ends previewed, a run succeeded.
    "finish": frozenset({(DIFFING, PREVIEWED), (APPLYING, SUCCEEDED)}),
    # A run that raised; a queued one whose task could not be sent or was never taken; a
    # preview whose apply could not start (its job's lock could not be taken).
    "fail": _from([QUEUED, *RUNNING, PREVIEWED], FAILED),
    # A run that stopped at a cancel request (between phases or batches, or before its
    # apply started).
    "stop": _from([*RUNNING, PREVIEWED], CANCELLED),
    # A transient source error with a retry to come: queued again for the next attempt.
    "requeue": _from(RUNNING, QUEUED),
    # A user cancels a queued run; a running one is asked to stop (then "stop").
    "cancel": _from([QUEUED], CANCELLED),
    # A preview nobody will apply: by its owner, or expired with its upload.
    "discard": _from([PREVIEWED], DISCARDED),
    # A running run whose worker died (no heartbeat, its job's lock free).
    "mark_dead": _from(RUNNING, FAILED),
}

#: Which status may go to which, derived from :data:`TRANSITIONS`.
ALLOWED: dict[str, frozenset[str]] = {
    status: frozenset(to for pairs in TRANSITIONS.values() for old, to in pairs if old == status)
    for status in STATUSES
}

#: What a refused transition needs, said after "run #N is <status>; ".
RULES = {
    "claim": gettext_lazy("only a queued run can be started"),
    "claim_preview": gettext_lazy("only a previewed run can be applied"),
    "cancel": gettext_lazy("only a queued or running run can be cancelled"),
    "discard": gettext_lazy("only a previewed run can be discarded"),
    "mark_dead": gettext_lazy("only a running run can be marked dead"),
}

#: The transition that ends a run in each status :func:`end_status` gives.
END_TRANSITION = {FAILED: "fail", CANCELLED: "stop", QUEUED: "requeue"}

#: The note left on a preview whose apply could not start; it stays, to apply later.
NOT_APPLIED = "not applied"

#: Whether a transient source error of the current run will be retried (set by
#: djsync.tasks through ``djsync.runs.monitor.retry_pending``, the same variable).
retry_pending: contextvars.ContextVar[bool] = contextvars.ContextVar("djsync_retry", default=False)

#: Longest cause kept on a run for an unexpected exception (a database error can quote rows).
MAX_CAUSE = 2000


def refusal(run: SyncRun, transition: str, to: str | None = None) -> RunStateError:
    """The one-line error of a transition that ``run``'s status does not allow."""
    rule = RULES.get(transition) or _("it cannot go to %(to)s") % {"to": to}
    return RunStateError(
        _("run #%(pk)s is %(status)s; %(rule)s")
        % {"pk": run.pk, "status": run.status, "rule": rule}
    )


def end_status(sync_run: SyncRun, exc: BaseException) -> str:
    """The status a run ends with after ``exc``: cancelled, queued again to retry, or failed."""
    if isinstance(exc, RunCancelled):
        return CANCELLED
    if isinstance(exc, TransientSourceError) and retry_pending.get():
        return QUEUED
    return FAILED


def cause(exc: BaseException) -> str:
    """What went wrong, on one line: a djsync error's message; for anything else its type
    and message (a database error's DETAIL lines joined on), at most MAX_CAUSE characters."""
    if isinstance(exc, DjsyncError):
        return str(exc)
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= MAX_CAUSE else text[: MAX_CAUSE - 1] + "…"


class SyncRunQuerySet(models.QuerySet[Any]):
    """``SyncRun.objects``: named filters, and the named transitions of a run's status."""

    # -- filters ---------------------------------------------------------------------------
    def running(self) -> SyncRunQuerySet:
        return self.filter(status__in=RUNNING)

    def silent_since(self, cutoff: datetime) -> SyncRunQuerySet:
        """Running runs without a heartbeat since ``cutoff`` (none at all: queued before)."""
        return self.running().filter(
            Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
        )

    # -- a worker's run --------------------------------------------------------------------
    def claim(self, run_id: int, task_id: str = "") -> SyncRun | None:
        """Take a queued run for this worker (queued → reading, one more attempt); None if
        it is not queued any more (cancelled, or taken by another delivery of the task).
        By id: a run in any other status is a lost race, never an error."""
        now = timezone.now()
        fields: dict[str, Any] = {
            "started_at": now,
            "heartbeat_at": now,
            "attempts": F("attempts") + 1,
            "finished_at": None,
        }
        if task_id:
            fields["task_id"] = task_id
        self._check("claim", QUEUED, READING)
        if not self.filter(pk=run_id, status=QUEUED).update(status=READING, **fields):
            return None
        return self.select_related("job").get(pk=run_id)

    def advance(
        self, run: SyncRun, status: str, *, progress: Progress | None = None, **fields: Any
    ) -> bool:
        """Move a running run to its next phase (reading → diffing → applying) with
        ``fields`` (a source name, ``dry_run=False``) and a fresh heartbeat."""
        moved = self._move(run, "advance", status, heartbeat_at=timezone.now(), **fields)
        if moved:
            _tell(progress, status)
        return moved

    def record(self, run: SyncRun) -> bool:
        """Save what a run recorded in memory (its counts, stats, warnings …: every field
        ``save()`` writes but its status), while the row is still in the status ``run``
        holds — never over a status someone else set (the reaper, a cancel)."""
        return bool(self.filter(pk=run.pk, status=run.status).update(**_fields(run)))

    def finish(self, run: SyncRun, status: str, *, progress: Progress | None = None) -> bool:
        """End a run ``previewed`` or ``succeeded``, saving what it recorded in memory
        (counts, stats, warnings, error, rows applied …); then its mail, if any."""
        return self._end(run, "finish", status, progress)

    def fail(self, run: SyncRun, exc: BaseException, *, progress: Progress | None = None) -> bool:
        """End a run after ``exc``: failed with its cause on one line, cancelled after
        :class:`RunCancelled`, or queued again for a retry (:func:`end_status`). An
        unexpected exception's traceback goes to the ``djsync`` logger."""
        run.error = cause(exc)
        if not isinstance(exc, DjsyncError):
            logger.error("djsync run %s failed: %s", run.pk, run.error, exc_info=exc)
        status = end_status(run, exc)
        return self._end(run, END_TRANSITION[status], status, progress)

    def mark_dead(self, run: SyncRun) -> bool:
        """Record a running run whose worker died as failed (its transaction rolled back:
        nothing written); then its mail. False if it moved on meanwhile."""
        last = run.heartbeat_at or run.started_at
        # In the site's time zone and format, as every time a run shows (djsync.display).
        when = date_format(timezone.localtime(last), "DATETIME_FORMAT") if last else "never"
        written = (
            _("what an API target took before stays; a new run picks up from there")
            if run.status == APPLYING and _untransacted(run)
            else _("nothing was written to the target")
        )
        error = _(
            "the worker running it stopped during %(status)s (last heartbeat: %(when)s); "
            "%(written)s"
        ) % {"status": run.status, "when": when, "written": written}
        if not self._move(run, "mark_dead", FAILED, error=error, finished_at=timezone.now()):
            return False
        logger.warning("djsync run %s: %s", run.pk, error)
        run.refresh_from_db()
        _finished(run)
        return True

    # -- a user's decisions ----------------------------------------------------------------
    def claim_preview(self, run: SyncRun) -> bool:
        """Take a previewed run for its apply (previewed → applying): of two applies of the
        same preview (two tabs, a duplicate task), exactly one gets True."""
        return self._move(run, "claim_preview", APPLYING, apply_started_at=timezone.now())

    def cancel(self, run: SyncRun) -> bool:
        """Cancel a queued run at once (True), whatever status ``run`` last showed; ask a
        running one to stop at its next check (``cancel_requested``; False): its worker
        then ends it cancelled. Any other status: RunStateError."""
        if self._move(
            run,
            "cancel",
            CANCELLED,
            expected=QUEUED,
            cancel_requested=True,
            finished_at=timezone.now(),
            error=_("cancelled before it started"),
        ):
            return True
        if self.filter(pk=run.pk, status__in=RUNNING).update(cancel_requested=True):
            run.cancel_requested = True
            return False
        run.status = self._current(run, run.status)
        raise refusal(run, "cancel")

    def discard(self, run: SyncRun) -> bool:
        """Drop a preview nobody will apply (previewed → discarded)."""
        return self._move(run, "discard", DISCARDED, finished_at=timezone.now())

    def discard_previews(self) -> int:
        """Discard every preview in this queryset (expired ones, say); how many went."""
        self._check("discard", PREVIEWED, DISCARDED)
        return self.filter(status=PREVIEWED).update(status=DISCARDED, finished_at=timezone.now())

    def keep_preview(self, run: SyncRun, reason: object) -> bool:
        """Leave a preview whose apply could not start (its job busy, the broker silent)
        to apply later, with a note why; False if it is no preview any more."""
        note = f"{NOT_APPLIED}: {reason}"
        if not self.filter(pk=run.pk, status=PREVIEWED).update(error=note):
            return False
        run.error = note
        return True

    def clear_preview_note(self, run: SyncRun) -> None:
        """A new try at applying a preview: forget the note of an earlier one."""
        self.filter(pk=run.pk, error__startswith=NOT_APPLIED).update(error="")

    # -- the one way a status changes ------------------------------------------------------
    @staticmethod
    def _check(transition: str, old: str, new: str) -> None:
        if (old, new) not in TRANSITIONS[transition]:
            raise RunStateError(
                _("a run that is %(old)s cannot go to %(new)s (%(transition)s)")
                % {"old": old, "new": new, "transition": transition}
            )

    def _move(
        self,
        run: SyncRun,
        transition: str,
        to: str,
        *,
        expected: str | None = None,
        **fields: Any,
    ) -> bool:
        """One conditional UPDATE: ``run`` from ``expected`` (default: the status it holds)
        to ``to``, with ``fields``, if the table allows it and the row is still there."""
        old = expected or run.status
        if (old, to) not in TRANSITIONS[transition]:
            raise refusal(run, transition, to)
        if not self.filter(pk=run.pk, status=old).update(status=to, **fields):
            return False  # moved on meanwhile: the caller reads it again if it cares
        run.status = to
        for name, value in fields.items():
            if not isinstance(value, Combinable):
                setattr(run, name, value)
        return True

    def _end(self, run: SyncRun, transition: str, to: str, progress: Progress | None) -> bool:
        """End ``run`` in ``to``, saving every field it holds (what ``save()`` wrote), then
        tell the caller's progress and send its mail."""
        now = timezone.now()
        fields = {**_fields(run), "finished_at": now}
        if to == PREVIEWED:
            fields["previewed_at"] = now
        if not self._move(run, transition, to, **fields):
            return False
        _tell(progress, to)
        _finished(run)
        return True

    def _current(self, run: SyncRun, default: str) -> str:
        found = self.filter(pk=run.pk).values_list("status", flat=True).first()
        return found if found is not None else default


def _fields(run: SyncRun) -> dict[str, Any]:
    """Every field of ``run`` that ``save()`` writes, but its primary key and status."""
    return {
        f.attname: getattr(run, f.attname)
        for f in run._meta.concrete_fields
        if not f.primary_key and f.attname != "status"
    }


def _tell(progress: Progress | None, status: str) -> None:
    if progress is not None and progress.on_status:
        progress.on_status(status)


def _finished(run: SyncRun) -> None:
    from djsync.signals import run_finished

    run_finished.send(sender=type(run), run=run)  # the run's mail listens (djsync.apps)


def _untransacted(run: SyncRun) -> bool:
    """Whether one of the run's targets is not a database (a rollback cannot undo it)."""
    from django.core.exceptions import ImproperlyConfigured

    from djsync.mapping.registry import get_importer_class, split_names

    try:
        classes = [get_importer_class(name) for name in split_names(run.job.importer)]
    except ImproperlyConfigured:
        return False
    return any(c.target_class is not None and not c.target_class.transactional for c in classes)

"""One poll of a watched job: what ``djsync.watch_job`` does on beat's interval, and
``runsync --watch`` in the foreground.

A poll is skipped while the job is disabled, while a run of it is queued or under way (the
poll is not queued behind it) and while it backs off after failures. A **cursor** poll is
a run of the job through the one orchestrator (trigger "watch") that reads from the saved
cursor; a run that changed nothing (and only repeats the row errors of the last one, if
any) is deleted, so an idle source leaves no history. A
**folder** poll runs each ready file of the drop folder (djsync.watch.folder), one run per
file, kept in the history whatever it did: the run's id names the file in done/ or failed/.

A cursor poll that fails, or a drop folder that cannot be opened, is a failed run; the
first of a streak is mailed like any failed run, the next ones are recorded unmailed, and
the polls between wait the job's interval doubled at each failure in a row (at most
WATCH_BACKOFF_MAX seconds), so a source that stays down leaves a bounded trail. The
streak lives in ``job.state["watch"]``; a good poll ends it. A dropped file whose run
fails is no failed poll: that file goes to failed/ (and is mailed), the next one is taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import PurePath
from typing import IO, Any

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.exceptions import ConfigurationError, RunLocked
from djsync.models import SyncJob, SyncRun
from djsync.runs import locks, notifications, orchestrator
from djsync.runs.steps import make_importers
from djsync.sources.drops import DropFolder
from djsync.uploads import display_name
from djsync.watch.folder import Claim, Drop
from djsync.watch.modes import FOLDER, interval, watch_mode

__all__ = ["Outcome", "busy", "poll"]

Trigger = SyncRun.Trigger


@dataclass
class Outcome:
    """What one poll did."""

    #: "idle" (nothing new), "applied", "failed", "busy" (a run of the job is under way),
    #: "waiting" (backing off after failures), "off" (disabled, or nothing to watch).
    state: str
    #: The runs it kept in the history (a cursor poll's, or one per dropped file).
    runs: list[SyncRun] = field(default_factory=list)
    #: Where each dropped file went, relative to the folder: "done/12-orders.csv".
    moved: list[str] = field(default_factory=list)
    error: str = ""


def poll(job: SyncJob | int) -> Outcome:
    """Poll ``job`` once (see the module's docstring)."""
    job = SyncJob.objects.get(pk=job.pk if isinstance(job, SyncJob) else job)
    mode = watch_mode(job)
    if not job.enabled or mode is None:
        return Outcome("off")
    if _waiting(job):
        return Outcome("waiting")
    if busy(job):
        return Outcome("busy")
    if mode == FOLDER:
        return _poll_folder(job)
    return _poll_cursor(job)


def busy(job: SyncJob) -> bool:
    """Whether a run of ``job`` is queued or under way (or another process holds its lock)."""
    if SyncRun.objects.filter(job=job, status__in=SyncRun.ACTIVE).exists():
        return True
    return bool(locks.job_lock(job.pk).holder())


# -- cursor --------------------------------------------------------------------------------
def _poll_cursor(job: SyncJob) -> Outcome:
    token = notifications.held.set(True)
    try:
        run = orchestrator.run(job, trigger=Trigger.WATCH)
    except RunLocked as exc:  # lost the race for the lock: no run, no mail
        _forget(getattr(exc, "run", None))
        return Outcome("busy")
    except Exception as exc:  # noqa: BLE001 - recorded on the run, mailed once per streak
        failed: SyncRun | None = getattr(exc, "run", None)
        return _failed_poll(job, failed, orchestrator.cause(exc))
    finally:
        notifications.held.reset(token)
    _streak(job, failed=False)
    if not (run.created or run.updated or run.deleted) and _nothing_new(run):
        _forget(run)  # nothing new: no run in the history for it
        return Outcome("idle")
    notifications.run_finished(run)  # warn_on_change
    return Outcome("applied", [run])


def _nothing_new(run: SyncRun) -> bool:
    """Whether a run that wrote nothing says nothing new either: no row error and no
    warning, or the same ones as the job's last kept watch run (a bad record at the cursor
    is read again by every poll: it is recorded once, not every few seconds)."""
    if not (run.errors or run.warnings):
        return True
    last = (
        SyncRun.objects.filter(job_id=run.job_id, trigger=Trigger.WATCH, status=run.status)
        .exclude(pk=run.pk)
        .order_by("-pk")
        .first()
    )
    if last is None or (last.errors, last.warnings) != (run.errors, run.warnings):
        return False
    fields = ("model", "key", "column", "message", "value")  # not the row: reads differ
    return list(last.row_errors.values_list(*fields)[:100]) == list(
        run.row_errors.values_list(*fields)[:100]
    )


# -- drop folder ---------------------------------------------------------------------------
def _poll_folder(job: SyncJob) -> Outcome:
    try:
        folder = _drop_folder(job)
        drop = Drop(folder)
    except Exception as exc:  # noqa: BLE001 - a folder gone or unreadable: a failed poll
        token = notifications.held.set(True)
        try:
            run = _refused(job, exc)
        finally:
            notifications.held.reset(token)
        return _failed_poll(job, run, run.error)
    outcome = Outcome("idle")
    with drop:
        _streak(job, failed=False)
        names = [(name, True) for name in drop.expired()]  # their worker died
        names += [(name, False) for name in drop.ready()]
        for name, claimed in names:
            if len(outcome.runs) >= settings.WATCH_FILES_PER_POLL:
                break
            claim = drop.claim(name, claimed=claimed)
            if claim is None:
                continue  # another poller took it
            ran = _run_file(job, folder, claim)
            if ran is None:
                outcome.state = "busy"
                break
            moved = claim.finish(ran.pk, ok=ran.status == SyncRun.Status.SUCCEEDED)
            outcome.moved += [moved] if moved else []
            outcome.runs.append(ran)
            notifications.run_finished(ran)
    if outcome.runs:
        failed = any(run.status != SyncRun.Status.SUCCEEDED for run in outcome.runs)
        outcome.state = "failed" if failed else "applied"
    return outcome


def _drop_folder(job: SyncJob) -> DropFolder:
    """The job's drop folder, from its source options (checked as every job's)."""
    for importer in make_importers(job):
        source = orchestrator.make_source(job, importer)
        if isinstance(source, DropFolder):
            return source
    raise ConfigurationError(_("job %(name)r has no drop folder") % {"name": job.name})


def _run_file(job: SyncJob, folder: DropFolder, claim: Claim) -> SyncRun | None:
    """Run ``job`` on a claimed file; None when another run took the job's lock first
    (the file is given back)."""
    suffix = PurePath(claim.original).suffix.lstrip(".").lower()
    token = notifications.held.set(True)
    try:
        try:
            handle = claim.open()
        except Exception as exc:  # noqa: BLE001 - refused (a symlink, too big): a failed run
            return _refused(job, exc, source_name=display_name(claim.original))
        with handle:
            return orchestrator.run(
                job,
                file=_named(handle, display_name(claim.original)),
                trigger=Trigger.WATCH,
                source_options={"format": folder.file_options.get("format") or suffix or None},
            )
    except RunLocked as exc:
        _forget(getattr(exc, "run", None))
        claim.release()
        return None
    except Exception as exc:  # noqa: BLE001 - recorded on its run
        failed: SyncRun | None = getattr(exc, "run", None)
        if failed is None:
            raise
        return failed
    finally:
        notifications.held.reset(token)


def _refused(job: SyncJob, exc: BaseException, *, source_name: str = "") -> SyncRun:
    """A failed run of ``job`` for what stopped it before its source could be read."""
    run = orchestrator.new_run(
        job,
        trigger=Trigger.WATCH,
        dry_run=False,
        user=None,
        options={},
        status=SyncRun.Status.READING,
        started_at=timezone.now(),
        source_name=source_name,
    )
    orchestrator.fail(run, exc)
    return run


def _named(handle: IO[bytes], name: str) -> IO[bytes]:
    """The file as its run names it: the name it was dropped as."""
    raw: Any = getattr(handle, "raw", handle)
    raw.name = name
    return handle


# -- failures and the backoff --------------------------------------------------------------
def _failed_poll(job: SyncJob, run: SyncRun | None, error: str) -> Outcome:
    """Count the failure; mail it if it is the first of a streak."""
    if _streak(job, failed=True) == 1 and run is not None:
        notifications.run_finished(run)
    return Outcome("failed", [run] if run is not None else [], error=error)


def _streak(job: SyncJob, *, failed: bool) -> int:
    """Record a good poll (the streak ends) or a failed one (the streak grows and the next
    polls wait); the failures in a row."""
    with transaction.atomic(using=SyncJob.objects.db):
        state = (
            SyncJob.objects.select_for_update().filter(pk=job.pk).values_list("state", flat=True)
        ).first() or {}
        if not failed and "watch" not in state:
            return 0
        watch: dict[str, Any] = dict(state.pop("watch", None) or {})
        if failed:
            failures = int(watch.get("failures", 0)) + 1
            delay = min(interval(job) * 2**failures, float(settings.WATCH_BACKOFF_MAX))
            watch = {
                "failures": failures,
                "retry_at": (timezone.now() + timedelta(seconds=delay)).isoformat(),
            }
            state["watch"] = watch
        else:
            failures = 0
        SyncJob.objects.filter(pk=job.pk).update(state=state)
    job.state = state
    return failures


def _waiting(job: SyncJob) -> bool:
    retry_at = ((job.state or {}).get("watch") or {}).get("retry_at")
    when = parse_datetime(retry_at) if isinstance(retry_at, str) else None
    return when is not None and when > timezone.now()


def _forget(run: SyncRun | None) -> None:
    if run is not None and run.pk:
        SyncRun.objects.filter(pk=run.pk).delete()

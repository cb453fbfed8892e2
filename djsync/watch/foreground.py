"""``runsync --watch JOB``: a job's watch in the foreground, one poll every interval.

Ctrl-C (or SIGTERM) stops it after the poll under way (its runs end and its files are
moved first); a second Ctrl-C stops at once (a claimed file then waits in processing/ for
its lease to end).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils.translation import gettext as _

from djsync.exceptions import ConfigurationError
from djsync.models import SyncJob
from djsync.runs.stopping import stop_on_signal
from djsync.watch.modes import interval, watch_mode
from djsync.watch.poll import Outcome, poll


def describe(outcome: Outcome) -> list[str]:
    """A line per run a poll kept, or about why it did nothing (none for an idle poll)."""
    if outcome.state == "waiting":
        return [_("backing off after failures; the next poll is later")]
    if outcome.state == "busy":
        return [_("a run of the job is under way: poll skipped")]
    if outcome.state == "failed" and not outcome.runs:
        return [_("poll failed: %(error)s") % {"error": outcome.error}]
    lines = []
    for number, run in enumerate(outcome.runs):
        moved = outcome.moved[number] if number < len(outcome.moved) else ""
        line = _(
            "run #%(run)s %(status)s: %(created)s created, %(updated)s updated, "
            "%(deleted)s deleted, %(errors)s row errors"
        ) % {
            "run": run.pk,
            "status": run.get_status_display(),
            "created": run.created,
            "updated": run.updated,
            "deleted": run.deleted,
            "errors": run.errors,
        }
        if run.error:
            line += f" ({run.error})"
        lines.append(f"{line} → {moved}" if moved else line)
    return lines


def watch(job: SyncJob, write: Callable[[str], Any]) -> None:
    """Poll ``job`` until Ctrl-C or SIGTERM, writing what each poll did."""
    if watch_mode(job) is None:
        raise ConfigurationError(
            _(
                "job %(name)r has nothing to watch: its source must read incrementally or be "
                "a drop folder"
            )
            % {"name": job.name}
        )
    every = interval(job)
    notice = _("Stopping after this poll (Ctrl-C again to stop at once)…")
    with stop_on_signal(write, notice) as stopping:
        write(
            _("Watching job %(name)s every %(every)s s; Ctrl-C stops.")
            % {"name": job.name, "every": format(every, "g")}
        )
        while not stopping.is_set():
            for line in describe(poll(job)):
                write(line)
            stopping.wait(every)
    write(_("Stopped."))

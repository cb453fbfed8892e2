"""``runsync --follow JOB``: a real-time consumer in the foreground, for development.

Ctrl-C (or SIGTERM) stops it between batches: the batch under way is applied and its
changes deleted first; a second Ctrl-C stops at once (the batch's transaction rolls back
and its changes are claimed again when their lease runs out).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils.translation import gettext as _

from djsync.exceptions import ConfigurationError
from djsync.models import SyncJob
from djsync.realtime import consumer
from djsync.runs.stopping import stop_on_signal


def describe(outcome: consumer.Outcome) -> str:
    """One line per batch."""
    run = outcome.run
    if outcome.state == "waiting":
        return _(
            "%(changes)s changes wait: the target is unavailable (run #%(run)s): %(error)s"
        ) % {
            "changes": outcome.changes,
            "run": run.pk if run is not None else "-",
            "error": outcome.error,
        }
    if outcome.state == "failed":
        line = _("%(changes)s changes failed (run #%(run)s): %(error)s") % {
            "changes": outcome.changes,
            "run": run.pk if run is not None else "-",
            "error": outcome.error,
        }
        if outcome.parked:
            line += _(" (%(parked)s parked)") % {"parked": outcome.parked}
        return line
    if run is None:
        return _("%(changes)s changes: the target was up to date") % {"changes": outcome.changes}
    return _(
        "%(changes)s changes: run #%(run)s, %(created)s created, %(updated)s updated, "
        "%(deleted)s deleted"
    ) % {
        "changes": outcome.changes,
        "run": run.pk,
        "created": run.created,
        "updated": run.updated,
        "deleted": run.deleted,
    }


def follow(job: SyncJob, write: Callable[[str], Any]) -> None:
    """Consume ``job``'s changes until Ctrl-C or SIGTERM, writing a line per batch."""
    if not job.realtime:
        raise ConfigurationError(
            _("job %(name)r is not a real-time job: set its real time switch first")
            % {"name": job.name}
        )
    notice = _("Stopping after this batch (Ctrl-C again to stop at once)…")
    with stop_on_signal(write, notice) as stopping:
        write(
            _("Following job %(name)s: changes are applied as they come; Ctrl-C stops.")
            % {"name": job.name}
        )
        consumer.follow(job, stop=stopping.is_set, on_batch=lambda o: write(describe(o)))
    write(_("Stopped."))

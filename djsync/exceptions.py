"""The one exception hierarchy of djsync: every failure a user can meet is one of these."""

from __future__ import annotations

from django.utils.translation import gettext as _
from django.utils.translation import ngettext, pgettext


class DjsyncError(Exception):
    """Base class of every djsync error."""


class ConfigurationError(DjsyncError):
    """A job, importer or option is wrongly set up."""


class SourceError(DjsyncError):
    """The source cannot be read at all: missing file, bad encoding, corrupt workbook.

    Carries the file and, where known, the row and column so the message can point at
    the exact place.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.source = source
        self.row = row
        self.column = column
        where = []
        if source:
            where.append(str(source))
        if row is not None:
            where.append(f"row {row}")
        if column:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.message = message


class TransientSourceError(SourceError):
    """A source failure that may pass by itself (timeout, 5xx, file not there yet)."""


class TargetError(DjsyncError):
    """The target cannot be written (e.g. an export path); nothing was left half-written."""


class TargetUnavailable(TargetError):
    """The target as a whole cannot be read or written now — down, refusing the
    credentials, past its deadline — whatever the rows: a real-time consumer waits and
    tries again instead of parking the changes (docs/realtime.md). A target raises it;
    an item it refuses is a refusal instead."""


class MappingError(DjsyncError):
    """The source's columns do not fit the importer (e.g. a key column is missing)."""


class LimitExceeded(DjsyncError):
    """The plan does more than a limit allows; nothing was written."""


class DeleteGuardError(LimitExceeded):
    """The plan would delete too large a share of the rows in scope; nothing was written."""


class RowErrorsFound(DjsyncError):
    """The source has bad rows and the job is set to fail on them; nothing was written."""


class ConflictError(DjsyncError):
    """The target changed since the plan was previewed; nothing was written."""


def stale_error(model: str, conflicts: list[tuple[str, str]], total: int) -> ConflictError:
    """The one error of a stale preview: the first conflicting keys, and how many more."""
    shown = ", ".join(f"{key} ({why})" for key, why in conflicts)
    more = (
        _(" and %(count)s more") % {"count": total - len(conflicts)}
        if total > len(conflicts)
        else ""
    )
    return ConflictError(
        _(
            "%(model)s: the target changed since the preview: %(shown)s%(more)s. Nothing written; "
            "preview again."
        )
        % {"model": model, "shown": shown, "more": more}
    )


def changed_while_planned(model: str, count: int, expected: int, what: str) -> ConflictError:
    """A staged write touched ``count`` rows where the plan counted ``expected``: another
    writer changed the target between planning and writing."""
    verb = {
        "created": pgettext("rows", "created"),
        "updated": pgettext("rows", "updated"),
        "deleted": pgettext("rows", "deleted"),
    }.get(what, what)
    return ConflictError(
        ngettext(
            "%(model)s: the target changed while the run was planned (%(count)s row "
            "%(what)s instead of %(expected)s); nothing written, run again",
            "%(model)s: the target changed while the run was planned (%(count)s rows "
            "%(what)s instead of %(expected)s); nothing written, run again",
            count,
        )
        % {"model": model, "count": count, "what": verb, "expected": expected}
    )


class RunLocked(DjsyncError):
    """Another run of the same job is active."""


class RunCancelled(DjsyncError):
    """The run was cancelled before it wrote anything."""


class RunStateError(ConfigurationError):
    """The run is not in a state that allows this (e.g. applying a run that is not a
    preview any more); the run itself is left as it is."""


class QueueError(DjsyncError):
    """A run could not be handed to a worker (the broker did not answer, or no worker took
    it); the run is marked failed and nothing was written."""


class PartitionError(DjsyncError):
    """A partition of a run split across workers failed after its retries
    (djsync.runs.partitions): the run ends failed, nothing written."""

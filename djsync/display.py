"""How a run's times, durations and progress are written, the same way at every door (the
admin, mails, ``runsync``, reports): times in the site's current time zone in Django's
formats, durations humanized one way, progress as done of total, rate and time left."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.formats import date_format, number_format
from django.utils.translation import gettext as _

from djsync.models import SyncRun
from djsync.runs.progress import Estimate, estimate

#: What a missing time or duration reads.
NONE = "—"


def when(value: datetime | None, format: str = "DATETIME_FORMAT") -> str:
    """A moment in the current time zone (the site's TIME_ZONE unless a request activated
    another), in one of Django's formats (``DATETIME_FORMAT``, ``SHORT_DATETIME_FORMAT``)."""
    if value is None:
        return NONE
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return date_format(value, format)


def duration(seconds: float | None) -> str:
    """Seconds as people read them: ``0.42 s``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``."""
    if seconds is None:
        return NONE
    seconds = max(float(seconds), 0.0)
    if seconds < 10:
        return _("%(s)s s") % {"s": number_format(seconds, 2)}
    if seconds < 60:
        return _("%(s)s s") % {"s": number_format(seconds, 1)}
    whole = round(seconds)
    if whole < 3600:
        return _("%(m)d min %(s)02d s") % {"m": whole // 60, "s": whole % 60}
    return _("%(h)d h %(m)02d min") % {"h": whole // 3600, "m": whole % 3600 // 60}


def run_estimate(run: SyncRun, *, now: float | None = None) -> Estimate | None:
    """The estimate of a running run's current phase, from what it recorded; an apply that
    recorded nothing yet (its first batch, or SQLite until it commits) still has its total:
    the plan's changes."""
    if run.status not in (SyncRun.Status.READING, SyncRun.Status.APPLYING):
        return None
    recorded = run.progress or {}
    if recorded.get("phase") == run.status:
        return estimate(recorded, now=now)
    if run.status == SyncRun.Status.APPLYING:
        total = run.created + run.updated + run.deleted
        return Estimate(
            phase=run.status,
            done=run.rows_applied,
            total=total,
            unit="changes",
            percent=round(100 * min(run.rows_applied / total, 1.0), 1) if total else None,
            rate=None,
            rate_unit="changes",
            remaining=None,
            rows=run.rows_read,
        )
    return None


def _amount(value: int, unit: str) -> str:
    if unit == "bytes":
        return str(filesizeformat(value))
    return number_format(value, force_grouping=True)


def progress_text(found: Estimate | None) -> str:
    """One line: ``1.2 MB of 4.8 MB read (25.0%), 12,345 rows, 2,100 rows/s, about 6.00 s
    left`` — what is known of it."""
    if found is None:
        return ""
    parts: list[str] = []
    done = _amount(found.done, found.unit)
    units = {
        "bytes": "",
        "pages": _("pages"),
        "records": _("records"),
        "changes": _("changes"),
        "rows": _("rows"),
    }
    unit = units.get(found.unit, found.unit)
    if found.total is not None:
        text = _("%(done)s of %(total)s %(unit)s") % {
            "done": done,
            "total": _amount(found.total, found.unit),
            "unit": unit,
        }
        if found.percent is not None:
            text += f" ({number_format(found.percent, 1)}%)"
        parts.append(text.replace("  ", " ").strip())
    else:
        parts.append(f"{done} {unit}".strip())
    if found.unit not in ("rows", "changes") and found.rows:
        parts.append(_("%(rows)s rows") % {"rows": number_format(found.rows, force_grouping=True)})
    if found.rate:
        rate_unit = _("changes/s") if found.rate_unit == "changes" else _("rows/s")
        parts.append(f"{number_format(round(found.rate), force_grouping=True)} {rate_unit}")
    if found.remaining is not None:
        parts.append(_("about %(time)s left") % {"time": duration(found.remaining)})
    text = ", ".join(parts)
    if found.partitions:
        text += "; " + partitions_text(found.partitions)
    return text


#: Partitions named one by one in a progress line; the others are counted.
SHOWN_PARTITIONS = 8


def partitions_text(partitions: tuple[dict[str, Any], ...]) -> str:
    """``partitions: #1 done, #2 45%, #3 12% (4 of 4 reading)``: each partition's share of
    its range read, for a run split across workers."""
    shown = []
    for p in partitions[:SHOWN_PARTITIONS]:
        if p.get("finished"):
            shown.append(_("#%(n)s done") % {"n": int(p.get("part", 0)) + 1})
        else:
            total = int(p.get("total") or 0)
            share = f"{number_format(100 * min(int(p.get('done') or 0) / total, 1), 0)}%"
            shown.append(f"#{int(p.get('part', 0)) + 1} {share if total else '…'}")
    done = sum(1 for p in partitions if p.get("finished"))
    return _("partitions: %(shown)s (%(done)s of %(n)s done)") % {
        "shown": ", ".join(shown),
        "done": done,
        "n": len(partitions),
    }


def estimate_data(run: SyncRun) -> dict[str, Any]:
    """The estimate as JSON for a status endpoint: its fields and its text (empty: none)."""
    found = run_estimate(run)
    return {
        "progress": None if found is None else found.as_dict(),
        "progress_text": progress_text(found),
    }

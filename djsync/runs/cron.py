"""A job's schedule as text: a crontab line (``"*/15 * * * *"``) or an interval
(``"every 10 minutes"``), parsed and checked without the scheduler (djsync.runs.schedules)."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext as _

_INTERVAL = re.compile(
    r"^every\s+(?:(?P<every>\d+)\s+)?(?P<unit>second|minute|hour|day)s?$", re.IGNORECASE
)
_CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def parse_schedule(text: str) -> tuple[str, dict[str, Any]]:
    """``("interval", {"every": 10, "period": "minutes"})`` or ``("crontab", {fields})``.

    Raises ValueError with a message a user can act on.
    """
    text = " ".join((text or "").split())
    match = _INTERVAL.match(text)
    if match:
        every = int(match["every"] or 1)
        if every < 1:
            raise ValueError(_("an interval must be at least 1"))
        return "interval", {"every": every, "period": match["unit"].lower() + "s"}
    parts = text.split(" ")
    if len(parts) != len(_CRON_FIELDS):
        raise ValueError(
            _(
                "%(text)r is neither a crontab (5 fields: minute hour day month weekday, e.g. "
                '"*/15 * * * *") nor an interval (e.g. "every 10 minutes")'
            )
            % {"text": text}
        )
    fields = dict(zip(_CRON_FIELDS, parts, strict=True))
    from djsync.extras import require

    schedules = require("celery.schedules", "a job's schedule")
    ParseException, crontab = schedules.ParseException, schedules.crontab

    try:
        crontab(**fields)
    except (ParseException, ValueError) as exc:
        raise ValueError(_("%(text)r: bad crontab: %(exc)s") % {"text": text, "exc": exc}) from None
    return "crontab", fields


def validate_schedule(text: str) -> str | None:
    """The error message for a bad schedule, or None when it is valid (or empty)."""
    if not text:
        return None
    try:
        parse_schedule(text)
    except (ValueError, ImproperlyConfigured) as exc:  # or no Celery to run it (an extra)
        return str(exc).removeprefix("djsync: ")
    return None

"""An HTTP source's pages: its pagination options checked, dotted paths into a page's JSON,
and the total a page declares (records or pages) for the run's progress."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext

from djsync.exceptions import ConfigurationError
from djsync.sources.http_limits import StreamedList

PAGINATION_STYLES = ("page", "offset", "cursor", "next")
#: Pagination options that are whole numbers.
PAGINATION_NUMBERS = ("start", "size", "limit")
#: Pagination options that are dotted paths to a total in a page: of records, of pages.
PAGINATION_TOTALS = {"total": "records", "total_pages": "pages"}


def check_pagination(name: str, pagination: dict[str, Any]) -> None:
    """Refuse a pagination style that is not one of PAGINATION_STYLES, a number option that
    is not a whole number ≥ 0, a total that is not a dotted path."""
    style = pagination.get("style")
    if pagination and style not in PAGINATION_STYLES:
        raise ConfigurationError(
            gettext("%(name)s: pagination style must be one of %(pagination_styles)s")
            % {"name": name, "pagination_styles": ", ".join(PAGINATION_STYLES)}
        )
    for option in PAGINATION_NUMBERS:
        value = pagination.get(option)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise ConfigurationError(
                gettext("%(name)s: pagination %(option)s must be a whole number ≥ 0, not %(value)r")
                % {"name": name, "option": option, "value": value}
            )
    for option in PAGINATION_TOTALS:
        value = pagination.get(option)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigurationError(
                gettext(
                    "%(name)s: pagination %(option)s is the dotted path to a number in each "
                    "response, not %(value)r"
                )
                % {"name": name, "option": option, "value": value}
            )


def declared_total(pagination: dict[str, Any], document: Any) -> tuple[int, str] | None:
    """``(total, "records" | "pages")`` that a page's JSON declares at the pagination's
    ``total`` or ``total_pages`` path; None when it declares none (a missing or odd value
    is no total: progress without one, never an error)."""
    for option, unit in PAGINATION_TOTALS.items():
        path = pagination.get(option)
        if not path:
            continue
        try:
            value = dig(document, path)
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, unit
    return None


def dig(data: Any, path: str | None) -> Any:
    """``dig({"a": {"b": [1]}}, "a.b")`` → ``[1]``; a missing step raises KeyError."""
    if not path:
        return data
    for step in path.split("."):
        if isinstance(data, StreamedList):
            # The records of a page were handed out as they came: first and last are kept.
            index = int(step) if step.lstrip("-").isdigit() else None
            if index in (0, -data.count) and data.count:
                data = data.first
            elif index in (-1, data.count - 1) and data.count:
                data = data.last
            else:
                raise KeyError(step)
        elif isinstance(data, dict):
            data = data[step]
        elif isinstance(data, list) and step.lstrip("-").isdigit():
            data = data[int(step)]
        else:
            raise KeyError(step)
    return data

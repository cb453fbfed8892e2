"""Page ranges of an HTTP source: how a paged API is split across a run's partitions.

A page-number or offset pagination whose pages have a known size, and whose first page
declares the total (the pagination's ``total`` or ``total_pages``), can be read in ranges
of pages: each partition asks for its own pages, with the same base URLs, credentials,
limits and retries as one process (the source itself reads them, djsync.sources.http), and
numbers its records from where its first page starts in the whole feed. A cursor or
next-link pagination can only be followed page after page: such a source is read in one
process. The last range has no end: it reads until the API says there is no more, as one
process would.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from django.utils.translation import gettext as _

from djsync.sources.http import HttpSource


@dataclass(frozen=True)
class PageRange:
    """Pages from ``first`` (a page number, or an offset: what the pagination sends) on,
    ``pages`` of them (None: to the last); ``first_row``: its first record's number in the
    whole feed; ``records``: about how many records it holds (for progress)."""

    first: int
    pages: int | None
    first_row: int
    records: int


def _size(source: HttpSource) -> int | None:
    p = source.pagination
    if p.get("style") == "offset":
        return int(p.get("limit", 100))
    return int(p["size"]) if p.get("size") else None


def unsplittable(source: HttpSource) -> str | None:
    """Why ``source`` cannot be read in ranges of pages (None: it can)."""
    style = source.pagination.get("style")
    if style is None:
        return _("the HTTP source is not paginated")
    if style in ("cursor", "next"):
        return _(
            "its %(style)s pagination can only be followed page after page (a page or "
            "offset pagination can be split)"
        ) % {"style": style}
    if not (source.pagination.get("total") or source.pagination.get("total_pages")):
        return _("its pagination declares no total (the pagination options total or total_pages)")
    if not _size(source):
        return _("its page size is not known (the pagination option size)")
    return None


def cut(source: HttpSource, parts: int) -> tuple[list[PageRange], list[str]] | str:
    """Ranges of about as many pages each, after reading the first page for the total
    the API declares (and the records' columns); a reason when it cannot be split."""
    probe = copy.copy(source)
    probe.page_span = (_start(source), 1)
    for _record in probe.read():
        pass
    size = _size(source) or 1
    if probe.declared is None:
        return _("its first page declares no total")
    total, unit = probe.declared
    pages = total if unit == "pages" else math.ceil(total / size)
    if pages > source.max_pages:  # one process stops there, with its own message
        return _("it declares more pages than max_pages")
    parts = min(parts, pages)
    if parts < 2:
        return _("it has one page only")
    ranges = []
    for k in range(parts):
        begin, end = pages * k // parts, pages * (k + 1) // parts
        last = k == parts - 1
        step = size if source.pagination.get("style") == "offset" else 1
        first = _start(source) + begin * step
        records = (end - begin) * size
        if last and unit == "records":
            records = total - begin * size
        ranges.append(PageRange(first, None if last else end - begin, begin * size + 1, records))
    return ranges, list(probe.columns or [])


def _start(source: HttpSource) -> int:
    style = source.pagination.get("style")
    return int(source.pagination.get("start", 1 if style == "page" else 0))


def narrow(source: HttpSource, page_range: PageRange) -> HttpSource:
    """A copy of ``source`` that reads only the pages of ``page_range``."""
    ranged = copy.copy(source)
    ranged.page_span = (page_range.first, page_range.pages)
    ranged.first_row = page_range.first_row
    return ranged


__all__ = ["PageRange", "cut", "narrow", "unsplittable"]

"""How far a run has got: the callbacks a caller (progress bar, Celery task, the run's
monitor) passes to a run, what a source says of its own extent, and the estimate (done of
total, rate, time left) that every door shows from what the run recorded."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

#: The units progress is counted in: a file's bytes, an API's pages, the records an API
#: declares, a plan's changes; rows when the source cannot say how far it is.
UNITS = ("bytes", "pages", "records", "changes", "rows")


@dataclass(frozen=True)
class Extent:
    """How far a source's read has got: ``done`` of ``total`` (None: not known) ``unit``.

    A file counts its bytes against its size (known for free, bounded); an HTTP API its
    pages, against the number of records or pages it declares when it does."""

    done: int
    total: int | None
    unit: str


@dataclass
class Progress:
    """Progress callbacks a caller (progress bar, Celery task) can pass to a run.

    ``on_read(rows)`` as rows are read, ``on_extent(extent)`` just before, when the source
    can say how far through it the read is (:class:`Extent`); ``on_apply(done, total)`` as
    actions are written, ``on_status(status)`` each time the run's status changes
    (djsync.runs.lifecycle).
    """

    on_read: Callable[[int], None] | None = None
    on_apply: Callable[[int, int], None] | None = None
    on_status: Callable[[str], None] | None = None
    on_extent: Callable[[Extent], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def snapshot(
    phase: str, since: float, *, done: int, total: int | None, unit: str, rows: int
) -> dict[str, Any]:
    """What a run records of its progress (``SyncRun.progress``): the phase and when it
    began, ``done`` of ``total`` ``unit``, the rows read, and when this was true (epoch
    seconds, so that any process can compute a rate)."""
    return {
        "phase": phase,
        "since": round(since, 3),
        "at": round(time.time(), 3),
        "done": int(done),
        "total": None if total is None else int(total),
        "unit": unit,
        "rows": int(rows),
    }


@dataclass(frozen=True)
class Estimate:
    """A run's progress as every door shows it: ``done`` of ``total`` ``unit`` (total None:
    indeterminate), the share done, the rate in ``rate_unit`` a second, and the seconds
    left (None when the total is not known or nothing is done yet)."""

    phase: str
    done: int
    total: int | None
    unit: str
    percent: float | None
    rate: float | None
    rate_unit: str
    remaining: float | None
    rows: int
    #: A run split across workers (djsync.runs.partitions): each partition's figures —
    #: ``part``, ``rows``, ``done`` and ``total`` bytes, ``finished``.
    partitions: tuple[dict[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate(recorded: dict[str, Any] | None, *, now: float | None = None) -> Estimate | None:
    """The estimate from what a run recorded (:func:`snapshot`), as of ``now``; None when
    it recorded nothing yet. The rate is the phase's average (rows read a second while
    reading, changes written a second while applying); the time left scales the time spent
    by the share still to go, less the time since the record."""
    if not recorded or "phase" not in recorded:
        return None
    now = time.time() if now is None else now
    done, total = int(recorded.get("done") or 0), recorded.get("total")
    rows, unit = int(recorded.get("rows") or 0), str(recorded.get("unit") or "")
    since, at = float(recorded.get("since") or 0), float(recorded.get("at") or 0)
    elapsed = max(at - since, 0.0)
    counted = done if unit == "changes" else rows
    rate = counted / elapsed if elapsed > 0 and counted else None
    percent = remaining = None
    if total:
        share = min(done / total, 1.0)
        percent = round(100 * share, 1)
        if 0 < share and elapsed > 0:
            remaining = max(elapsed * (1 - share) / share - max(now - at, 0.0), 0.0)
    return Estimate(
        phase=str(recorded["phase"]),
        done=done,
        total=None if total is None else int(total),
        unit=unit,
        percent=percent,
        rate=None if rate is None else round(rate, 1),
        rate_unit="changes" if unit == "changes" else "rows",
        remaining=None if remaining is None else round(remaining, 1),
        rows=rows,
        partitions=tuple(p for p in recorded.get("partitions") or () if isinstance(p, dict)),
    )

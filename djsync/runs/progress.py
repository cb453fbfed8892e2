"""Progress callbacks a caller (progress bar, Celery task, the run's monitor) passes to a run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Progress:
    """Progress callbacks a caller (progress bar, Celery task) can pass to a run.

    ``on_read(rows)`` as rows are read, ``on_apply(done, total)`` as actions are written,
    ``on_status(status)`` each time the run's status changes (djsync.runs.lifecycle).
    """

    on_read: Callable[[int], None] | None = None
    on_apply: Callable[[int, int], None] | None = None
    on_status: Callable[[str], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

"""Ctrl-C and SIGTERM for the commands that work in the foreground (``runsync --follow``,
``runsync --watch``): the first asks to stop after the work under way, the second stops at
once (KeyboardInterrupt)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def stop_on_signal(write: Callable[[str], Any], notice: str) -> Iterator[threading.Event]:
    """An event set by the first Ctrl-C or SIGTERM (``notice`` is written then); the
    handlers that were there before are put back on the way out."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stopping.is_set():
            raise KeyboardInterrupt
        stopping.set()
        write(notice)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopping
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)

"""The kinds of source a job's options may name (``{"kind": "file", ...}``), by name."""

from __future__ import annotations

from djsync.sources.base import Source
from djsync.sources.derived import DerivedSource
from djsync.sources.files import FileSource
from djsync.sources.http import HttpSource
from djsync.sources.querysets import QuerySetSource
from djsync.sources.sql import SqlSource

_kinds: dict[str, type[Source]] = {
    "file": FileSource,
    "http": HttpSource,
    "sql": SqlSource,
    "queryset": QuerySetSource,
    "derived": DerivedSource,
}


def register_source(kind: str, cls: type[Source]) -> None:
    """Make ``{"kind": kind, ...}`` in source options build a ``cls``.

    From code (``get_source(options, trusted=True)``) the options go to ``cls(**options)``;
    from a job they go through ``cls.from_job()``, which refuses unless ``cls`` overrides it
    to say which job options are safe (docs/sources.md, "Custom sources").
    """
    _kinds[kind] = cls


def source_kinds() -> dict[str, type[Source]]:
    """The registered kinds of source, by name."""
    return dict(_kinds)

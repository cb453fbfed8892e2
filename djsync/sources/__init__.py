"""Sources: where records come from. ``get_source()`` builds one from a job's options."""

from __future__ import annotations

from typing import Any

from ..exceptions import ConfigurationError
from .base import Source
from .derived import DerivedSource
from .files import FileSource
from .http import HttpSource
from .querysets import QuerySetSource
from .sql import SqlSource

__all__ = [
    "DerivedSource",
    "FileSource",
    "HttpSource",
    "QuerySetSource",
    "Source",
    "SqlSource",
    "get_source",
    "register_source",
]

_kinds: dict[str, type[Source]] = {
    "file": FileSource,
    "http": HttpSource,
    "sql": SqlSource,
    "queryset": QuerySetSource,
    "derived": DerivedSource,
}


def register_source(kind: str, cls: type[Source]) -> None:
    """Make ``{"kind": kind, ...}`` in a job's source options build ``cls(**options)``."""
    _kinds[kind] = cls


def get_source(options: dict[str, Any]) -> Source:
    """Build a source from a job's ``source`` options, e.g. ``{"path": "products.csv"}``."""
    options = dict(options or {})
    kind = options.pop("kind", "file")
    try:
        cls = _kinds[kind]
    except KeyError:
        raise ConfigurationError(
            f"unknown source kind {kind!r} (known: {', '.join(sorted(_kinds))})"
        ) from None
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigurationError(f"bad options for a {kind} source: {exc}") from None

"""Sources: where records come from. ``get_source()`` builds one from a job's options."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from djsync.exceptions import ConfigurationError
from djsync.sources import policy
from djsync.sources.base import Source
from djsync.sources.derived import DerivedSource
from djsync.sources.drops import DropFolder
from djsync.sources.files import FileSource
from djsync.sources.http import HttpSource
from djsync.sources.kinds import _kinds, register_source, source_kinds
from djsync.sources.policy import JobContext
from djsync.sources.querysets import QuerySetSource
from djsync.sources.sql import SqlSource

__all__ = [
    "DerivedSource",
    "DropFolder",
    "FileSource",
    "HttpSource",
    "QuerySetSource",
    "Source",
    "SqlSource",
    "get_source",
    "register_source",
    "source_kinds",
]


def get_source(
    options: dict[str, Any],
    *,
    trusted: bool = False,
    base: dict[str, Any] | None = None,
    importer: Any = None,
    job: str = "",
    sibling: Any = None,
) -> Source:
    """Build a source from source options, e.g. ``{"path": "products.csv"}``.

    ``options`` are a job's, untrusted: they may only pick among what the site declared
    (djsync.sources.policy); ``base`` are trusted defaults from code (an importer's
    ``source``), ``importer`` the importer whose declared ``querysets`` a job may pick,
    ``job`` its name for messages. ``trusted=True`` is for options written in code: they
    go to the source class as they are.
    """
    if not trusted:
        context = JobContext(job=job, importer=importer, sibling=sibling)
        return policy.build(_kinds, options or {}, base=base, context=context)
    options = {**(base or {}), **(options or {})}
    kind = options.pop("kind", "file")
    tokens = policy.check_null_tokens(options.pop("null_tokens", None), JobContext())
    try:
        cls = _kinds[kind]
    except (KeyError, TypeError):
        raise ConfigurationError(
            _("unknown source kind %(kind)r (known: %(sorted)s)")
            % {"kind": kind, "sorted": ", ".join(sorted(_kinds))}
        ) from None
    if isinstance(options.get("from"), dict):  # a derived source's own source, from code
        options["from"] = get_source(options["from"], trusted=True)
    try:
        source = cls(**options)
    except TypeError as exc:
        raise ConfigurationError(
            _("bad options for a %(kind)s source: %(exc)s") % {"kind": kind, "exc": exc}
        ) from None
    if tokens:
        source.null_tokens = tokens  # cells that count as empty (BaseImporter.null_tokens)
    return source


register_source("drop", DropFolder)  # a folder under DJSYNC["DROP_ROOTS"] (djsync.watch)

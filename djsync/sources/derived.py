"""Derived source: records computed from another source's rows, e.g. the departments named
in an employees file, so one file can feed a parent model and its children."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.utils.translation import gettext as _

from djsync.exceptions import ConfigurationError, SourceError
from djsync.sources.base import Source


class DerivedSource(Source):
    """Projects another source's records onto ``columns`` and yields each distinct one once.

    Options: ``from`` (the other source's options; in a multi-model job, the name of another
    importer of the job, whose source is used), ``columns`` (``{"new name": "source
    column"}`` or a list of names kept as they are), ``distinct`` (default true), ``skip_empty``
    (default true: a record whose derived values are all empty is skipped).
    """

    first_row = 1

    def __init__(
        self,
        columns: dict[str, str] | list[str] | None = None,
        *,
        distinct: bool = True,
        skip_empty: bool = True,
        name: str | None = None,
        **options: Any,
    ) -> None:
        inner = options.pop("from", None)
        if options:
            raise TypeError(
                _("unexpected options %(sorted)s") % {"sorted": ", ".join(sorted(options))}
            )
        if isinstance(inner, Source):  # built by get_source (a job's through from_job)
            self.inner = inner
        else:
            raise ConfigurationError(_('a derived source needs "from": the source it derives from'))
        if not columns:
            raise ConfigurationError(_("a derived source needs the columns to derive"))
        self.mapping = dict(columns) if isinstance(columns, dict) else {c: c for c in columns}
        self.distinct = distinct
        self.skip_empty = skip_empty
        self.name = name or f"{self.inner.name} (derived: {', '.join(self.mapping)})"
        self.database = self.inner.database
        self.columns = None

    def read(self) -> Iterator[dict[str, Any]]:
        seen: set[tuple[Any, ...]] = set()
        records = self.inner.read()
        first = next(records, None)
        have = set(self.inner.columns or [])
        missing = [c for c in self.mapping.values() if c not in have]
        if first is not None and missing:
            raise SourceError(
                _("no column %(map)s to derive from (it has: %(map2)s)")
                % {
                    "map": ", ".join(map(repr, missing)),
                    "map2": ", ".join(map(repr, self.inner.columns or [])),
                },
                source=self.name,
            )
        self.columns = list(self.mapping)
        if first is None:
            return
        for record in _chain(first, records):
            derived = {new: record.get(old) for new, old in self.mapping.items()}
            values = tuple(_hashable(v) for v in derived.values())
            if self.skip_empty and all(v in (None, "") for v in values):
                continue
            if self.distinct:
                if values in seen:
                    continue
                seen.add(values)
            yield derived


def _hashable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest

"""Key ranges of a declared partition column: how a SQL or queryset source is split.

A split run (djsync.runs.partitions) reads a SQL or queryset source in ranges of one
column the code declares (``{"partition": "id"}``): a whole number, a date or a date and
time (or text: SQLite keeps dates as text). The cut reads the column once, in the source's
database (``NTILE``: ranges of about equal row counts; a value held by very many rows stays
in one range), and each partition reads ``column >= low AND
column < high``; the first range has no low bound, the last no high bound and also holds
the rows whose column is NULL, so every row is in exactly one range, whatever was added
since the cut. Bounds are query parameters, never text put into SQL; the column is a plain
name, quoted by the database.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connections, models, transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from djsync.exceptions import ConfigurationError, SourceError

#: What a partition column may look like: one plain column name (it goes into SQL, quoted).
COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
#: Model fields a queryset source may be split on.
FIELD_TYPES = (models.IntegerField, models.DateField, models.ForeignKey)


def check_column(value: Any, prefix: str = "") -> str | None:
    """A declared partition column (None: none), or an error (``prefix`` names the job or
    the source)."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not COLUMN.match(value):
        raise ConfigurationError(
            prefix
            + _("partition must be a plain column name (letters, digits and _), not %(v)s")
            % {"v": format(repr(value), ".60")}
        )
    return value


def encode(value: Any) -> Any:
    """A bound as JSON (a split run's specs go through Celery): dates and times tagged by
    their type; text as is (SQLite keeps dates as text, compared as the database orders it)."""
    if (
        value is None
        or isinstance(value, str)
        or (isinstance(value, int) and not isinstance(value, bool))
    ):
        return value
    if isinstance(value, datetime.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, datetime.date):
        return {"date": value.isoformat()}
    raise TypeError(type(value).__name__)


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "datetime" in value:
            return datetime.datetime.fromisoformat(value["datetime"])
        return datetime.date.fromisoformat(value["date"])
    return value


@dataclass(frozen=True)
class KeyRange:
    """Rows whose ``column`` is from ``low`` (None: no low bound) to before ``high`` (None:
    no high bound); ``nulls``: the rows whose column is NULL too."""

    column: str
    low: Any = None
    high: Any = None
    nulls: bool = False

    def sql(self, quoted: str) -> tuple[str, list[Any]]:
        """The condition on the column as ``quoted`` in SQL, and its parameters."""
        parts, params = [], []
        if self.low is not None:
            parts.append(f"{quoted} >= %s")
            params.append(self.low)
        if self.high is not None:
            parts.append(f"{quoted} < %s")
            params.append(self.high)
        text = " AND ".join(parts) or "TRUE"
        if self.nulls:
            text = f"({text} OR {quoted} IS NULL)"
        elif not parts:
            text = f"{quoted} IS NOT NULL"
        return text, params

    def q(self) -> Q:
        """The same condition as a queryset filter."""
        where = Q(**{f"{self.column}__isnull": False})
        if self.low is not None:
            where &= Q(**{f"{self.column}__gte": self.low})
        if self.high is not None:
            where &= Q(**{f"{self.column}__lt": self.high})
        return where | Q(**{f"{self.column}__isnull": True}) if self.nulls else where

    def as_json(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "low": encode(self.low),
            "high": encode(self.high),
            "nulls": self.nulls,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyRange:
        return cls(data["column"], decode(data["low"]), decode(data["high"]), data["nulls"])


def cut(
    using: str, inner: str, params: list[Any], column: str, parts: int
) -> list[tuple[KeyRange, int]]:
    """At most ``parts`` ranges of about equal row counts, each with its row count, from the
    query ``inner`` whose one column ``djsync_p`` is the partition column's value; read-only.
    The values are cut in :data:`TILES` times as many tiles as ranges (``NTILE``), then
    grouped: a value held by many rows stays in one range, the others share the rest."""
    sql = (
        "SELECT MIN(djsync_p), COUNT(*) FROM (SELECT djsync_p, NTILE(%s) OVER (ORDER BY "
        f"djsync_p) AS djsync_t FROM ({inner}) djsync_i WHERE djsync_p IS NOT NULL) djsync_n "
        "GROUP BY djsync_t ORDER BY djsync_t"
    )
    nulls = f"SELECT COUNT(*) FROM ({inner}) djsync_i WHERE djsync_p IS NULL"
    with _read_only(using) as cursor:
        cursor.execute(sql, [parts * TILES, *params])
        tiles = cursor.fetchall()
        cursor.execute(nulls, params)
        null_rows = int(cursor.fetchone()[0])
    for low, _rows in tiles[:1]:
        try:
            encode(low)
        except TypeError:
            raise ConfigurationError(
                _(
                    "the partition column %(column)s holds %(type)s values, not whole "
                    "numbers, dates, times or text"
                )
                % {"column": column, "type": type(low).__name__}
            ) from None
    buckets: list[list[Any]] = []  # [low, rows]: tiles that start at the same value merged
    for low, rows in tiles:
        if buckets and low == buckets[-1][0]:
            buckets[-1][1] += int(rows)
        else:
            buckets.append([low, int(rows)])
    groups = _grouped(buckets, parts)
    if not groups:
        return [(KeyRange(column, nulls=True), null_rows)]
    found = []
    for i, (low, rows) in enumerate(groups):
        last = i == len(groups) - 1
        high = None if last else groups[i + 1][0]
        found.append((KeyRange(column, None if i == 0 else low, high, last), rows))
    found[-1] = (found[-1][0], found[-1][1] + null_rows)
    return found


#: Tiles read per range asked for: finer tiles group more evenly around a skewed value.
TILES = 8


def _grouped(buckets: list[list[Any]], parts: int) -> list[tuple[Any, int]]:
    """Consecutive buckets in at most ``parts`` groups of about equal rows: ``(low, rows)``."""
    groups: list[tuple[Any, int]] = []
    left = sum(rows for _low, rows in buckets)
    at = 0
    while at < len(buckets):
        want = left / max(parts - len(groups), 1)
        low, rows = buckets[at][0], 0
        while at < len(buckets) and (rows == 0 or rows + buckets[at][1] / 2 <= want):
            rows += buckets[at][1]
            at += 1
        if len(groups) == parts - 1:  # the last group takes the rest
            rows += sum(r for _low, r in buckets[at:])
            at = len(buckets)
        groups.append((low, rows))
        left -= rows
    return groups


def columns_of(using: str, query: str, params: list[Any]) -> list[str]:
    """The columns a query returns (none of its rows read)."""
    with _read_only(using) as cursor:
        cursor.execute(f"SELECT * FROM ({query}) djsync_q WHERE 1 = 0", params)
        return [col[0] for col in cursor.description or ()]


@contextmanager
def _read_only(using: str) -> Iterator[Any]:
    """A cursor that cannot write (as the SQL source reads), its errors as SourceError."""
    connection = connections[using]
    try:
        with transaction.atomic(using=using), connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("PRAGMA query_only")
                before = cursor.fetchone()[0]
                cursor.execute("PRAGMA query_only = ON")
                try:
                    yield cursor
                finally:
                    cursor.execute(f"PRAGMA query_only = {1 if before else 0}")
                return
            cursor.execute("SAVEPOINT djsync_cut")
            try:
                cursor.execute("SET TRANSACTION READ ONLY")
                yield cursor
            finally:
                cursor.execute("ROLLBACK TO SAVEPOINT djsync_cut")
                cursor.execute("RELEASE SAVEPOINT djsync_cut")
    except DatabaseError as exc:
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SourceError(
            _("cutting the rows into ranges failed: %(line)s") % {"line": line}
        ) from None


__all__ = ["COLUMN", "KeyRange", "check_column", "columns_of", "cut", "decode", "encode"]

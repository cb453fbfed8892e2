"""SQL source: the rows of a query on another configured Django database, streamed, read-only.

On PostgreSQL the query runs in a server-side cursor, so rows arrive ``chunk_size`` at a
time and a large table never sits in this process whole. A query never writes: each chunk
is read in a READ ONLY savepoint (PostgreSQL) or with ``PRAGMA query_only`` (SQLite). A job
names a query declared in ``DJSYNC["SQL_QUERIES"]``; it cannot give SQL (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.db import DatabaseError, connections, transaction
from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.exceptions import ConfigurationError, SourceError
from djsync.sources.base import Source
from djsync.sources.ranges import KeyRange, check_column


def check_alias(using: str, what: str) -> None:
    if using not in connections.settings:
        known = ", ".join(connections.settings) or "none"
        raise ConfigurationError(
            _("%(what)s: no database %(using)r in DATABASES (configured: %(known)s)")
            % {"what": what, "using": using, "known": known}
        )


class SqlSource(Source):
    """Reads the rows of ``query`` on the database alias ``using``.

    Options (from code; a job names a declared query instead, see djsync.sources.policy):
    ``query`` (a SELECT; name the columns as the importer expects them, e.g.
    ``SELECT code AS sku, …``), ``params`` (a list for ``%s`` placeholders), ``using`` (an
    alias of ``DATABASES``), ``chunk_size`` (rows per fetch, default BATCH_SIZE),
    ``incremental`` (``{"column": "updated_at"}``: only rows past the saved cursor, see
    docs/sources.md), ``partition`` (a whole-number, date or time column the query returns:
    a split run reads it in ranges of that column, djsync.sources.ranges).
    """

    first_row = 1
    #: The range of the partition column this source reads (a partition of a split run).
    key_range: KeyRange | None = None

    def __init__(
        self,
        query: str,
        *,
        using: str = "default",
        params: Sequence[Any] | None = None,
        chunk_size: int | None = None,
        incremental: dict[str, Any] | None = None,
        partition: str | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(query, str) or not query.strip():
            raise ConfigurationError(_("a SQL source needs a query"))
        self.query = query.strip().rstrip(";")
        self.using = self.database = using
        self.name = name or _("query on database %(using)r") % {"using": using}
        check_alias(using, self.name)
        self.params = list(params or [])
        self.chunk_size = int(chunk_size or settings.BATCH_SIZE)
        self.columns = None
        self.setup_incremental(incremental)
        self.partition = check_column(partition, f"{self.name}: ")

    def statement(self) -> tuple[str, list[Any]]:
        """The SQL to run: the query, narrowed to rows past the cursor when incremental,
        and to its key range when it is a partition of a split run."""
        qn = connections[self.using].ops.quote_name
        where: list[str] = []
        params = list(self.params)
        if self.incremental and self.cursor not in (None, ""):
            where.append(f"djsync_q.{qn(self.incremental['column'])} >= %s")
            params.append(self.cursor)
        if self.key_range is not None:
            condition, bounds = self.key_range.sql(f"djsync_q.{qn(self.key_range.column)}")
            where.append(condition)
            params.extend(bounds)
        if not where:
            return self.query, self.params
        return f"SELECT * FROM ({self.query}) djsync_q WHERE {' AND '.join(where)}", params

    def read(self) -> Iterator[dict[str, Any]]:
        yield from self.track(self._rows())

    def _rows(self) -> Iterator[dict[str, Any]]:
        sql, params = self.statement()
        connection = connections[self.using]
        if connection.vendor == "postgresql":
            yield from self._rows_postgresql(connection, sql, params)
        elif connection.vendor == "sqlite":
            yield from self._rows_sqlite(connection, sql, params)
        else:
            raise SourceError(
                _("SQL sources run read-only on PostgreSQL and SQLite only, not %(vendor)s")
                % {"vendor": connection.vendor},
                source=self.name,
            )

    def _rows_postgresql(self, connection: Any, sql: str, params: list[Any]) -> Iterator[dict]:
        """Stream through a cursor of our own; each FETCH (where the query's functions run)
        happens in a savepoint made READ ONLY and rolled back, so the query cannot write
        and writes of the run between two chunks (progress, staging) are not affected."""
        name = f"djsync_sql_{id(self):x}"
        try:
            with transaction.atomic(using=self.using), connection.cursor() as cursor:
                self._execute(cursor, f"DECLARE {name} NO SCROLL CURSOR FOR {sql}", params)
                while True:
                    cursor.execute("SAVEPOINT djsync_read_only")
                    try:
                        cursor.execute("SET TRANSACTION READ ONLY")
                        rows = self._fetch(cursor, f"FETCH FORWARD {self.chunk_size} FROM {name}")
                        description = cursor.description
                    finally:
                        cursor.execute("ROLLBACK TO SAVEPOINT djsync_read_only")
                        cursor.execute("RELEASE SAVEPOINT djsync_read_only")
                    if self.columns is None:
                        self._set_columns(description)
                    if not rows:
                        break
                    yield from self._dicts(rows)
                cursor.execute(f"CLOSE {name}")
        except DatabaseError as exc:
            raise SourceError(
                _("the query failed: %(line)s") % {"line": _line(exc)}, source=self.name
            ) from None

    def _rows_sqlite(self, connection: Any, sql: str, params: list[Any]) -> Iterator[dict]:
        """Stream with ``PRAGMA query_only`` on while SQLite steps the query, restored after
        each chunk, even on error: the same connection may be the target's."""
        try:
            cursor = connection.chunked_cursor()
        except DatabaseError as exc:
            raise SourceError(
                _("cannot connect: %(line)s") % {"line": _line(exc)}, source=self.name
            ) from None
        try:
            with _query_only(connection):
                self._execute(cursor, sql, params)
            self._set_columns(cursor.description)
            while True:
                with _query_only(connection):
                    rows = self._fetch(cursor, None)
                if not rows:
                    break
                yield from self._dicts(rows)
        finally:
            cursor.close()

    def _execute(self, cursor: Any, sql: str, params: list[Any]) -> None:
        try:
            cursor.execute(sql, params)
        except DatabaseError as exc:
            raise SourceError(
                _("the query failed: %(line)s") % {"line": _line(exc)}, source=self.name
            ) from None

    def _fetch(self, cursor: Any, fetch: str | None) -> list[Any]:
        try:
            if fetch is None:
                return cursor.fetchmany(self.chunk_size)
            cursor.execute(fetch)
            return cursor.fetchall()
        except DatabaseError as exc:
            raise SourceError(
                _("reading the rows failed: %(line)s") % {"line": _line(exc)}, source=self.name
            ) from None

    def _set_columns(self, description: Any) -> None:
        if description is None:
            raise SourceError(_("the query returns no rows (is it a SELECT?)"), source=self.name)
        self.columns = columns = [col[0] for col in description]
        if len(set(columns)) != len(columns):
            twice = sorted({c for c in columns if columns.count(c) > 1})
            raise SourceError(
                _("the query names column %(map)s twice; use AS")
                % {"map": ", ".join(map(repr, twice))},
                source=self.name,
            )

    def _dicts(self, rows: list[Any]) -> Iterator[dict[str, Any]]:
        columns = self.columns or []
        for row in rows:
            yield dict(zip(columns, row, strict=True))


def _line(exc: Exception) -> str:
    """The first line of a database error (PostgreSQL adds CONTEXT and HINT lines)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@contextmanager
def _query_only(connection: Any) -> Iterator[None]:
    """SQLite refuses every write while this is on; the previous value comes back after."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA query_only")
        before = cursor.fetchone()[0]
        cursor.execute("PRAGMA query_only = ON")
        try:
            yield
        finally:
            cursor.execute(f"PRAGMA query_only = {1 if before else 0}")

"""A large initial load on PostgreSQL: indexes built after the rows, a split's rows by COPY.

Inserting millions of rows keeps every index of the table up to date row by row; building
an index once the rows are in sorts them once, with PostgreSQL's parallel maintenance
workers. At 10,000,000 rows that is most of a whole initial load (bench/RESULTS.md).

So when a run creates at least ``FAST_PATH_REBUILD_INDEXES`` rows into a table that holds
no row at all, its transaction takes the table's ACCESS EXCLUSIVE lock (waiting at most
``LOCK_WAIT``; a busy table gets the plain ``INSERT``), drops the indexes it can recreate
exactly, inserts, and recreates them: same names, same definitions, constraints added back
with their own definition. It is all the run's transaction, so a failure leaves the table
and its indexes as they were. Until the run commits, readers of the table wait instead
of seeing it empty. PostgreSQL builds no index on a table with checks still pending, so
the table's deferred constraints (Django's foreign keys) are checked when the rows are
in, not at commit, then deferred again.

Left in place (maintained row by row as before): an index that another object depends on
(a foreign key of another table referencing it), an exclusion constraint, the replica
identity, a clustered index, an index or constraint with a comment, its own tablespace or
statistics target, an index of a partitioned table or of a partition.

A split run's initial load (djsync.backends.partitioned) has its rows in a staging table
other connections can read: a second connection reads and sorts them (in PostgreSQL's
parallel workers) while the run's connection writes them by ``COPY`` in its transaction,
one process at each end (:func:`_stream`), instead of one ``INSERT … SELECT``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, transaction

from djsync.backends.staged import StagedSqlPlan
from djsync.conf import settings

logger = logging.getLogger("djsync")

#: How long the run waits for the table's lock before it inserts with the indexes in place.
LOCK_WAIT = "1s"

#: The indexes of a table (``%s``: its quoted name) that can be dropped and recreated as
#: they were: (index, its CREATE INDEX, constraint name, constraint definition).
REBUILDABLE = """
SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), con.conname,
       CASE WHEN con.oid IS NOT NULL THEN pg_get_constraintdef(con.oid) END
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid AND t.relkind = 'r' AND NOT t.relispartition
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
WHERE i.indrelid = %s::regclass
  AND i.indisvalid AND i.indisready AND i.indislive
  AND NOT i.indisreplident AND NOT i.indisclustered
  AND ic.reltablespace = 0
  AND (con.oid IS NULL OR con.contype IN ('p', 'u'))
  AND NOT EXISTS (SELECT FROM pg_depend d
                  WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indexrelid)
  AND NOT EXISTS (SELECT FROM pg_constraint o
                  WHERE o.conindid = i.indexrelid AND o.oid IS DISTINCT FROM con.oid)
  AND NOT EXISTS (SELECT FROM pg_description c
                  WHERE c.objoid = i.indexrelid OR c.objoid = con.oid)
  AND NOT EXISTS (SELECT FROM pg_inherits h
                  WHERE h.inhrelid = i.indexrelid OR h.inhparent = i.indexrelid)
  AND NOT EXISTS (SELECT FROM pg_attribute a
                  WHERE a.attrelid = i.indexrelid AND a.attstattarget >= 0)
ORDER BY con.contype = 'p' DESC NULLS LAST, ic.relname
"""


#: The table's constraints checked at commit (``%s``: its quoted name), by qualified name.
DEFERRED = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.conname), c.conname
FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
WHERE c.conrelid = %s::regclass AND c.condeferred
"""

#: The table's columns (quoted as Django quotes them) and their types, when the table
#: takes a COPY as it takes an INSERT (a table: no rules, no row security).
COLUMNS = """
SELECT '"' || a.attname || '"', format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a JOIN pg_class t ON t.oid = a.attrelid
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
  AND t.relkind IN ('r', 'p') AND NOT t.relhasrules AND NOT t.relrowsecurity
"""

#: Bytes passed from the reading connection to the writing one at a time.
RELAY_BYTES = 1 << 20

#: Creates from which a partitioned run streams them (fewer: one INSERT is as fast).
STREAMED = 50_000

Index = tuple[str, str, "str | None", "str | None"]


def insert(plan: Any, cursor: Any, columns: list, values: list, params: list) -> int:
    """Write the plan's creates (:meth:`StagedSqlPlan.write_creates`), with the table's
    indexes built after its rows when the load is large and the table empty, streamed
    from a partitioned run's staging when it can be; the rows written."""
    threshold = settings.FAST_PATH_REBUILD_INDEXES
    table = plan.qn(plan.importer.model._meta.db_table)
    dropped: list[Index] = []
    deferred: list[str] = []
    # Every staged row new: nothing in scope matched (an initial load, so no lock is tried
    # on a table the run updates), and the creates are read from the staging alone (no
    # table of actions, which is the run's connection's own).
    initial = plan.new == plan.good
    if initial and threshold is not None and len(plan.creates) >= threshold:
        dropped, deferred = _drop(cursor, table)
    count = None
    if initial and plan.readable and not plan.parents and plan.new >= STREAMED:
        count = _stream(plan, cursor, table, columns, values, params)
    if count is None:
        count = StagedSqlPlan.write_creates(plan, cursor, columns, values, params)
    if dropped:
        _build(cursor, table, dropped, deferred)
    return count


def _stream(
    plan: Any, cursor: Any, table: str, columns: list, values: list, params: list
) -> int | None:
    """COPY the creates into ``table``, read and sorted from the run's shared staging on a
    second connection (by PostgreSQL's parallel workers) while the run's connection
    writes them; None (nothing written) when the table takes a COPY otherwise than an
    INSERT (rules, row security) or a second connection cannot read the staging."""
    cursor.execute(COLUMNS, [table])
    types = dict(cursor.fetchall())
    if not all(column in types for column in columns):
        return None
    casts = ", ".join(f"CAST({v} AS {types[c]})" for c, v in zip(columns, values, strict=True))
    select = f"SELECT {casts} FROM {plan._created()} ORDER BY s._row"
    reader = _reader(plan.connection, f"COPY ({select}) TO STDOUT (FORMAT binary)", params)
    if reader is None:
        return None
    try:
        into = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT binary)"
        with cursor.cursor.copy(into) as copy:
            _relay(reader.pgconn, copy.write)
        return cursor.cursor.rowcount
    finally:
        reader.close()


def _reader(connection: Any, sql: str, params: list) -> Any:
    """A second connection of ``connection``'s settings, for this only, with ``sql`` (a
    COPY … TO STDOUT) started, its sorts in the run's ``work_mem``; None when it cannot
    be had (a pooler's limit) or cannot read the staging (a role it lacks): the plain
    INSERT then."""
    from psycopg import ClientCursor, pq  # PostgreSQL's driver: imported on PostgreSQL only

    try:
        reader = connection.get_new_connection(connection.get_connection_params())
    except Exception:  # noqa: BLE001
        logger.info("djsync: no second connection to read the staging", exc_info=True)
        return None
    try:
        reader.execute("SELECT set_config('work_mem', %s, false)", [settings.FAST_PATH_WORK_MEM])
        started = reader.pgconn.exec_(ClientCursor(reader).mogrify(sql, params).encode())
        if started.status == pq.ExecStatus.COPY_OUT:
            return reader
        logger.info("djsync: the staging is not readable: %s", started.get_error_message())
    except Exception:  # noqa: BLE001
        logger.info("djsync: the staging is not readable", exc_info=True)
    reader.close()
    return None


def _relay(pgconn: Any, write: Any) -> None:
    """Pass a COPY's rows from ``pgconn`` (COPY … TO STDOUT started) to ``write``, a
    megabyte at a time: libpq gives one row per call, psycopg's ``Copy`` a Python step per
    row on top, which cost more than the server's own work here."""
    from psycopg import pq

    buffer = bytearray()
    while True:
        size, data = pgconn.get_copy_data(0)
        if size < 0:  # -1: done, -2: failed (the result says why)
            break
        buffer += data
        if len(buffer) >= RELAY_BYTES:
            write(buffer)
            buffer = bytearray()
    if buffer:
        write(buffer)
    done = pgconn.get_result()
    if done is None or done.status != pq.ExecStatus.COMMAND_OK:
        why = "" if done is None else done.get_error_message()
        raise DatabaseError(f"reading the run's staging failed: {why}")


def _drop(cursor: Any, table: str) -> tuple[list[Index], list[str]]:
    """Lock the empty ``table`` and drop its rebuildable indexes: those, and the table's
    deferred constraints, now checked at once. Nothing (and the table as it was) when the
    lock is busy, the table holds rows or a statement is refused."""
    try:
        with transaction.atomic(using=cursor.db.alias):
            cursor.execute(
                "SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)",
                [LOCK_WAIT],
            )
            waited = cursor.fetchone()[0]
            cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [waited])
            cursor.execute(f"SELECT EXISTS (SELECT FROM {table})")
            if cursor.fetchone()[0]:
                raise _Keep  # the lock is released with the savepoint
            cursor.execute(REBUILDABLE, [table])
            indexes = cursor.fetchall()
            if not indexes:
                raise _Keep
            gone = {constraint for _, _, constraint, _ in indexes}
            cursor.execute(DEFERRED, [table])
            deferred = [name for name, constraint in cursor.fetchall() if constraint not in gone]
            _check_now(cursor, deferred, True)  # what an earlier statement left pending
            for index, _definition, constraint, _constraint_definition in indexes:
                if constraint is None:
                    cursor.execute(f"DROP INDEX {index}")
                else:
                    name = cursor.db.ops.quote_name(constraint)
                    cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
            return indexes, deferred
    except (_Keep, DatabaseError):  # a busy table, or one this role does not own: as it was
        return [], []


class _Keep(Exception):  # noqa: N818 - internal signal: leave the table as it is
    pass


def _check_now(cursor: Any, constraints: list[str], now: bool) -> None:
    """Check ``constraints`` at once from here on (their pending checks run now), or at
    commit again."""
    if constraints:
        mode = "IMMEDIATE" if now else "DEFERRED"
        cursor.execute(f"SET CONSTRAINTS {', '.join(constraints)} {mode}")


def _build(cursor: Any, table: str, dropped: list[Index], deferred: list[str]) -> None:
    """Recreate the dropped indexes and constraints, with sorts in memory."""
    cursor.execute(
        "SELECT current_setting('maintenance_work_mem'), "
        "set_config('maintenance_work_mem', %s, true)",
        [settings.FAST_PATH_WORK_MEM],
    )
    before = cursor.fetchone()[0]
    for _index, definition, constraint, constraint_definition in dropped:
        if constraint is None:
            cursor.execute(definition)
        else:
            name = cursor.db.ops.quote_name(constraint)
            cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {constraint_definition}")
    cursor.execute("SELECT set_config('maintenance_work_mem', %s, true)", [before])
    _check_now(cursor, deferred, False)

"""A run's staging shared by its partitions: UNLOGGED tables in PostgreSQL, one per run.

A partitioned run (djsync.runs.partitions) reads its source in ranges, each on a Celery
worker of its own. A partition stages its rows exactly as a single process stages a whole
file (djsync.backends.postgresql), and COPYs them straight into the run's staging table,
which has the single process's columns: rows read and converted in Python, or their text,
go there with no copy in between. Only a CSV range whose bytes PostgreSQL parses itself
(djsync.backends.rawcsv) is COPY'd into a temporary table first, since that table numbers
its rows with an identity of its own, and is moved with one ``INSERT … SELECT``.

A partition's rows, row errors and counts (two small tables beside the staging) are
written in one transaction, under a lock of that partition, which first checks whether an
earlier attempt already committed it: a failed attempt leaves nothing, a retried one
finds its work done or does it whole, never twice. No partition looks for duplicate keys:
that, the classification against the target and the apply are done once, by the run's
last step, on the whole staging table (:func:`build_plan`), with the same statements as a
single-process run. Each partition records whether its keys arrived strictly increasing,
and its first and last key: when every partition's keys did and no two partitions' ranges
of keys overlap, no key can repeat, and the last step skips the duplicate check, as one
process reading sorted keys does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from itertools import chain
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, transaction
from django.utils.translation import gettext as _

from djsync.backends import StagedSource, rawcsv
from djsync.backends.parents import ChunkParents
from djsync.backends.postgresql import PostgresPlan
from djsync.backends.staged import LIVE, Progress
from djsync.conf import settings
from djsync.engine.diff import RowError
from djsync.engine.row_errors import _INF, _UNSEEN, RowErrors, _keep_sample
from djsync.engine.rows import RowConverter
from djsync.exceptions import TargetError

if TYPE_CHECKING:
    from djsync.mapping.importers import BaseImporter, Switches
    from djsync.sources.base import Source

logger = logging.getLogger("djsync")

#: Prefix of a run's shared staging tables (``djsync_run12_src``, ``_err``, ``_part``).
PREFIX = "djsync_run"


def tables(run_id: int) -> tuple[str, str, str]:
    """The run's staging, row-error and partition tables."""
    base = f"{PREFIX}{int(run_id)}"
    return f"{base}_src", f"{base}_err", f"{base}_part"


class PartitionPlan(PostgresPlan):
    """Stages one partition's rows as a single process would, into the run's staging table
    ``shared``, without the duplicate check (done on the whole run) and without classifying."""

    def __init__(self, importer: BaseImporter, switches: Switches, shared: str) -> None:
        super().__init__(importer, switches)
        self.shared = shared
        self.temp = self.src  # the temporary table's name, if one is needed
        self.raw = False  # the file's bytes tried on PostgreSQL's own CSV parser
        self.ordered = False  # the keys staged in Python arrived strictly increasing

    @property
    def direct(self) -> bool:
        """Whether the rows were COPY'd straight into the run's staging."""
        return self.src == self.shared

    def stage_source(
        self,
        records: Iterator[Any],
        source: Source,
        converter: RowConverter,
        *,
        cells: bool,
        progress: Progress | None,
    ) -> None:
        self.raw = cells and rawcsv.applies(source, self, converter)
        super().stage_source(records, source, converter, cells=cells, progress=progress)

    def create_src(self, cursor: Any, row_type: str = "integer") -> None:
        """The run's staging table, created by the run's first step; a temporary table
        while the file's bytes are tried on PostgreSQL's parser (numbered by an identity
        of its own; ``raw_csv`` is set once that try ended)."""
        if self.raw and not self.raw_csv:
            super().create_src(cursor, row_type)
        else:
            self.src = self.shared

    def _staged(self, cursor: Any, good: int, ordered: bool, bad: int) -> None:
        self.good, self.skipped, self.ordered = good, bad, ordered

    def close(self) -> None:
        if self.direct:  # the run's staging outlives the partition
            self.src = self.temp
        super().close()


class LoadedSource(StagedSource):
    """The source of a partitioned run once every partition is staged: nothing left to
    read; it names the file and its columns for the run's record."""

    def __init__(self, run_id: int, name: str, columns: list[str], parts: int) -> None:
        self.run_id = run_id
        self.name = name
        self.columns = columns
        self.parts = parts
        self.detail = f"{parts} partitions"

    def read(self) -> Iterator[dict[str, Any]]:
        return iter(())

    def build_plan(
        self,
        importer: BaseImporter,
        switches: Switches,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> PostgresPlan:
        return build_plan(importer, self, switches, progress=progress)


# -- the tables ----------------------------------------------------------------------------
def create(run_id: int, plan: PostgresPlan, sizes: list[int]) -> None:
    """Create the run's tables (dropped first: a run starts from nothing), with the staging
    columns of ``plan``'s fields and a row per partition (``sizes``: bytes of its range)."""
    src, err, part = tables(run_id)
    columns = ", ".join(plan.src_columns())
    with plan.connection.cursor() as cursor:
        drop(run_id, plan.importer.using)
        cursor.execute(f"CREATE UNLOGGED TABLE {src} ({columns})")
        cursor.execute(f"CREATE UNLOGGED TABLE {err} (_part integer NOT NULL, error jsonb)")
        cursor.execute(
            f"CREATE UNLOGGED TABLE {part} (_part integer PRIMARY KEY, rows_read bigint, "
            "good bigint, bad bigint, keyless boolean, refused text, done bigint, "
            f"total bigint, errors jsonb, ordered boolean, {', '.join(_bound_columns(plan))})"
        )
        cursor.executemany(
            f"INSERT INTO {part} (_part, rows_read, done, total) VALUES (%s, 0, 0, %s)",
            list(enumerate(sizes)),
        )


def drop(run_id: int, using: str) -> None:
    """Drop the run's tables (idempotent)."""
    with connections[using].cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {', '.join(tables(run_id))}")


def leftovers(using: str) -> list[int]:
    """Runs whose shared staging tables are still there."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relpersistence = 'u' "
            "AND relname LIKE %s",
            [f"{PREFIX}%\\_part"],
        )
        names = [row[0] for row in cursor.fetchall()]
    return [int(n[len(PREFIX) : -len("_part")]) for n in names if n[len(PREFIX) : -5].isdigit()]


def report(run_id: int, using: str, part: int, *, done: int, rows: int) -> None:
    """One partition's progress, committed at once (outside any transaction of its own); a
    failure is logged, never raised: progress must not break a run."""
    try:
        _report(run_id, using, part, done=done, rows=rows)
    except Exception:  # noqa: BLE001
        logger.debug("djsync: could not write the progress of run %s", run_id, exc_info=True)


def _report(run_id: int, using: str, part: int, *, done: int, rows: int) -> None:
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"UPDATE {tables(run_id)[2]} SET rows_read = %s, done = LEAST(%s, total) "
            "WHERE _part = %s",
            [rows, done, part],
        )


def progress_of(run_id: int, using: str) -> list[dict[str, Any]]:
    """Every partition's progress so far: part, rows, done and total bytes, finished."""
    try:
        return _progress_of(run_id, using)
    except Exception:  # noqa: BLE001 - progress must not break a run
        logger.debug("djsync: could not read the progress of run %s", run_id, exc_info=True)
        return []


def _progress_of(run_id: int, using: str) -> list[dict[str, Any]]:
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"SELECT _part, rows_read, done, total, good IS NOT NULL FROM {tables(run_id)[2]} "
            "ORDER BY _part"
        )
        return [
            {"part": p, "rows": r or 0, "done": d or 0, "total": t or 0, "finished": f}
            for p, r, d, t, f in cursor.fetchall()
        ]


# -- a partition ---------------------------------------------------------------------------
def load(
    run_id: int,
    part: int,
    importer: BaseImporter,
    source: Source,
    switches: Switches,
    *,
    progress: Progress | None = None,
    refused: str = "",
) -> None:
    """Stage partition ``part`` of the run from ``source`` (its range of the file) with its
    row errors and counts, in one transaction; nothing when an earlier attempt did. With
    ``refused`` (its range cannot be read on its own), only that is recorded."""
    src, err, meta = tables(run_id)
    plan: PartitionPlan | None = None
    close: Any = lambda: None  # noqa: E731
    try:
        with transaction.atomic(using=importer.using), connections[importer.using].cursor() as c:
            # Two attempts of one partition (a task redelivered while the first still
            # runs) wait for each other here; the second finds the first's work committed.
            c.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"{src}:{part}"])
            c.execute(
                f"SELECT good IS NOT NULL OR refused IS NOT NULL FROM {meta} WHERE _part = %s",
                [part],
            )
            done = c.fetchone()
            if done is not None and done[0]:
                return
            good = bad = 0
            keyless = False
            counted = None
            if not refused:
                plan, close = _stage(importer, source, switches, progress, src)
                if refused := _refusal(source):  # its rows must not stay
                    raise _Refused(refused)
            if plan is not None:
                if not plan.direct:
                    columns = ", ".join(column.split()[0] for column in plan.src_columns())
                    c.execute(f"INSERT INTO {src} ({columns}) SELECT {columns} FROM {plan.src}")
                _save_errors(c, err, part, plan.errors)
                good, bad, keyless = plan.good, plan.skipped, plan.error_without_key
                counted = json.dumps(error_counts(plan.errors))
            c.execute(
                f"INSERT INTO {meta} (_part, rows_read, good, bad, keyless, refused, errors) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (_part) DO UPDATE SET "
                "rows_read = excluded.rows_read, good = excluded.good, bad = excluded.bad, "
                f"done = {meta}.total, "
                "keyless = excluded.keyless, refused = excluded.refused, "
                "errors = excluded.errors",
                [part, importer.rows_read, good, bad, keyless, refused or None, counted],
            )
            if plan is not None:
                _save_order(c, meta, part, plan)
    except _Refused as exc:  # its rows were rolled back: only why is recorded
        load(run_id, part, importer, source, switches, refused=exc.why)
    finally:
        if plan is not None:
            plan.close()
        close()


class _Refused(Exception):  # noqa: N818 - internal signal, never raised to a caller
    def __init__(self, why: str) -> None:
        self.why = why


def _stage(
    importer: BaseImporter,
    source: Source,
    switches: Switches,
    progress: Progress | None,
    shared: str,
) -> tuple[PartitionPlan, Any]:
    """A partition's rows in the run's staging table ``shared`` (or a temporary table, for
    PostgreSQL's CSV parser), as a single process stages a file
    (djsync.backends.staged.build_plan without the classification)."""
    rows = source.read_rows()
    records: Iterator[Any] = rows if rows is not None else source.read()
    close = getattr(records, "close", lambda: None)
    first = next(records, None)
    importer.match_columns(source.columns or [], source)
    plan = PartitionPlan(importer, switches, shared)
    stream: Iterator[Any] = chain([first], records) if first is not None else iter(())
    ahead = ChunkParents.over(importer, stream, source, rows and source.columns)
    view = source
    if ahead is not None:
        stream, view, plan.read_ahead = ahead, ahead.view, ahead
    try:
        with transaction.atomic(using=importer.using):
            plan.stage_source(
                stream, view, RowConverter(importer), cells=rows is not None, progress=progress
            )
    except BaseException:
        plan.close()
        close()
        raise
    return plan, close


def _refusal(source: Source) -> str:
    """Why the range the source read cannot be trusted alone ("" when it can)."""
    raw = getattr(getattr(source, "file", None), "raw", None)
    grammar = getattr(raw, "grammar", None)
    return grammar.finish() if grammar is not None else ""


def error_counts(errors: RowErrors) -> dict[str, Any]:
    """What a partition's row errors count beyond the ones kept whole: totals, the last
    row, and each group (djsync.engine.row_errors) with its samples."""
    last = errors._last_row
    return {
        "total": errors.total,
        "rows": errors.rows,
        "last": None if last is _UNSEEN else last,
        "groups": [
            {
                **{k: v for k, v in g.items() if not k.startswith("_")},
                "last": None if g["_last"] is _UNSEEN else g["_last"],
                "samples": [[None if r == _INF else r, text] for r, text in g["_samples"]],
            }
            for g in errors.groups._groups.values()
        ],
    }


def merged_errors(kept: list[RowError], counts: list[dict[str, Any]]) -> RowErrors:
    """The run's row errors from its partitions': the first ones by row kept whole, the
    counts summed, the groups merged, as one process would have counted them."""
    merged = RowErrors(keep=settings.MAX_ROW_ERRORS)
    kept.sort(key=lambda e: (e.row is None, e.row or 0))
    merged.kept = kept[: merged.keep] if merged.keep is not None else kept
    for each in counts:
        merged.total += each["total"]
        merged.rows += each["rows"]
        if each["total"]:
            merged._last_row = each["last"]
        for g in each["groups"]:
            group = merged.groups.group((g["column"], g["message"]))
            group["rows"] += g["rows"]
            if g["first_row"] is not None and (
                group["first_row"] is None or g["first_row"] < group["first_row"]
            ):
                group["first_row"] = g["first_row"]
            if g["last"] is not None:
                group["_last"] = g["last"]
            for row, text in g["samples"]:
                _keep_sample(group["_samples"], (_INF if row is None else row, text))
    return merged


def _save_errors(cursor: Any, table: str, part: int, errors: RowErrors) -> None:
    rows = [
        [
            part,
            json.dumps(
                {
                    "row": e.row,
                    "message": e.message,
                    "column": e.column,
                    "key": None if e.key is None else list(e.key),
                    "value": e.value,
                    "raw": e.raw,
                },
                cls=DjangoJSONEncoder,
            ),
        ]
        for e in errors
    ]
    if rows:
        cursor.executemany(f"INSERT INTO {table} (_part, error) VALUES (%s, %s)", rows)


# -- the keys' order -----------------------------------------------------------------------
def _bound_columns(plan: PostgresPlan) -> list[str]:
    """DDL of a partition's first (``f…``) and last (``l…``) key, typed as staged."""
    return [
        f"{end}{i} {plan.value_field(plan.fields[i]).db_type(plan.connection)}"
        for end in "fl"
        for i in plan.key_positions()
    ]


def _as_python(plan: PostgresPlan, i: int, sql: str) -> str:
    """``sql`` (a value of key ``i``) ordered as Python orders it: text by code point,
    as the collation "C" orders UTF-8 (the order :data:`ORDERABLE` types share)."""
    db_type = plan.value_field(plan.fields[i]).db_type(plan.connection) or ""
    return f'{sql} COLLATE "C"' if db_type.split("(")[0] in ("varchar", "text") else sql


def _save_order(cursor: Any, meta: str, part: int, plan: PartitionPlan) -> None:
    """Whether the partition's staged keys are strictly increasing, and its first and last
    key, in its row of ``meta`` (read by :func:`_distinct`)."""
    keys = plan.key_positions()
    columns = ["ordered", *(f"{end}{i}" for end in "fl" for i in keys)]
    if not plan.direct and plan._orderable():  # parsed by PostgreSQL: checked in SQL
        sets = ", ".join(f"{c} = o.{c}" for c in columns)
        cursor.execute(
            f"UPDATE {meta} SET {sets} FROM ({_order_sql(plan)}) o WHERE _part = %s", [part]
        )
        return
    # Read in Python: as staging's order check found them (never ordered with a bad row).
    ordered = plan.direct and plan.ordered
    bounds: list[Any] = [None] * (2 * len(keys))
    if ordered and plan.good:
        first, last = plan.span if len(keys) > 1 else ((plan.span[0],), (plan.span[1],))
        bounds = [*first, *last]
    sets = ", ".join(f"{c} = %s" for c in columns)
    cursor.execute(f"UPDATE {meta} SET {sets} WHERE _part = %s", [ordered, *bounds, part])


def _order_sql(plan: PostgresPlan) -> str:
    """SQL: one row, whether the keys of ``plan``'s staging table are strictly increasing
    (``ordered``) and the first and last key (``f…``, ``l…``), in one read and no sort.

    The rows are compared in the order the table is read (as COPY wrote them, in
    practice): any order proves the same, since keys strictly increasing in some order
    are distinct, its first the least and its last the greatest; an order other than the
    file's can only fail to prove it (then the last step checks)."""
    keys = plan.key_positions()
    before = ", ".join(_as_python(plan, i, f"lag(c{i}) OVER w") for i in keys)
    now = ", ".join(_as_python(plan, i, f"c{i}") for i in keys)
    bounds = [f"(array_agg(c{i}) FILTER (WHERE NOT after))[1] AS f{i}" for i in keys]
    bounds += [f"(array_agg(c{i}) FILTER (WHERE final))[1] AS l{i}" for i in keys]
    return (
        # ``up`` is NULL on the first row only, unless a key is NULL.
        f"SELECT coalesce(bool_and(coalesce(up, NOT after)), true) AS ordered, "
        f"{', '.join(bounds)} FROM (SELECT {', '.join(f'c{i}' for i in keys)}, "
        f"lag(true, 1, false) OVER w AS after, ROW({before}) < ROW({now}) AS up, "
        f"lead(false, 1, true) OVER w AS final FROM {plan.src} WINDOW w AS ()) s"
    )


def _distinct(cursor: Any, meta: str, plan: PostgresPlan) -> bool:
    """Whether the run's staged keys are all distinct by the partitions' word: those with
    staged rows each strictly increasing, and, sorted by first key, each one's last key
    below the next one's first."""
    if not plan._orderable():
        return False
    keys = plan.key_positions()
    first = ", ".join(_as_python(plan, i, f"f{i}") for i in keys)
    before = ", ".join(_as_python(plan, i, f"lag(l{i}) OVER w") for i in keys)
    cursor.execute(
        "SELECT coalesce(bool_and(ordered AND (n = 1 OR coalesce(apart, false))), true) "
        "FROM (SELECT coalesce(ordered, false) AS ordered, row_number() OVER w AS n, "
        f"ROW({before}) < ROW({first}) AS apart FROM {meta} WHERE good + bad > 0 "
        f"WINDOW w AS (ORDER BY {first})) s"
    )
    return bool(cursor.fetchone()[0])


# -- the run's last step -------------------------------------------------------------------
def refusals(run_id: int, using: str) -> list[str]:
    """Why some partitions could not be read on their own (then the run reads its file as
    one partition)."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"SELECT _part, refused FROM {tables(run_id)[2]} WHERE refused IS NOT NULL "
            "ORDER BY _part"
        )
        return [f"{part + 1}: {why}" for part, why in cursor.fetchall()]


def build_plan(
    importer: BaseImporter,
    source: LoadedSource,
    switches: Switches,
    *,
    progress: Progress | None = None,
) -> PostgresPlan:
    """The plan of the whole run from its staged partitions: duplicate keys marked across
    them, every row classified against the target in one join — from here on the same
    plan, the same statements, as a single process's."""
    src, err, meta = tables(source.run_id)
    importer.match_columns(source.columns or [], source)
    plan = PostgresPlan(importer, switches)
    LIVE.difference_update((plan.src,))
    plan.src = src  # dropped with the plan (close)
    try:
        with transaction.atomic(using=importer.using), plan.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT rows_read, good, bad, keyless, errors FROM {meta} "
                "WHERE good IS NOT NULL ORDER BY _part"
            )
            parts = cursor.fetchall()
            if len(parts) != source.parts:
                raise TargetError(
                    _("%(loaded)s of %(parts)s partitions were staged; nothing was written")
                    % {"loaded": len(parts), "parts": source.parts}
                )
            importer.rows_read = sum(int(p[0]) for p in parts)
            good, bad = sum(int(p[1]) for p in parts), sum(int(p[2]) for p in parts)
            plan.error_without_key = any(p[3] for p in parts)
            keep = settings.MAX_ROW_ERRORS
            limit = "" if keep is None else f" ORDER BY (error->>'row')::bigint LIMIT {int(keep)}"
            cursor.execute(f"SELECT error FROM {err}{limit}")
            kept = [_row_error(e) for (e,) in cursor.fetchall()]
            counts = [p[4] if isinstance(p[4], dict) else json.loads(p[4]) for p in parts]
            plan.errors = merged_errors(kept, counts)
            plan._staged(cursor, int(good), _distinct(cursor, meta, plan), int(bad))
            plan.classify()
            plan.readable = plan.skipped == int(bad)  # no duplicate marked in this transaction
    except BaseException:
        plan.close()
        raise
    if progress is not None:
        progress(importer.rows_read)
    return plan


def _row_error(data: Any) -> RowError:
    if isinstance(data, str):
        data = json.loads(data)
    key = data.get("key")
    return RowError(
        row=data.get("row"),
        message=data.get("message") or "",
        column=data.get("column"),
        key=None if key is None else tuple(key),
        value=data.get("value"),
        raw=data.get("raw"),
    )


__all__ = [
    "LoadedSource",
    "PartitionPlan",
    "build_plan",
    "create",
    "drop",
    "leftovers",
    "load",
    "progress_of",
    "refusals",
    "report",
    "tables",
]

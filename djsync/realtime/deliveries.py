"""Webhook deliveries: a signed body of changed records, read within its bounds and
applied as one small run of the job.

A delivery is ``{"id": "…", "records": [{…}, …], "deleted": [{…}, …]}``: records are rows
of the job's source (mapped by its importer as any source row), ``deleted`` the key
columns of rows deleted at the sender. The run is the truth for those keys only
(:meth:`DeliveredRows.scope_keys`): the records' keys are created or updated, the deleted
ones deleted (when the job deletes), and no other target row is read or touched.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.engine.diff import Key, RowError
from djsync.exceptions import MappingError
from djsync.mapping.columns import match
from djsync.models import SyncJob, SyncRun
from djsync.realtime.consumer import STAGED_FROM
from djsync.realtime.webhooks import MAX_ID, Refused
from djsync.runs import orchestrator
from djsync.sources.base import Source
from djsync.sources.bounds import limit

__all__ = ["DeliveredRows", "Delivery", "parse", "start_run"]

#: The top-level keys of a delivery.
KEYS = ("id", "records", "deleted")


@dataclass
class Delivery:
    """A parsed delivery: its own id (if it gave one), its records and deleted keys."""

    id: str | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[Any] = field(default_factory=list)
    #: The records' columns, in the first record's order.
    columns: list[str] = field(default_factory=list)


def parse(body: bytes) -> Delivery:
    """The delivery in ``body``, checked: JSON within its nesting and cell sizes, the shape
    above, at most WEBHOOK_MAX_RECORDS records. Else :class:`Refused` (400, 413) naming the
    place (character position, ``records[i]``, the column)."""
    if not body.strip():
        raise Refused(400, _("the delivery's body is empty"))
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise Refused(400, _("the delivery's body is not UTF-8 text")) from None
    except json.JSONDecodeError as exc:
        raise Refused(
            400,
            _("malformed JSON: %(msg)s at line %(lineno)s, column %(colno)s (character %(pos)s)")
            % {"msg": exc.msg, "lineno": exc.lineno, "colno": exc.colno, "pos": exc.pos},
        ) from None
    except RecursionError:
        raise _too_deep("") from None
    except ValueError as exc:  # a number of more than 4,300 digits (Python's own bound)
        raise Refused(400, _("malformed JSON: %(msg)s") % {"msg": exc}) from None
    if not isinstance(data, dict):
        raise Refused(400, _('a delivery is a JSON object: {"records": [...], "deleted": [...]}'))
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise Refused(
            400,
            _("unknown keys %(unknown)s in the delivery (it takes: %(keys)s)")
            % {"unknown": ", ".join(repr(k[:50]) for k in unknown[:10]), "keys": ", ".join(KEYS)},
        )
    delivery = Delivery(id=_id(data.get("id")))
    delivery.records = _list(data, "records")
    delivery.deleted = _list(data, "deleted")
    count = len(delivery.records) + len(delivery.deleted)
    most = int(settings.WEBHOOK_MAX_RECORDS)
    if count > most:
        raise Refused(
            413,
            _(
                'the delivery holds %(count)s records, more than DJSYNC["WEBHOOK_MAX_RECORDS"] '
                "(%(most)s): send them in several deliveries"
            )
            % {"count": format(count, ","), "most": format(most, ",")},
        )
    if not count:
        raise Refused(400, _('the delivery has no "records" and no "deleted": nothing to apply'))
    delivery.columns = _check_records(delivery.records)
    _check_deleted(delivery.deleted)
    return delivery


def _check_deleted(deleted: list[Any]) -> None:
    """Each deleted entry an object (its cells within bounds, all of them together with at
    most MAX_COLUMNS distinct columns) or one key's value."""
    columns: set[str] = set()
    for index, entry in enumerate(deleted):
        where = f"deleted[{index}]"
        if isinstance(entry, dict):
            _check_cells(entry, where)
            columns.update(entry)
            if len(columns) > settings.MAX_COLUMNS:
                raise Refused(
                    400,
                    _("%(where)s: the deleted entries have more than %(limit)s distinct columns")
                    % {"where": where, "limit": limit("MAX_COLUMNS")},
                )
        elif not isinstance(entry, str | int) or isinstance(entry, bool):
            raise Refused(
                400,
                _("%(where)s must be an object of key columns (or one key's value)")
                % {"where": where},
            )
        elif isinstance(entry, str) and len(entry) > settings.MAX_CELL_SIZE:
            raise _too_long(where, None)


def _id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID:
        raise Refused(
            400,
            _('"id" must be a non-empty string of at most %(most)s characters') % {"most": MAX_ID},
        )
    if not value.isprintable():
        raise Refused(400, _('"id" must be printable text'))
    return value


def _list(data: dict[str, Any], name: str) -> list[Any]:
    value = data.get(name, [])
    if not isinstance(value, list):
        raise Refused(400, _('"%(name)s" must be a JSON array') % {"name": name})
    return value


def _check_records(records: list[Any]) -> list[str]:
    """Every record an object with the first one's columns (whole source rows: a column
    left out is not "leave it as it is"), its cells within their bounds; the columns."""
    columns: list[str] = []
    if records:
        if not isinstance(records[0], dict):
            raise Refused(400, _("records[0] must be a JSON object"))
        columns = list(records[0])
        if len(columns) > settings.MAX_COLUMNS:
            raise Refused(
                400,
                _("records[0] has more than %(limit)s columns") % {"limit": limit("MAX_COLUMNS")},
            )
    expected = set(columns)
    for index, record in enumerate(records):
        where = f"records[{index}]"
        if not isinstance(record, dict):
            raise Refused(400, _("%(where)s must be a JSON object") % {"where": where})
        if record.keys() != expected:
            missing = [c for c in columns if c not in record]
            if missing:
                message = _(
                    "%(where)s has no column %(column)r, which records[0] has: every record is "
                    "a whole row of the source"
                ) % {"where": where, "column": missing[0][:100]}
            else:
                extra = next(c for c in record if c not in expected)
                message = _(
                    "%(where)s has a column %(column)r that records[0] has not: every record "
                    "has the same columns"
                ) % {"where": where, "column": extra[:100]}
            raise Refused(400, message)
        _check_cells(record, where)
    return columns


def _check_cells(record: dict[str, Any], where: str) -> None:
    """Cells within MAX_CELL_SIZE and nesting within JSON_MAX_DEPTH (the record is level 1),
    walked without recursion."""
    max_cell, max_depth = settings.MAX_CELL_SIZE, settings.JSON_MAX_DEPTH
    for column, value in record.items():
        if len(column) > max_cell:
            raise _too_long(where, None)
        if isinstance(value, str):
            if len(value) > max_cell:
                raise _too_long(where, column)
            continue
        stack = [(value, 2)] if isinstance(value, dict | list) else []
        while stack:
            item, depth = stack.pop()
            if depth > max_depth:
                raise _too_deep(where, column)
            for child in item.values() if isinstance(item, dict) else item:
                if isinstance(child, dict | list):
                    stack.append((child, depth + 1))
                elif isinstance(child, str) and len(child) > max_cell:
                    raise _too_long(where, column)


def _place(where: str, column: str | None) -> str:
    if column is None:
        return where
    return _("%(where)s, column %(column)r") % {"where": where, "column": column[:100]}


def _too_long(where: str, column: str | None) -> Refused:
    message = _("a value is longer than %(limit)s") % {"limit": limit("MAX_CELL_SIZE")}
    return Refused(400, f"{_place(where, column)}: {message}")


def _too_deep(where: str, column: str | None = None) -> Refused:
    message = _("values nest deeper than %(limit)s") % {"limit": limit("JSON_MAX_DEPTH")}
    return Refused(400, f"{_place(where, column)}: {message}" if where else message)


class DeliveredRows(Source):
    """A delivery as the job's source for one run: its records, and the keys of its records
    and deleted rows as the only keys the run is the truth for. Row N is ``records[N]``."""

    first_row = 0
    #: A delivery of deletes only has no records, and no columns: not a missing column.
    may_be_empty = True

    def __init__(self, delivery: Delivery, *, name: str) -> None:
        self.delivery = delivery
        self.name = name
        self.columns = list(delivery.columns)

    def read(self) -> Iterator[dict[str, Any]]:
        self.columns = list(self.delivery.columns)
        yield from self.delivery.records

    def scope_keys(self, importer: Any) -> set[Key]:
        """The keys of the records (a bad record's too, when its key converts: its target
        row is then kept) and of the deleted rows; a deleted entry without a usable key
        fails the run, naming it. A small delivery keeps the generic path."""
        self.few_rows = len(self.delivery.records) < STAGED_FROM
        keys: set[Key] = set()
        for item in importer.convert(iter(self.delivery.records), self):
            if item.key is not None:
                keys.add(item.key)
        keys |= self._deleted_keys(importer)
        importer.rows_read = 0  # the run counts its own read
        return keys

    def _deleted_keys(self, importer: Any) -> set[Key]:
        """Each deleted entry as a row of the columns the importer maps (the required ones
        it lacks empty), converted as any row: its key, or a MappingError naming the entry
        and, where known, the column."""
        if not self.delivery.deleted:
            return set()
        fields = importer.bound_fields
        headers = dict.fromkeys(self.delivery.columns)
        for entry in self.delivery.deleted:
            if isinstance(entry, dict):
                headers.update(dict.fromkeys(entry))
        found = match(fields.values(), list(headers))
        keys_at = [found.get(k, fields[k].column) for k in importer.keys]
        lacking = [
            f.column for f in fields.values() if f.name not in found and importer.requires(f)
        ]
        columns = list(dict.fromkeys([*found.values(), *keys_at, *lacking]))
        rows = [
            self._deleted_row(i, e, keys_at, columns) for i, e in enumerate(self.delivery.deleted)
        ]
        keys: dict[int, Key] = {}
        problems: dict[int, RowError] = {}
        for item in importer.convert(iter(rows), _Rows(self.name, columns)):
            row = item.row if item.row is not None else -1
            if item.key is not None:
                keys[row] = item.key
            elif isinstance(item, RowError) and (
                row not in problems or item.column in keys_at  # the key's own error first
            ):
                problems[row] = item
        for index in range(len(rows)):
            if index not in keys:
                problem = problems.get(index)
                why = problem.message if problem is not None else _("the key is empty")
                column = problem.column if problem is not None else None
                raise MappingError(f"{_place(f'deleted[{index}]', column)}: {why}")
        return set(keys.values())

    def _deleted_row(
        self, index: int, entry: Any, keys_at: list[str], columns: list[str]
    ) -> dict[str, Any]:
        """A deleted entry as a row; a bare value is the key's, when the key is one column."""
        if not isinstance(entry, dict):
            if len(keys_at) != 1:
                raise MappingError(
                    _(
                        "deleted[%(index)s]: the key has several columns (%(columns)s): give an "
                        "object of them"
                    )
                    % {"index": index, "columns": ", ".join(keys_at)}
                )
            entry = {keys_at[0]: entry}
        return {column: entry.get(column) for column in columns}


class _Rows(Source):
    """The deleted entries as rows, for the importer's conversion of their keys."""

    first_row = 0

    def __init__(self, name: str, columns: list[str]) -> None:
        self.name = name
        self.columns = columns


def start_run(job: SyncJob) -> SyncRun:
    """Record the delivery's run (trigger "webhook"): the job's switches and limits, but no
    delete guard: its scope is the delivered keys, and each delete was asked for."""
    return orchestrator.new_run(
        job,
        trigger=SyncRun.Trigger.WEBHOOK,
        dry_run=False,
        user=None,
        options={"delete_guard": 1.0},
        status=SyncRun.Status.READING,
        started_at=timezone.now(),
    )

"""The differ, pure: normalized source rows and target rows in, a Plan of actions out.

No ORM and no HTML here, so a plan can be computed, printed, stored, sent in a Celery
message and applied later by different code.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol, runtime_checkable

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from djsync.conf import settings
from djsync.engine.row_errors import RowErrors

Key = tuple[Any, ...]
Values = dict[str, Any]

CREATE: Literal["create"] = "create"
UPDATE: Literal["update"] = "update"
DELETE: Literal["delete"] = "delete"


@dataclass(slots=True)
class SourceRow:
    """One converted source record: its row number, its key and its field values."""

    row: int
    key: Key
    values: Values


@dataclass(slots=True)
class TargetRow:
    """One target row as read for diffing: its primary key and its field values."""

    pk: Any
    values: Values


@dataclass(slots=True)
class Create:
    key: Key
    values: Values
    row: int | None = None
    action: Literal["create"] = CREATE

    @property
    def changed(self) -> list[str]:
        return list(self.values)


@dataclass(slots=True)
class Update:
    """Old and new values of the changed fields only."""

    key: Key
    pk: Any
    old: Values
    new: Values
    row: int | None = None
    action: Literal["update"] = UPDATE

    @property
    def changed(self) -> list[str]:
        return list(self.new)


@dataclass(slots=True)
class Delete:
    key: Key
    pk: Any
    old: Values
    action: Literal["delete"] = DELETE

    @property
    def changed(self) -> list[str]:
        return []


Action = Create | Update | Delete


@dataclass(slots=True)
class RowError:
    """A source row that could not be used, and why: row number, column and bad value.

    Its text, key, value and raw row are made storable as they are set (see
    :func:`storable`): a bad value must never make storing its own row error fail.
    """

    row: int | None
    message: str
    column: str | None = None
    key: Key | None = None
    value: Any = None
    raw: dict[str, Any] | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        clean = _STORABLE.get(name)
        object.__setattr__(self, name, value if clean is None else clean(value))

    def __str__(self) -> str:
        where = [_("row %(row)s") % {"row": self.row} if self.row is not None else _("a row")]
        if self.column:
            where.append(_("column %(column)r") % {"column": self.column})
        return _("%(where)s: %(message)s") % {"where": ", ".join(where), "message": self.message}


@runtime_checkable
class StagedPlan(Protocol):
    """A plan whose actions live in the target database's staging tables until stored,
    checked and applied in SQL (djsync.backends.postgresql and .sqlite)."""

    #: The target database's connection, where the staging tables are.
    connection: Any

    def change_selects(self, run: Any, *, limit: int | None = None) -> list[tuple[str, list]]: ...

    def check_stale(self) -> None: ...

    def apply_actions(
        self,
        *,
        progress: Callable[[int], None] | None = None,
        actions: tuple[str, ...] = ("create", "update", "delete"),
        done: int = 0,
    ) -> int: ...

    def close(self) -> None: ...

    def values_of(self, action: str, name: str, among: Any = None) -> Iterator[Any]: ...


@dataclass
class Plan:
    """What a run will do to one target model, plus what it will leave alone and why."""

    model: str
    creates: list[Create] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    unchanged: int = 0
    #: The first MAX_ROW_ERRORS row errors whole, every one counted and grouped.
    errors: RowErrors = field(default_factory=lambda: RowErrors(keep=settings.MAX_ROW_ERRORS))
    #: Source records read, and target rows in scope.
    rows_read: int = 0
    rows_in_scope: int = 0
    warnings: list[str] = field(default_factory=list)
    #: Name of the source the plan was read from (a file, a URL), for messages.
    source: str = ""
    #: The path it took (``staged: postgresql``, ``generic: <why>``; djsync.backends).
    path: str = ""
    #: The fields it compared (the importer's fields the source provides or defaults).
    compared: list[str] = field(default_factory=list)

    @property
    def actions(self) -> Iterator[Action]:
        yield from self.creates
        yield from self.updates
        yield from self.deletes

    @property
    def counts(self) -> dict[str, int]:
        return {
            "created": len(self.creates),
            "updated": len(self.updates),
            "deleted": len(self.deletes),
            "unchanged": self.unchanged,
            "errors": self.error_rows,
        }

    @property
    def error_rows(self) -> int:
        """Source rows with a row error: a row with two bad cells is one (both kept)."""
        return self.errors.rows

    @property
    def total(self) -> int:
        return len(self.creates) + len(self.updates) + len(self.deletes)

    def __bool__(self) -> bool:
        return bool(self.total)


def unkeyed_errors_note(missing: int) -> str:
    """Why a plan with row errors that have no key deletes nothing."""
    return ngettext(
        "%(count)d target row is missing from the source, but some bad rows have no "
        "readable key, so nothing is deleted",
        "%(count)d target rows are missing from the source, but some bad rows have no "
        "readable key, so nothing is deleted",
        missing,
    ) % {"count": missing}


def same(a: Any, b: Any) -> bool:
    """Equality after conversion; NaN equals NaN so it is never an endless update."""
    if a == b:
        return True
    return a != a and b != b  # noqa: PLR0124 - both NaN


def diff(
    source_rows: Iterable[SourceRow | RowError],
    target: Mapping[Key, TargetRow],
    *,
    model: str,
    create: bool = True,
    update: bool = True,
    delete: bool = False,
) -> Plan:
    """Compare source rows with the target rows in scope, keyed by natural key.

    A key that appears twice in the source is a row error on every occurrence and the
    target row under it is left alone: there is no silent last-wins. A row error that
    names its key also keeps that target row from being deleted.
    """
    plan = Plan(model=model, rows_in_scope=len(target))
    remaining = dict(target)
    seen: dict[Key, tuple[int, Create | Update | None, bool]] = {}
    duplicates: set[Key] = set()
    bad_keys: set[Key] = set()
    error_without_key = False

    def undo_first(key: Key) -> None:
        """The first good row under a key turned out to share it: it becomes an error."""
        first_row, first_action, was_unchanged = seen[key]
        duplicates.add(key)
        plan.errors.append(_duplicate_error(key, first_row))
        if was_unchanged:
            plan.unchanged -= 1
        elif first_action is not None:
            first_action.row = -1  # marked for removal below

    for item in source_rows:
        plan.rows_read += 1
        if isinstance(item, RowError):
            plan.errors.append(item)
            if item.key is None:
                error_without_key = True
                continue
            # A bad row keeps its target row, and makes its key shared with any good row.
            remaining.pop(item.key, None)
            bad_keys.add(item.key)
            if item.key in seen and item.key not in duplicates:
                undo_first(item.key)
            continue
        key = item.key
        if key in seen or key in bad_keys:
            if key not in seen:
                duplicates.add(key)
                seen[key] = (item.row, None, False)
            elif key not in duplicates:
                undo_first(key)
            plan.errors.append(_duplicate_error(key, item.row))
            continue
        existing = remaining.pop(key, None)
        action: Create | Update | None = None
        unchanged = False
        if existing is None:
            if create:
                action = Create(key=key, values=item.values, row=item.row)
                plan.creates.append(action)
        else:
            old = existing.values
            changed = {f: v for f, v in item.values.items() if f in old and not same(v, old[f])}
            if not changed:
                plan.unchanged += 1
                unchanged = True
            elif update:
                action = Update(
                    key=key,
                    pk=existing.pk,
                    old={f: old[f] for f in changed},
                    new=changed,
                    row=item.row,
                )
                plan.updates.append(action)
        seen[key] = (item.row, action, unchanged)

    if duplicates:
        plan.creates = [a for a in plan.creates if a.row != -1]
        plan.updates = [a for a in plan.updates if a.row != -1]
        plan.errors.sort(key=lambda e: (e.row is None, e.row or 0))

    if delete:
        if error_without_key and remaining:
            plan.warnings.append(unkeyed_errors_note(len(remaining)))
        else:
            plan.deletes = [
                Delete(key=key, pk=row.pk, old=row.values) for key, row in remaining.items()
            ]
    return plan


def _duplicate_error(key: Key, row: int) -> RowError:
    shown = key[0] if len(key) == 1 else key
    return RowError(
        row=row,
        message=_("duplicate key %(shown)r: it appears more than once") % {"shown": shown},
        key=key,
    )


# -- storable row errors ----------------------------------------------------------------------
#: Characters of a row error's column name kept (SyncRowError.column's max_length).
_COLUMN_SIZE = 255
#: Whole numbers beyond this many digits are kept as (cut) text.
_NUMBER_DIGITS = 40


def _text(value: str, size: int | None = None) -> str:
    """Text any database stores: no NUL, no lone surrogate, at most ``size`` characters
    (a longer one is cut and says how long it was)."""
    size = settings.ROW_ERROR_VALUE_SIZE if size is None else size
    length = len(value)
    if length > 4 * size:
        value = value[: 4 * size]  # enough to cut from, whatever the escapes below add
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    if not value.isascii():
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(value) > size:
        note = f"… ({length:,} characters)"
        value = value[: max(size - len(note), 0)] + note
    return value


def storable(value: Any) -> Any:
    """``value`` as a row error keeps it: JSON-safe scalars as they are (finite numbers,
    text without NUL, dates, decimals, UUIDs), anything else (NaN, bytes, a JSON object,
    a huge number, a missing cell) as text, and all text cut to ROW_ERROR_VALUE_SIZE."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, int):
        return value if abs(value) < 10**_NUMBER_DIGITS else _text(str(value))
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Decimal):
        return value if value.is_finite() else str(value)
    if isinstance(value, dt.time):
        return value if value.tzinfo is None else value.isoformat()
    if isinstance(value, dt.date | uuid.UUID):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return _text(repr(bytes(value[: settings.ROW_ERROR_VALUE_SIZE])))
    if isinstance(value, dict | list | tuple):
        try:
            text = json.dumps(value, default=str, ensure_ascii=False)
        except (ValueError, TypeError, RecursionError):
            text = repr(type(value))
        return _text(text)
    try:
        return _text(str(value))
    except Exception:  # noqa: BLE001 - a hostile __str__ must not fail the run
        return _text(repr(type(value)))


def _storable_raw(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        return {"value": storable(raw)}
    limit = settings.ROW_ERROR_COLUMNS
    out: dict[str, Any] = {}
    for i, (name, cell) in enumerate(raw.items()):
        if i >= limit:
            out["…"] = _("%(raw)s more cells") % {"raw": format(len(raw) - limit, ",")}
            break
        out[_text(str(name), _COLUMN_SIZE)] = storable(cell)
    return out


def _storable_key(key: Any) -> Key | None:
    """A key as stored: its values kept whole (the staged paths match rows by it), only
    made storable. Converted keys are storable already; a raw key may not be."""
    if key is None:
        return None
    return tuple(v if isinstance(v, str) and _clean(v) else storable(v) for v in key)


def _clean(text: str) -> bool:
    return "\x00" not in text and (text.isascii() or _encodes(text))


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_STORABLE: dict[str, Callable[[Any], Any]] = {
    "message": lambda m: _text(str(m)),
    "column": lambda c: None if c is None else _text(str(c), _COLUMN_SIZE),
    "key": _storable_key,
    "value": storable,
    "raw": _storable_raw,
}

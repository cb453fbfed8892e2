"""django-simple-history records written in SQL: one ``INSERT … SELECT`` per batch, from the
model's table into its history table, on PostgreSQL and SQLite (djsync.history).

``bulk_history_create`` reads every written row back into a model instance, builds a
historical instance per row and prepares each value in Python: most of what ``Meta.history``
costs a run. The rows are already in the database; :class:`SqlHistory` copies them into the
history table with the columns simple-history's history model declares — the tracked fields
(``excluded_fields`` left out, a foreign key as its ``<fk>_id`` column), ``history_date``
(now), ``history_type``, ``history_change_reason``, the user (a ``history_user`` foreign key
to any user model, or a ``history_user_id_field``), ``history_relation`` and ``history_id``
(the database's own, or a UUID made in SQL). A history model with a column SQL cannot fill
the way Python would (a custom base class with fields of its own, a ``history_id_field``
other than an auto field or a ``uuid4`` UUID, a custom ``get_user`` or user setter, a model
with multi-table inheritance) gets no SQL writer: :func:`sql_history` says why, and
djsync.history uses ``bulk_history_create`` for it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.db import connections, models
from django.utils import timezone

__all__ = ["SqlHistory", "sql_history"]

#: The vendors :class:`SqlHistory` writes on, and how each makes a ``uuid4`` (stored the way
#: Django stores a UUIDField there: PostgreSQL's uuid, SQLite's 32 hex digits). ``%%``: the
#: statement has parameters.
UUID4 = {
    "postgresql": "gen_random_uuid()",
    "sqlite": (
        "lower(hex(randomblob(6)) || '4' || substr(hex(randomblob(2)), 2)"
        " || substr('89ab', 1 + abs(random()) %% 4, 1) || substr(hex(randomblob(2)), 2)"
        " || hex(randomblob(6)))"
    ),
}


@dataclass(frozen=True)
class SqlHistory:
    """How one history model's ``+`` and ``~`` records are copied from its model's table."""

    model: type[models.Model]
    history_model: type[models.Model]
    #: (history column, model column) of the values copied from the row.
    copied: tuple[tuple[str, str], ...]
    #: (history field, what it gets: "date", "type", "reason" or "user").
    given: tuple[tuple[models.Field, str], ...]
    #: The history table's primary key column when it is a UUID made in SQL.
    uuid_column: str | None
    #: The history model's user field when it is a foreign key (else ``history_user_id``).
    user_fk: models.ForeignKey | None

    def user_value(self, user: Any) -> tuple[bool, Any]:
        """(can SQL store it, the value of the user column) for ``user``: a foreign key takes
        only an instance of its model (``bulk_history_create`` refuses the others)."""
        if user is None:
            return True, None
        if self.user_fk is None:
            return True, user.pk
        related: Any = self.user_fk.related_model  # a class once the apps are loaded
        if not isinstance(user, related):
            return False, None
        return True, getattr(user, self.user_fk.target_field.attname)

    def write(self, using: str, pks: list[Any], history_type: str, user: Any, reason: str) -> bool:
        """Record the rows ``pks`` as ``history_type`` (``+`` or ``~``) by ``user`` with
        ``reason``, in one statement; False (nothing written) when this user cannot be stored
        in SQL."""
        connection = connections[using]
        storable, user_id = self.user_value(user)
        if not storable:
            return False
        values = {"date": timezone.now(), "type": history_type, "reason": reason, "user": user_id}
        quote = connection.ops.quote_name
        columns = [quote(dst) for dst, _ in self.copied]
        selected = [f"m.{quote(src)}" for _, src in self.copied]
        params = []
        for field, what in self.given:
            columns.append(quote(field.column))
            selected.append("%s")
            params.append(field.get_db_prep_save(values[what], connection))
        if self.uuid_column is not None:
            columns.append(quote(self.uuid_column))
            selected.append(UUID4[connection.vendor])
        pk = self.model._meta.pk
        keys = [pk.get_db_prep_value(pk.to_python(value), connection) for value in pks]
        if connection.vendor == "postgresql":
            match, params = "= ANY(%s)", [*params, keys]
        else:
            match, params = "IN (SELECT value FROM json_each(%s))", [*params, json.dumps(keys)]
        sql = (
            f"INSERT INTO {quote(self.history_model._meta.db_table)} ({', '.join(columns)}) "
            f"SELECT {', '.join(selected)} FROM {quote(self.model._meta.db_table)} m "
            f"WHERE m.{quote(pk.column)} {match}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        return True


def sql_history(model: type[models.Model], vendor: str) -> SqlHistory | str:
    """The SQL writer of ``model``'s history on a ``vendor`` database, or why there is none
    (then ``bulk_history_create`` writes the records)."""
    if vendor not in UUID4:
        return f"{vendor} is written with bulk_history_create"
    return _build(model)


@cache
def _build(model: type[models.Model]) -> SqlHistory | str:
    from simple_history.utils import get_history_manager_for_model

    history_model = get_history_manager_for_model(model).model
    label = history_model._meta.label
    if model._meta.parents:
        return f"{model._meta.label} inherits fields from another table"
    if _records(history_model) is None:
        return f"{label} has a custom get_user"
    tracked = {f.name: f for f in history_model.tracked_fields}
    copied: list[tuple[str, str]] = []
    given: list[tuple[models.Field, str]] = []
    uuid_column = None
    user_fk = None
    roles = {"history_date": "date", "history_type": "type", "history_change_reason": "reason"}
    for field in history_model._meta.concrete_fields:
        if field.primary_key:
            if isinstance(field, models.UUIDField) and field.default is uuid.uuid4:
                uuid_column = field.column
            elif not isinstance(field, models.AutoField | models.BigAutoField):
                return f"{label}'s history_id is neither an auto field nor a uuid4 UUID"
        elif field.name in tracked:
            copied.append((field.column, tracked[field.name].column))
        elif field.name == "history_relation":
            copied.append((field.column, model._meta.pk.column))
        elif field.name in roles:
            given.append((field, roles[field.name]))
        elif field.name in ("history_user", "history_user_id"):
            if isinstance(field, models.ForeignKey):
                user_fk = field
            elif not _default_user_setter(history_model):
                return f"{label} has a custom history_user_setter"
            given.append((field, "user"))
        else:
            return f"{label} has a field djsync cannot fill in SQL: {field.name}"
    if len(given) != 4:
        return f"{label} lacks simple-history's history_* fields"
    return SqlHistory(model, history_model, tuple(copied), tuple(given), uuid_column, user_fk)


def _records(history_model: type[models.Model]) -> Any:
    """The HistoricalRecords that made ``history_model`` when its ``get_user`` is
    simple-history's own (the request's user), else None. simple-history keeps it only in
    the closure of the history model's ``get_default_history_user``."""
    from simple_history.models import HistoricalRecords, _default_get_user

    function = getattr(history_model, "get_default_history_user", None)
    for cell in getattr(function, "__closure__", None) or ():
        records = cell.cell_contents
        if isinstance(records, HistoricalRecords):
            return records if records.get_user is _default_get_user else None
    return None


def _default_user_setter(history_model: type[models.Model]) -> bool:
    from simple_history.models import _history_user_setter

    user = history_model.__dict__.get("history_user")
    return isinstance(user, property) and user.fset is _history_user_setter

"""The target protocol: what a step writes to, whatever it is.

A target reads its rows in scope (each with its own identifier and its values by field
name) and writes batches of creates, updates and deletes, saying which items it refused.
The differ, the preview, the limits, the delete guard, the staleness check and the history
are the same for every target. A Django model is the main target
(:class:`djsync.targets.model.ModelTarget`, with the staged paths of djsync.backends); an
HTTP JSON API is another (djsync.targets.http); a developer writes their own by subclassing
:class:`Target` with ``read()`` and ``create/update/delete(batch)``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from django.db import models
from django.utils.translation import gettext as _

from djsync.engine.diff import Create, Delete, Key, Plan, TargetRow, Update
from djsync.exceptions import TargetError

__all__ = ["Mapper", "Refused", "Target", "WriteResult"]


class Mapper(Protocol):
    """What a target asks of the importer that maps a source onto it (djsync.mapping)."""

    using: str
    target: Target
    active_fields: list[Any]

    def key_of(self, values: dict[str, Any]) -> Key: ...

    def normalize_target_row(self, values: dict[str, Any]) -> dict[str, Any]: ...


Action = Create | Update | Delete


@dataclass(slots=True)
class Refused:
    """An item the target would not take, and its answer (``field``: the field it blamed)."""

    action: Action
    message: str
    field: str | None = None


@dataclass
class WriteResult:
    """What a write did: how many items went through, and the ones refused."""

    written: int = 0
    refused: list[Refused] | None = None


class Target:
    """A system a job writes to. Subclass it, declare ``label`` and ``fields``, and write
    :meth:`read` and :meth:`create`, :meth:`update`, :meth:`delete`.

    ``fields`` declares each field of a record with a Django model field
    (``models.CharField(max_length=150)``), unbound: an importer converts and validates
    source values for it, and the target's own values when read, exactly as for a model's
    field, so both sides compare as equals. Writes that go nowhere transactional report
    per item: return a :class:`Refused` for each item the system refused; every other item
    counts as written. Raise :class:`djsync.exceptions.TargetError` to stop the run.
    """

    #: The name of the target in runs, changes and messages ("directory.accounts").
    label: str = ""
    #: Each field of a record, as an unbound Django model field.
    fields: ClassVar[dict[str, models.Field[Any, Any]]] = {}
    #: Most items per create, update or delete call.
    batch_size: ClassVar[int] = 100
    #: Labels of targets a job must write before this one (parents first).
    parents: ClassVar[Sequence[str]] = ()
    #: The permission (``"app.codename"``) a user needs to apply a run to this target from
    #: the admin, besides running jobs; a model target asks for the model's own.
    permission: ClassVar[str | None] = None
    #: True when a failed write undoes the whole apply (a database transaction); else the
    #: items written before a failure stay written and are recorded as such.
    transactional: ClassVar[bool] = False

    def __init__(self) -> None:
        self._fields: dict[str, models.Field[Any, Any]] = {}
        for name, spec in type(self).fields.items():
            field = copy.copy(spec)  # each target instance names its own copy
            field.set_attributes_from_name(name)
            self._fields[name] = field

    # -- what the importer asks ----------------------------------------------------------
    def get_field(self, name: str) -> models.Field[Any, Any]:
        try:
            return self._fields[name]
        except KeyError:
            raise LookupError(
                f"{self.label} has no field {name!r} (fields: {', '.join(self._fields)})"
            ) from None

    def field_names(self) -> list[str]:
        """The fields ``"__all__"`` maps."""
        return list(self._fields)

    def restore_pk(self, text: str) -> Any:
        """A record's identifier as a stored preview gives it back (text) to ``update`` and
        ``delete``; override to turn it into what the system takes."""
        return text

    def describe(self, action: str, key: Key, pk: Any) -> str:
        """What the apply will send for an action, as the preview shows it."""
        return f"{action} {self.label} {key if len(key) > 1 else key[0]!r}"

    # -- reading -------------------------------------------------------------------------
    def read(self) -> Iterable[tuple[Any, dict[str, Any]]]:
        """Every record in scope: ``(identifier, values by field name)``. The values may be
        as the system gives them (text for a date): they are converted as source values."""
        raise NotImplementedError(f"{type(self).__name__} must define read()")

    def read_rows(self, importer: Mapper) -> dict[Key, TargetRow]:
        """The rows in scope by key, values converted and normalized like a model's."""
        fields = importer.active_fields
        rows: dict[Key, TargetRow] = {}
        for pk, record in self.read():
            values = {f.name: self.read_value(f, record.get(f.name), pk) for f in fields}
            values = importer.normalize_target_row(values)
            rows[importer.key_of(values)] = TargetRow(pk=pk, values=values)
        return rows

    def read_value(self, field: Any, raw: Any, pk: Any) -> Any:
        """One value as the target gave it, made comparable: read as a stored value (ISO
        dates, plain numbers), else as a source value (the field's formats and converter).
        A value neither reads is the target's problem: the error names the record."""
        if raw is None:
            return None
        try:
            return field.restore(raw)
        except (ValueError, TypeError):
            pass
        try:
            return field.convert(raw)
        except (ValueError, TypeError) as exc:
            raise TargetError(
                _(
                    "%(self)s: record %(pk)r, field %(name)r: %(raw)r cannot be compared with the "
                    "source's values (%(exc)s); fix the record or the field's declaration"
                )
                % {"self": self, "pk": pk, "name": field.name, "raw": str(raw)[:80], "exc": exc}
            ) from exc

    # -- writing -------------------------------------------------------------------------
    def send_each(
        self,
        batch: Sequence[Action],
        send_one: Callable[[Any], Refused | str | None],
    ) -> list[Refused]:
        """Send a batch item by item: ``send_one(action)`` returns None when done, or the
        system's refusal (a :class:`Refused` or its message). Raising TargetError stops the
        run; the items this batch wrote and refused before it are still counted."""
        refused: list[Refused] = []
        for done, action in enumerate(batch):
            try:
                answer = send_one(action)
            except TargetError as exc:
                exc.partial = (done - len(refused), refused)  # type: ignore[attr-defined]
                raise
            if answer is not None:
                refused.append(answer if isinstance(answer, Refused) else Refused(action, answer))
        return refused

    # -- writing -------------------------------------------------------------------------
    def create(self, batch: list[Create]) -> Iterable[Refused]:
        """Create each record (``action.values``); return the ones refused."""
        raise NotImplementedError(f"{type(self).__name__} must define create()")

    def update(self, batch: list[Update]) -> Iterable[Refused]:
        """Set ``action.new`` (the changed fields only) on record ``action.pk``."""
        raise NotImplementedError(f"{type(self).__name__} must define update()")

    def delete(self, batch: list[Delete]) -> Iterable[Refused]:
        """Delete record ``action.pk``."""
        raise NotImplementedError(f"{type(self).__name__} must define delete()")

    def write(
        self,
        plan: Plan,
        importer: Mapper,
        *,
        progress: Callable[[int], None] | None = None,
        actions: tuple[str, ...] = ("create", "update", "delete"),
        result: WriteResult | None = None,
    ) -> WriteResult:
        """Send the plan's ``actions`` in batches of ``batch_size``; count what went
        through into ``result`` as it goes, so a failure half-way still says how much
        was written."""
        result = result if result is not None else WriteResult()
        refused = result.refused if result.refused is not None else []
        result.refused = refused
        todo: list[tuple[Callable[[Any], Iterable[Refused]], list[Any]]] = []
        if "create" in actions:
            todo.append((self.create, plan.creates))
        if "update" in actions:
            todo.append((self.update, plan.updates))
        if "delete" in actions:
            todo.append((self.delete, plan.deletes))
        size = max(1, int(self.batch_size))
        for send, items in todo:
            for start in range(0, len(items), size):
                batch = items[start : start + size]
                try:
                    answer = list(send(batch) or ())
                except TargetError as exc:  # what the batch did before it stopped still counts
                    written, partial = getattr(exc, "partial", (0, []))
                    result.written += written
                    refused.extend(partial)
                    raise
                refused.extend(answer)
                result.written += len(batch) - len(answer)
                if progress is not None:
                    progress(result.written + len(refused))
        return result

    def __str__(self) -> str:
        return self.label or type(self).__name__

"""A staged plan's creates, updates or deletes, kept in the database once a run stored them:
counted exactly, read back page by page (``run.plan.updates[0]``), never held whole."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.utils.translation import gettext as _

from djsync.exceptions import TargetError
from djsync.targets.notify import Notifier


class StoredActions:
    """A plan's creates, updates or deletes kept in the database: exact ``len()``; iterating
    or indexing (``plan.updates[0]``, ``plan.updates[:20]``) reads them back from the run's
    stored changes, page by page."""

    def __init__(self, plan: Any, attribute: str, count: int) -> None:
        #: The StagedSqlPlan (djsync.backends.staged) whose actions these are.
        self.plan, self.attribute, self.count = plan, attribute, count

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __iter__(self) -> Iterator[Any]:
        if not self.count:
            return iter(())
        self._check_stored(self.count)
        from djsync.store import load_plan

        assert self.plan.run is not None  # checked above
        return iter(getattr(load_plan(self.plan.run, self.plan.importer), self.attribute))

    def __getitem__(self, index: int | slice) -> Any:
        from djsync.store import load_actions

        if isinstance(index, slice):
            start, stop, step = index.indices(self.count)
        else:
            position = index + self.count if index < 0 else index
            if not 0 <= position < self.count:
                raise IndexError(f"{self.attribute} index out of range")
            start, stop, step = position, position + 1, 1
        self._check_stored(stop)
        assert self.plan.run is not None
        action = self.attribute[:-1]  # "updates" → "update"
        found = load_actions(self.plan.run, self.plan.importer, action, start, stop)[::step]
        return found if isinstance(index, slice) else found[0]

    def _check_stored(self, needed: int) -> None:
        if self.plan.run is None:
            raise TargetError("a staged plan's actions can be read once the run stored them")
        limit = self.plan.stored_limit
        if limit is not None and needed > limit:
            raise TargetError(
                _(
                    "only %(limit)s of the plan's %(count)s %(attribute)s were stored "
                    "(the AUDIT_CHANGES setting)"
                )
                % {"limit": limit, "count": self.count, "attribute": self.attribute}
            )


def tell(plan: Any, told: Notifier, action: str) -> None:
    """Tell ``told``'s receivers the primary keys of the rows the staged plan just created or
    updated (``action``), one batch at a time; nothing is read when nobody listens. The
    created rows are found by their keys and copied into a table of their own first, so
    that receivers may write to the target while the keys are read."""
    if not told:
        return
    if action == "update":
        told.stream("updated", f"SELECT _pk FROM {plan.act} WHERE act = 'u'")
        return
    model = plan.importer.model
    qn = plan.qn
    on = " AND ".join(
        f"x.{qn(plan.fields[i].model_field.column)} = {plan._value(i)}"
        for i in plan.key_positions()
    )
    new = f"{plan.src}_new"
    with plan.connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE {new} AS SELECT x.{qn(model._meta.pk.column)} AS _pk "
            f"FROM {plan._created()} JOIN {qn(model._meta.db_table)} x ON {on}"
        )
    try:
        told.stream("created", f"SELECT _pk FROM {new}")
    finally:
        with plan.connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {new}")

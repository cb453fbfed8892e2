"""Plan → target writes: limits first, then the plan sent where it was planned.

A staged plan is applied in SQL by its backend (djsync.backends); any other plan is
written by its importer's target (djsync.targets: a model's bulk statements, an API's
requests), inside one transaction of the importer's database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from itertools import islice
from typing import TYPE_CHECKING, TypeVar

from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from djsync.engine.diff import Plan, StagedPlan
from djsync.exceptions import DeleteGuardError, LimitExceeded, RowErrorsFound
from djsync.targets.base import Mapper, WriteResult

if TYPE_CHECKING:
    from djsync.mapping.switches import Switches

T = TypeVar("T")
Progress = Callable[[int], None]


def check_limits(plan: Plan, switches: Switches) -> None:
    """Raise before anything is written if the plan breaks a limit or the delete guard."""
    if plan.errors and switches.on_row_error == "fail":
        first = "; ".join(str(e) for e in plan.errors[:3])
        more = (
            _(" (and %(errors)s more)") % {"errors": len(plan.errors) - 3}
            if len(plan.errors) > 3
            else ""
        )
        where = _(" in %(source)s") % {"source": plan.source} if getattr(plan, "source", "") else ""
        rows = plan.error_rows  # rows, not messages: a row with two bad cells is one
        raise RowErrorsFound(
            ngettext(
                "%(model)s: %(rows)s bad row%(where)s, nothing written: %(first)s%(more)s",
                "%(model)s: %(rows)s bad rows%(where)s, nothing written: %(first)s%(more)s",
                rows,
            )
            % {"model": plan.model, "rows": rows, "where": where, "first": first, "more": more}
        )
    counts = plan.counts
    for limit, count, what in (
        (switches.max_create, counts["created"], _("creates")),
        (switches.max_update, counts["updated"], _("updates")),
        (switches.max_delete, counts["deleted"], _("deletes")),
        (switches.max_total, plan.total, _("changes")),
    ):
        if limit is not None and count > limit:
            raise LimitExceeded(
                _(
                    "%(model)s: the plan has %(count)s %(what)s, more than the limit of "
                    "%(limit)s; nothing written"
                )
                % {"model": plan.model, "count": count, "what": what, "limit": limit}
            )
    guard = switches.delete_guard
    if plan.deletes and guard is not None and not switches.force and plan.rows_in_scope:
        share = len(plan.deletes) / plan.rows_in_scope
        if share > guard:
            raise DeleteGuardError(
                _(
                    "%(model)s: the plan deletes %(deletes)s of %(rows_in_scope)s rows in scope "
                    "(%(share)s), more than the delete guard of %(guard)s. Is the source empty or "
                    "truncated? Nothing written; force the run to allow it."
                )
                % {
                    "model": plan.model,
                    "deletes": len(plan.deletes),
                    "rows_in_scope": plan.rows_in_scope,
                    "share": format(share, ".0%"),
                    "guard": format(guard, ".0%"),
                }
            )


#: Every action of a plan, in the order they are written.
ALL = ("create", "update", "delete")


def apply_plan(
    plan: Plan,
    importer: Mapper,
    *,
    progress: Progress | None = None,
    actions: tuple[str, ...] = ALL,
    result: WriteResult | None = None,
) -> WriteResult:
    """Write the plan (or only its ``actions``: a multi-model job writes parents' creates
    first and their deletes last) to the importer's target inside one transaction of its
    database; a target that is not a database counts into ``result`` what it wrote and
    refused, so a failure half-way still says how much went through."""
    result = result if result is not None else WriteResult()
    if isinstance(plan, StagedPlan):  # planned in staging tables: applied in SQL
        with transaction.atomic(using=importer.using):
            before = result.written
            plan.apply_actions(progress=progress, actions=actions)
            result.written = before + sum(len(getattr(plan, f"{a}s")) for a in actions)
        return result
    # An API: nothing to roll back, and no transaction of djsync's database to hold.
    atomic = transaction.atomic if importer.target.transactional else _no_transaction
    with atomic(using=importer.using):
        return importer.target.write(
            plan, importer, progress=progress, actions=actions, result=result
        )


def _no_transaction(using: str) -> AbstractContextManager[None]:
    return nullcontext()


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch

"""A job as a list of steps — one per importer, parents first — planned, recorded, applied.

A job names one importer (``"products"``) or several (``"departments, employees"``). Either
way the orchestrator (djsync.runs.orchestrator) works on steps: each step reads its source and plans
its model on the path :mod:`djsync.backends` chooses; nothing is written until every plan is
computed and within its limits; then creates and updates go parents first (a child may
refer to a parent the same run creates), deletes children first, all in one transaction.
A stored preview comes back as the same steps (:func:`stored_steps`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils.translation import gettext as _

from djsync import backends
from djsync.engine.apply import apply_plan, check_limits
from djsync.engine.diff import Create, Delete, Plan, StagedPlan, Update, same
from djsync.exceptions import ConfigurationError, DjsyncError, RowErrorsFound, stale_error
from djsync.exports import step as exports
from djsync.mapping.fields import related_model
from djsync.mapping.registry import (
    bind,
    get_importer_class,
    importers_of,
    job_database,
    split_names,
)
from djsync.mapping.switches import SWITCH_NAMES, Switches, job_switches
from djsync.models import SyncJob
from djsync.runs import incremental
from djsync.sources import Source
from djsync.store import error_stats, save_plan
from djsync.targets.base import WriteResult

if TYPE_CHECKING:
    from djsync.mapping.importers import BaseImporter
    from djsync.models import SyncRun


@dataclass
class Step:
    """One importer of a job, the switches of this run, and its plan once computed."""

    importer: BaseImporter
    switches: Switches
    plan: Plan | None = None
    #: What the apply wrote and what the target refused (a target that is not a database
    #: answers item by item).
    result: WriteResult = field(default_factory=WriteResult)
    #: The step's own source (an export reads its model), else the job's or the run's.
    source: Source | None = None


# -- the job's importers -------------------------------------------------------------------
def get_job(job: str | SyncJob) -> SyncJob:
    """A job by name (or the job itself); an unknown name lists the known ones."""
    if isinstance(job, SyncJob):
        return job
    try:
        return SyncJob.objects.get(name=job)
    except SyncJob.DoesNotExist:
        known = ", ".join(SyncJob.objects.values_list("name", flat=True)) or "none"
        raise ConfigurationError(
            _("no sync job named %(job)r (jobs: %(known)s)") % {"job": job, "known": known}
        ) from None


def importer_names(job: SyncJob) -> list[str]:
    """The importer names of a job: one, or several separated by commas."""
    return split_names(job.importer)


def is_multi(job: SyncJob) -> bool:
    return len(importer_names(job)) > 1


def make_importer(job: SyncJob, name: str | None = None) -> BaseImporter:
    """The job's importer (or its importer ``name``), bound to its target's database."""
    with _named(job):
        return _with_mappings(
            job, [bind(get_importer_class(name or job.importer), target_database(job))]
        )[0]


def make_importers(job: SyncJob) -> list[BaseImporter]:
    """The job's importers in dependency order, all writing to one database."""
    with _named(job):
        return _with_mappings(
            job, importers_of(job.importer, job=job.name, using=target_database(job))
        )


def _with_mappings(job: SyncJob, importers: list[BaseImporter]) -> list[BaseImporter]:
    """Each importer with the job's saved column mappings for it (djsync.mapping.columns)."""
    saved = job.column_mapping if isinstance(job.column_mapping, dict) else {}
    for importer in importers:
        entries = saved.get(importer.name)
        importer.column_mappings = entries if isinstance(entries, list) else []
    return importers


@contextmanager
def _named(job: SyncJob) -> Iterator[None]:
    """An importer that is not registered (or cannot be built) is the job's configuration
    error: one line naming the job, no traceback."""
    try:
        yield
    except ImproperlyConfigured as exc:
        message = str(exc).removeprefix("djsync: ")
        raise ConfigurationError(f"job {job.name!r}: {message}") from exc


def target_database(job: SyncJob) -> str | None:
    """The database alias a job's ``target`` picks for its models (None: their own)."""
    return job_database(job.target, importer_names(job), job=job.name)


def resolve_switches(importer: BaseImporter, job: SyncJob, options: dict[str, Any]) -> Switches:
    """Run options beat the job's fields, which beat the importer's attributes."""
    switches = importer.default_switches().with_overrides(**job_switches(job))
    unknown = set(options) - set(SWITCH_NAMES)
    if unknown:
        raise ConfigurationError(
            _("unknown run options: %(sorted)s") % {"sorted": ", ".join(sorted(unknown))}
        )
    return switches.with_overrides(**options)


def make_steps(
    job: SyncJob, options: dict[str, Any], *, export: exports.ExportTo | None = None
) -> list[Step]:
    """The job's steps; an export job's (or any job's with ``export``) is one step whose
    target is a file and whose source is the importer's model."""
    if export is None and not exports.is_export(job):
        return [Step(imp, resolve_switches(imp, job, options)) for imp in make_importers(job)]
    if is_multi(job):
        raise ConfigurationError(f"job {job.name!r} has several importers; export one at a time")
    importer = make_importer(job)
    _, source = exports.export_step(job, importer, export)
    return [Step(importer, exports.export_switches(job, options), source=source)]


# -- planning ------------------------------------------------------------------------------
def plan_steps(
    sync_run: SyncRun,
    steps: list[Step],
    *,
    sources: Callable[[Step], Source],
    on_source: Callable[[str], object],
    progress: Callable[[int], None] | None = None,
) -> None:
    """Read each step's source (``sources``) and plan it, parents first; a later step's
    foreign keys find the rows an earlier one creates (``pending_plans``).
    ``on_source`` hears the sources read so far, for the run's record."""
    names: list[str] = []
    for step in steps:
        importer = step.importer
        source = sources(step)
        importer.only_keys = source.scope_keys(importer)
        diff_switches = incremental.prepare(source, sync_run.job, step.switches, importer)
        names.append(str(source))
        on_source("; ".join(names)[:500])
        importer.pending_plans = [s.plan for s in steps if s.plan is not None]
        plan = backends.build_plan(importer, source, diff_switches, progress=progress)
        step.plan = plan
        plan.source = str(source)
        if isinstance(plan, StagedPlan):
            plan.parents = pending_parents(plan, importer)  # type: ignore[attr-defined]
        incremental.finish_plan(plan, importer, source, step.switches, sync_run)


def pending_parents(plan: Any, importer: BaseImporter) -> list[int]:
    """Positions of the foreign keys that point at a model an earlier step plans: rows it
    creates get their primary keys by a join when the apply starts."""
    labels = {parent.model for parent in importer.pending_plans}
    return [
        i
        for i, f in enumerate(plan.fields)
        if f.is_relation and f.model_field.related_model._meta.label in labels
    ]


def plans(steps: Sequence[Step]) -> list[Plan]:
    return [step.plan for step in steps if step.plan is not None]


def close(steps: Sequence[Step]) -> None:
    """Drop the staging tables of every staged plan (idempotent)."""
    for plan in plans(steps):
        if isinstance(plan, StagedPlan):
            plan.close()


# -- recording -----------------------------------------------------------------------------
def record_plans(sync_run: SyncRun, steps: Sequence[Step]) -> None:
    """Counts on the run (summed), per-model counts, path and fields in ``stats``, every
    action and row error in their tables. Saved with the run by the caller."""
    totals = dict.fromkeys(("created", "updated", "deleted", "unchanged", "errors"), 0)
    stats: dict[str, Any] = {}
    warnings: list[str] = []
    several = len(steps) > 1
    for step in steps:
        plan = step.plan
        if plan is None:
            continue
        counts = plan.counts
        for name in totals:
            totals[name] += counts[name]
        stats[plan.model] = {
            **counts,
            "rows_read": plan.rows_read,
            "rows_in_scope": plan.rows_in_scope,
            "path": plan.path,
            "fields": plan.compared,
            **error_stats(plan),
            **step.importer.target.report(),
        }
        save_plan(sync_run, plan)  # first: it may add a warning (changes left out)
        warnings.extend(f"{plan.model}: {w}" if several else w for w in plan.warnings)
    sync_run.created = totals["created"]
    sync_run.updated = totals["updated"]
    sync_run.deleted = totals["deleted"]
    sync_run.unchanged = totals["unchanged"]
    sync_run.errors = totals["errors"]
    sync_run.rows_read = sum(plan.rows_read for plan in plans(steps))
    sync_run.stats = stats
    sync_run.warnings = warnings
    # For callers in this process: the plans (and the one plan of a single-model job).
    sync_run.plans = plans(steps)  # type: ignore[attr-defined]
    if not several:
        sync_run.plan = sync_run.plans[0]  # type: ignore[attr-defined]


def limit_problems(steps: Sequence[Step]) -> list[str]:
    """What would stop a real run of these plans (row errors, limits, the delete guard)."""
    problems = []
    for step in steps:
        try:
            check_limits(step.plan, step.switches)  # type: ignore[arg-type]
        except DjsyncError as exc:
            problems.append(str(exc))
    return problems


# -- applying ------------------------------------------------------------------------------
def apply_steps(
    sync_run: SyncRun, steps: Sequence[Step], *, progress: Callable[[int], None] | None = None
) -> int:
    """Write in one transaction (the caller checked the limits): creates and updates
    parents first, deletes children first. Returns the rows written; records each model's
    path."""
    written = 0

    def report(done: int) -> None:  # rows written by every step so far
        if progress is not None:
            progress(written + done)

    for step in steps:
        step.importer.run = sync_run  # told to receivers of djsync.signals.batch_applied
    with write_transaction(steps):
        if len(steps) == 1:
            plan = steps[0].plan
            assert plan is not None
            apply_plan(plan, steps[0].importer, progress=report, result=steps[0].result)
        else:
            for step in steps:
                importer, plan = step.importer, step.plan
                assert plan is not None
                if not isinstance(plan, StagedPlan) and importer.writes_model:
                    importer.load_lookups()  # parents written just now get their primary keys
                apply_plan(
                    plan,
                    importer,
                    progress=report,
                    actions=("create", "update"),
                    result=step.result,
                )
                written += len(plan.creates) + len(plan.updates)
            for step in reversed(steps):
                plan = step.plan
                if plan is not None and plan.deletes:
                    apply_plan(
                        plan,
                        step.importer,
                        progress=report,
                        actions=("delete",),
                        result=step.result,
                    )
                    written += len(plan.deletes)
    stats = dict(sync_run.stats or {})
    for plan in plans(steps):  # the path each model's apply took
        stats[plan.model] = {**stats.get(plan.model, {}), "path": plan.path}
    sync_run.stats = stats
    return sum(step.result.written for step in steps)


def record_refusals(sync_run: SyncRun, steps: Sequence[Step]) -> int:
    """Store what targets refused item by item (row errors, and the answer on each stored
    change); count them into the run's errors and each model's stats. Returns how many."""
    from djsync.store import save_refusals

    total = 0
    stats = dict(sync_run.stats or {})
    for step in steps:
        refused = step.result.refused or []
        if not refused or step.plan is None:
            continue
        save_refusals(sync_run, step.plan.model, refused)
        by_action = {a: sum(1 for r in refused if r.action.action == a) for a in CHANGE_KINDS}
        counts = dict(stats.get(step.plan.model, {}))
        for action, n in by_action.items():  # the counts say what was done, not planned
            field = f"{action}d"  # created, updated, deleted
            counts[field] = max(0, counts.get(field, 0) - n)
            setattr(sync_run, field, max(0, getattr(sync_run, field) - n))
        counts["refused"] = {a: n for a, n in by_action.items() if n}
        stats[step.plan.model] = counts
        total += len(refused)
    if total:
        sync_run.stats = stats
        sync_run.errors += total
    return total


def refusal_message(steps: Sequence[Step], total: int) -> str:
    """One line: how many changes each target refused, with its first answers."""
    parts = []
    for step in steps:
        refused = step.result.refused or []
        if refused and step.plan is not None:
            first = "; ".join(f"{_key(r.action.key)}: {r.message}" for r in refused[:3])
            more = (
                _(" (and %(refused)s more)") % {"refused": len(refused) - 3}
                if len(refused) > 3
                else ""
            )
            parts.append(
                _(
                    "%(model)s: the target refused %(refused)s of %(total)s changes "
                    "(%(first)s%(more)s)"
                )
                % {
                    "model": step.plan.model,
                    "refused": format(len(refused), ","),
                    "total": format(step.plan.total, ","),
                    "first": first,
                    "more": more,
                }
            )
    written = sum(step.result.written for step in steps)
    return "; ".join(parts) + _("; %(written)s of %(total)s changes written") % {
        "written": format(written, ","),
        "total": format(total, ","),
    }


#: The kinds of action, in the order they are written.
CHANGE_KINDS = ("create", "update", "delete")


def write_transaction(steps: Sequence[Step]) -> AbstractContextManager[Any]:
    """One transaction of the target database around a run's writes, when a target is a
    database. Around an API's writes there is nothing to roll back, and a transaction of
    djsync's own database would hold its locks (SQLite's write lock: the job's lease could
    not be renewed) and hide the run's progress until the last request."""
    if any(step.importer.target.transactional for step in steps):
        return transaction.atomic(using=steps[0].importer.using)
    return nullcontext()


def untransacted_writes(steps: Sequence[Step]) -> int:
    """Items written to targets that a rollback does not undo (an API's, say)."""
    return sum(s.result.written for s in steps if not s.importer.target.transactional)


def stored_steps(sync_run: SyncRun) -> list[Step]:
    """The steps of a previewed run with the plans it stored, ready to check and apply (on
    the staged path, restaged in SQL; see :func:`djsync.backends.stored_plan`)."""
    steps = make_steps(sync_run.job, sync_run.options, export=exported_to(sync_run))
    try:
        for step in steps:
            if sync_run.errors and step.switches.on_row_error == "fail":
                raise RowErrorsFound(
                    _(
                        "the preview has %(errors)s row errors and the job fails on them; fix the "
                        "source and preview again"
                    )
                    % {"errors": sync_run.errors}
                )
            step.importer.pending_plans = plans(steps)
            step.plan = backends.stored_plan(sync_run, step.importer, step.switches)
    except BaseException:
        close(steps)
        raise
    return steps


def exported_to(sync_run: SyncRun) -> exports.ExportTo | None:
    """The file a previewed export compared with (its stats say, as djsync recorded them):
    applied there, whatever day it is now ({date} is not filled again)."""
    for counts in (sync_run.stats or {}).values():
        if isinstance(counts, dict) and counts.get("file"):
            path = str(counts["file"]).replace("{", "{{").replace("}", "}}")
            return exports.ExportTo(path, counts.get("format"), compared=counts)
    return None


def finish_targets(sync_run: SyncRun, steps: Sequence[Step]) -> None:
    """Every write went through: the targets that stage theirs make them take effect (a
    file renamed into place); what they report joins each model's stats."""
    stats = dict(sync_run.stats or {})
    for step in steps:
        target = step.importer.target
        target.finish()
        if step.plan is not None and target.report():
            stats[step.plan.model] = {**stats.get(step.plan.model, {}), **target.report()}
    sync_run.stats = stats


def discard_targets(steps: Sequence[Step]) -> None:
    """The apply failed: drop what the targets staged."""
    for step in steps:
        step.importer.target.discard()


def check_stale(plan: Plan, importer: BaseImporter) -> None:
    """Raise ConflictError naming the keys whose target rows changed since the preview
    (a staged plan checks in SQL, against the target where it is)."""
    if isinstance(plan, StagedPlan):
        plan.check_stale()
        return
    current = importer.read_target()
    conflicts: list[tuple[str, str]] = []
    for created in plan.creates:
        if created.key in current:
            conflicts.append((_key(created.key), _("created by someone else")))
    existing: list[Update | Delete] = [*plan.updates, *plan.deletes]
    for action in existing:
        row = current.get(action.key)
        if row is None or str(row.pk) != str(action.pk):
            conflicts.append((_key(action.key), "gone"))
        elif any(not same(_ms(row.values.get(f)), _ms(v)) for f, v in action.old.items()):
            conflicts.append((_key(action.key), "changed"))
    relations = [f for f in importer.active_fields if f.is_relation]
    written: list[Create | Update] = [*plan.creates, *plan.updates]
    for new in written:
        values = new.values if isinstance(new, Create) else new.new
        for f in relations:
            value = values.get(f.name)
            if value is not None and value not in importer.lookups.get(f.name, {}):
                name = related_model(f.model_field)._meta.verbose_name
                conflicts.append(
                    (
                        str(value),
                        _("no %(name)s with %(lookup)s %(value)r")
                        % {"name": name, "lookup": f.lookup, "value": value},
                    )
                )
    if conflicts:
        raise stale_error(plan.model, conflicts[:10], len(conflicts))


def _ms(value: Any) -> Any:
    """Datetimes and times to the millisecond: a stored preview keeps no more."""
    if isinstance(value, datetime | time) and value.microsecond % 1000:
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    return value


def _key(key: tuple[Any, ...]) -> str:
    return str(key[0]) if len(key) == 1 else str(tuple(key))

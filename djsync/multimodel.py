"""Multi-model jobs: several importers, parents before children, one transaction, one run.

A job whose ``importer`` names several importers (``"departments, employees"``) plans each
model in dependency order (a model after the models its foreign keys point to), so a child
row may refer to a parent the same run creates. Nothing is written until every plan is
computed and within its limits; then creates and updates go parents first, deletes
children first, all in one transaction. The run records per-model counts in ``stats``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db import router, transaction

from . import backends
from .diff import StagedPlan
from .exceptions import ConfigurationError
from .registry import get_importer_class
from .sources import Source, get_source

if TYPE_CHECKING:
    from .diff import Plan
    from .importers import BaseImporter, Switches
    from .models import SyncJob, SyncRun
    from .services import Progress


def importer_names(job: SyncJob) -> list[str]:
    """The importer names of a job: one, or several separated by commas."""
    return [n.strip() for n in (job.importer or "").split(",") if n.strip()]


def is_multi(job: SyncJob) -> bool:
    return len(importer_names(job)) > 1


def dependency_order(importers: Sequence[BaseImporter]) -> list[BaseImporter]:
    """Parents before children (by foreign keys between their models), else as given."""
    labels = {imp.model._meta.label: imp for imp in importers}
    needs: dict[str, set[str]] = {}
    for imp in importers:
        parents = {
            f.related_model._meta.label
            for f in imp.model._meta.concrete_fields
            if f.is_relation and f.related_model is not imp.model
        }
        needs[imp.model._meta.label] = parents & set(labels) - {imp.model._meta.label}
    ordered: list[BaseImporter] = []
    done: set[str] = set()
    while len(ordered) < len(importers):
        ready = [i for i in importers if i.label not in done and needs[i.label] <= done]
        if not ready:
            cycle = ", ".join(i.label for i in importers if i.label not in done)
            raise ConfigurationError(f"the importers' models depend on each other: {cycle}")
        ordered.append(ready[0])
        done.add(ready[0].label)
    return ordered


def make_importers(job: SyncJob) -> list[BaseImporter]:
    """The job's importers in dependency order, all writing to one database."""
    importers = []
    for name in importer_names(job):
        cls = get_importer_class(name)
        importers.append(cls(using=cls.database or router.db_for_write(cls.model)))
    labels = [i.label for i in importers]
    if len(set(labels)) != len(labels):
        raise ConfigurationError(f"job {job.name!r} names one model twice: {', '.join(labels)}")
    aliases = {i.using for i in importers}
    if len(aliases) > 1:
        raise ConfigurationError(
            f"job {job.name!r}: its importers write to several databases "
            f"({', '.join(sorted(aliases))}); one transaction needs one"
        )
    return dependency_order(importers)


def source_options(job: SyncJob, importer: BaseImporter) -> tuple[dict[str, Any], Any]:
    """Options of one importer's source: its own defaults (code, trusted), and the job's
    (data, checked by djsync.sources.policy): the shared options and the job's
    ``"sources": {"<importer name>": {...}}`` entry for it."""
    shared = dict(job.source or {}) if isinstance(job.source, dict) else {}
    own = shared.pop("sources", {}) or {}
    if not isinstance(own, dict):
        raise ConfigurationError(f"job {job.name!r}: source 'sources' must map importer names")
    names = importer_names(job)
    unknown = [str(name)[:60] for name in own if name not in names]
    if unknown:
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise ConfigurationError(
            f"job {job.name!r}: sources names {', '.join(map(repr, unknown[:3]))}{more}, not "
            f"an importer of this job ({', '.join(names)})"
        )
    mine = own.get(importer.name) or {}
    if not isinstance(mine, dict):
        raise ConfigurationError(f"job {job.name!r}: sources[{importer.name!r}] is not an object")
    if mine.get("kind", shared.get("kind", "file")) != shared.get("kind", "file"):
        return dict(importer.source or {}), dict(mine)  # another kind: shared ones do not apply
    return dict(importer.source or {}), {**shared, **mine}


def make_source(
    job: SyncJob, importer: BaseImporter, file: Any = None, source: Source | None = None
) -> Source:
    if source is not None or file is not None:
        raise ConfigurationError(
            f"job {job.name!r} has several importers; give each its source in the job's "
            'source options ("sources": {"<importer>": {...}}), not one file for the run'
        )
    base, options = source_options(job, importer)
    if not base and not options:
        raise ConfigurationError(f"job {job.name!r}: importer {importer.name} has no source")

    def sibling(name: str) -> tuple[dict[str, Any], Any]:
        if name not in importer_names(job):
            raise ConfigurationError(
                f"job {job.name!r}: {importer.name} derives from {name!r}, "
                "which is not an importer of this job"
            )
        cls = get_importer_class(name)
        return source_options(job, cls)

    return get_source(options, base=base, importer=importer, job=job.name, sibling=sibling)


# -- running -------------------------------------------------------------------------------


def execute(
    sync_run: SyncRun, progress: Progress, *, file: Any = None, source: Source | None = None
) -> SyncRun:
    """Plan every model, record the plans, and (unless a dry run) apply them together."""
    from . import incremental
    from .models import SyncRun as Run
    from .services import _read_progress, _status, resolve_switches

    job = sync_run.job
    steps: list[tuple[BaseImporter, Switches, Plan]] = []
    names = []
    try:
        for importer in make_importers(job):
            switches = resolve_switches(importer, job, sync_run.options)
            src = make_source(job, importer, file=file, source=source)
            diff_switches = incremental.prepare(src, job, switches, importer)
            names.append(str(src))
            importer.pending_plans = [plan for _, _, plan in steps]
            _status(sync_run, Run.Status.READING, progress, source_name="; ".join(names)[:500])
            plan = backends.build_plan(
                importer, src, diff_switches, progress=_read_progress(sync_run, progress)
            )
            if isinstance(plan, StagedPlan):
                plan.parents = pending_parents(plan, importer)  # type: ignore[attr-defined]
            incremental.finish_plan(plan, importer, src, switches, sync_run)
            steps.append((importer, switches, plan))
        return _record_and_apply(sync_run, steps, progress)
    finally:
        for _, _, plan in steps:  # staging tables of every step go when the run ends
            if isinstance(plan, StagedPlan):
                plan.close()


def pending_parents(plan: Any, importer: BaseImporter) -> list[int]:
    """Positions of the foreign keys that point at a model an earlier step plans: rows it
    creates get their primary keys by a join when the apply starts."""
    labels = {parent.model for parent in importer.pending_plans}
    return [
        i
        for i, f in enumerate(plan.fields)
        if f.is_relation and f.model_field.related_model._meta.label in labels
    ]


def _record_and_apply(
    sync_run: SyncRun, steps: list[tuple[BaseImporter, Switches, Plan]], progress: Progress
) -> SyncRun:
    from .apply import check_limits
    from .models import SyncRun as Run
    from .services import _finish, _status

    _status(sync_run, Run.Status.DIFFING, progress)
    record_plans(sync_run, [plan for _, _, plan in steps])
    if sync_run.dry_run:
        problems = []
        for _, switches, plan in steps:
            try:
                check_limits(plan, switches)
            except Exception as exc:  # noqa: BLE001 - any limit, reported on the preview
                problems.append(str(exc))
        if problems:
            sync_run.error = "a real run would fail: " + "; ".join(problems)
        _finish(sync_run, Run.Status.PREVIEWED, progress)
        return sync_run
    return apply_steps(sync_run, steps, progress)


def apply_steps(
    sync_run: SyncRun, steps: list[tuple[BaseImporter, Switches, Plan]], progress: Progress
) -> SyncRun:
    """Check every limit, then write: creates/updates parents first, deletes children first."""
    from . import incremental
    from .apply import apply_plan, check_limits
    from .models import SyncRun as Run
    from .services import _finish, _status

    for _, switches, plan in steps:
        check_limits(plan, switches)
    _status(sync_run, Run.Status.APPLYING, progress)
    using = steps[0][0].using
    with transaction.atomic(using=using):
        for importer, _, plan in steps:
            if not isinstance(plan, StagedPlan):  # a staged plan joins on the parents
                importer.load_lookups()  # parents written just now get their primary keys
            apply_plan(plan, importer, actions=("create", "update"))
        for importer, _, plan in reversed(steps):
            if plan.deletes:
                apply_plan(plan, importer, actions=("delete",))
    sync_run.rows_applied = sum(plan.total for _, _, plan in steps)
    stats = dict(sync_run.stats or {})
    for _, _, plan in steps:  # the path each model's apply took
        stats[plan.model] = {**stats.get(plan.model, {}), "path": plan.path}
    sync_run.stats = stats
    incremental.save_cursor(sync_run.job, sync_run)
    _finish(sync_run, Run.Status.SUCCEEDED, progress)
    return sync_run


def apply_previewed(sync_run: SyncRun, progress: Progress) -> SyncRun:
    """Apply the plans stored on a previewed multi-model run (checked for staleness)."""
    from .exceptions import RowErrorsFound
    from .models import SyncRun as Run
    from .services import check_stale, resolve_switches

    job = sync_run.job
    steps = []
    for importer in make_importers(job):
        switches = resolve_switches(importer, job, sync_run.options)
        if sync_run.errors and switches.on_row_error == "fail":
            raise RowErrorsFound(
                f"the preview has {sync_run.errors} row errors and the job fails on them; "
                "fix the source and preview again"
            )
        importer.pending_plans = [plan for _, _, plan in steps]
        steps.append((importer, switches, backends.stored_plan(sync_run, importer, switches)))
    sync_run.dry_run = False
    Run.objects.filter(pk=sync_run.pk).update(dry_run=False)
    try:
        with transaction.atomic(using=steps[0][0].using):
            for importer, _, plan in steps:
                check_stale(plan, importer)
            return apply_steps(sync_run, steps, progress)
    finally:
        for _, _, plan in steps:
            if isinstance(plan, StagedPlan):
                plan.close()


def record_plans(sync_run: SyncRun, plans: Sequence[Plan]) -> None:
    """Summed counts on the run, per-model counts in ``stats``, every action stored."""
    from .store import error_stats, save_plan

    totals = dict.fromkeys(("created", "updated", "deleted", "unchanged", "errors"), 0)
    stats: dict[str, Any] = {}
    warnings: list[str] = []
    for plan in plans:
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
        }
        save_plan(sync_run, plan)  # first: it may add a warning (changes left out)
        warnings.extend(f"{plan.model}: {w}" for w in plan.warnings)
    sync_run.created = totals["created"]
    sync_run.updated = totals["updated"]
    sync_run.deleted = totals["deleted"]
    sync_run.unchanged = totals["unchanged"]
    sync_run.errors = totals["errors"]
    sync_run.rows_read = sum(plan.rows_read for plan in plans)
    sync_run.stats = stats
    sync_run.warnings = warnings
    sync_run.plans = list(plans)  # type: ignore[attr-defined]  # for callers in this process
    sync_run.save()

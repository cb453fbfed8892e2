"""Which path plans and applies a step: chosen once, here, by the target database's vendor.

The way Django picks its database backend from ``ENGINE``, the orchestrator asks
:func:`choose` for an importer: a staged backend registered for the target connection's
vendor (PostgreSQL: COPY into staging, classify and apply in SQL; SQLite: the same with
``executemany``) when it gives the same result as the generic path, else the generic path
with the reason. The importer (the mapping) never knows which. Adding a database is one
module with ``unsupported``, ``build_plan`` and ``plan_class`` and one entry in
:data:`BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING

from django.db import connections, router

from djsync.backends.stored import restage, stored_fields
from djsync.engine.diff import Plan
from djsync.sources.base import Source

if TYPE_CHECKING:
    from djsync.mapping.importers import BaseImporter, Switches
    from djsync.models import SyncRun

#: Staged backends by ``connection.vendor``: the module that plans and applies in SQL.
BACKENDS: dict[str, str] = {
    "postgresql": "djsync.backends.postgresql",
    "sqlite": "djsync.backends.sqlite",
}


@dataclass(frozen=True)
class Path:
    """The path a step takes: ``staged`` on a vendor, or ``generic`` and why."""

    staged: bool
    detail: str
    backend: ModuleType | None = None

    def __str__(self) -> str:
        return f"{'staged' if self.staged else 'generic'}: {self.detail}"


class StagedSource(Source):
    """A source whose rows are staged already, by others (the partitions of a split run,
    djsync.backends.partitioned): its plan is built from that staging, not by reading."""

    #: What the run's path adds (``4 partitions``).
    detail = ""

    def build_plan(
        self,
        importer: BaseImporter,
        switches: Switches,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> Plan:
        raise NotImplementedError


def choose(importer: BaseImporter, source: Source | None = None) -> Path:
    """The path for ``importer`` (reading ``source``, if one is read)."""
    if not importer.writes_model:
        return Path(False, f"written by {type(importer.target).__name__}")
    vendor = connections[importer.using].vendor
    name = BACKENDS.get(vendor)
    if name is None:
        return Path(False, f"no staged backend for {vendor}")
    backend = import_module(name)
    reason = backend.unsupported(importer)
    if reason is None and source is not None and source.database == importer.using:
        # Staging holds the connection that the source's server-side cursor still reads
        # from: both would wait on each other for ever.
        reason = "the source reads the target's own database"
    if reason is None and source is not None and source.few_rows:
        reason = "a few rows: the generic path answers sooner"
    if reason is not None:
        return Path(False, reason)
    return Path(True, vendor, backend)


def build_plan(
    importer: BaseImporter,
    source: Source,
    switches: Switches,
    *,
    progress: Callable[[int], None] | None = None,
) -> Plan:
    """Read ``source`` and plan ``importer``'s step on its path; the plan records the path
    (``plan.path``) and the fields it compared (``plan.compared``)."""
    whole = importer.target.plan_whole(importer)
    if whole is not None:  # rewritten whole, in flat memory: the source is not read here
        whole.compared = [f.name for f in importer.active_fields]
        return whole
    path = choose(importer, source)
    if isinstance(source, StagedSource):  # staged already (by a split run's partitions)
        plan: Plan = source.build_plan(importer, switches, progress=progress)
        plan.path = f"{path}, {source.detail}"
        plan.compared = [f.name for f in importer.active_fields]
        return plan
    if path.backend is not None:
        plan = path.backend.build_plan(importer, source, switches, progress=progress)
    else:
        plan = importer.build_plan(source, switches, progress=progress)
    plan.path = str(path)
    plan.compared = [f.name for f in importer.active_fields]
    return plan


def stored_plan(run: SyncRun, importer: BaseImporter, switches: Switches) -> Plan:
    """The plan a preview stored on ``run`` for ``importer``'s model, ready to check and
    apply: on the staged path, its changes restaged in SQL; else read back into Python."""
    from djsync.store import load_plan

    whole = importer.target.plan_whole(importer, stored=(run.stats or {}).get(importer.label))
    if whole is not None:
        return whole
    fields = stored_fields(run, importer.label)
    path = choose(importer)
    if fields is not None and not set(fields) <= set(importer.bound_fields):
        fields = None  # the importer changed since the preview: read it back field by field
    if path.backend is not None and importer.using != router.db_for_write(type(run)):
        # Restaging reads the stored changes with INSERT … SELECT: one database only.
        path = Path(False, "the preview is stored in another database than the target's")
    if fields is not None and path.backend is not None:
        importer.active_fields = [importer.bound_fields[n] for n in fields]
        plan = path.backend.plan_class(importer, switches)
        try:
            restage(plan, run)
        except BaseException:
            plan.close()
            raise
    else:
        if path.backend is not None:
            path = Path(False, "the preview was stored without its field list")
        importer.load_lookups()
        plan = load_plan(run, importer)
    plan.path = str(path)
    return plan

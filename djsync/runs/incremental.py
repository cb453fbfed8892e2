"""Incremental sync: a cursor per job, handed to the source, saved only after a good apply.

A source with ``incremental={"column": "updated_at"}`` reads only what changed since the
job's saved cursor (``job.state["cursor"]``). Rows missing from such a read are not gone,
so deletes of missing rows are off; rows the source marks as deleted (``"deleted":
"is_deleted"``) become delete actions when the job's delete switch is on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils.translation import gettext as _

from djsync.engine.diff import Delete, Plan, RowError

if TYPE_CHECKING:
    from djsync.mapping.importers import BaseImporter, Switches
    from djsync.models import SyncJob, SyncRun
    from djsync.sources.base import Source


def prepare(
    source: Source, job: SyncJob, switches: Switches, importer: BaseImporter | None = None
) -> Switches:
    """Give the source the job's cursor; return the switches the diff uses (no deletes)."""
    if not source.incremental:
        return switches
    if importer is not None:
        importer.fast_path = False  # deletes of marked records are added after the diff
    source.cursor = (job.state or {}).get("cursor")
    return switches.with_overrides(delete=False)


def finish_plan(
    plan: Plan, importer: BaseImporter, source: Source, switches: Switches, sync_run: SyncRun
) -> None:
    """Add deletes for the records the source marked as deleted; note the next cursor."""
    if not source.incremental:
        return
    sync_run.cursor = _jsonable(source.next_cursor)
    if not source.deleted_records:
        return
    if not switches.delete:
        plan.warnings.append(
            _(
                "%(deleted_records)s records are marked deleted, but the job does not delete: "
                "left in place"
            )
            % {"deleted_records": len(source.deleted_records)}
        )
        return
    target = importer.read_target()
    planned = {a.key for a in plan.actions}
    for number, record in enumerate(source.deleted_records, start=1):
        values: dict[str, Any] = {}
        try:
            for name in importer.keys:
                field = importer.bound_fields[name]
                values[name] = field.convert(record.get(field.source_column or field.column))
        except ValueError as exc:
            plan.errors.append(
                RowError(
                    row=None,
                    message=_("deleted record %(number)s: %(exc)s")
                    % {"number": number, "exc": exc},
                    raw=record,
                )
            )
            continue
        key = importer.key_of(values)
        row = target.get(key)
        if row is not None and key not in planned:
            plan.deletes.append(Delete(key=key, pk=row.pk, old=row.values))
            planned.add(key)


def save_cursor(job: SyncJob, sync_run: SyncRun) -> None:
    """After a successful apply: keep the run's cursor on the job for the next run."""
    if sync_run.cursor is None:
        return
    from djsync.models import SyncJob

    state = {**(job.state or {}), "cursor": sync_run.cursor}
    job.state = state
    SyncJob.objects.filter(pk=job.pk).update(state=state)


def _jsonable(value: Any) -> Any:
    """Datetimes and decimals as the JSON field stores them (ISO text, text)."""
    import json

    return None if value is None else json.loads(json.dumps(value, cls=DjangoJSONEncoder))

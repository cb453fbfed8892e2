"""What the HTTP API reads and writes: jobs, runs, changes and row errors out; a run's
options and an apply's decision in, checked like ``runsync``'s flags and the admin's form."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from djsync.display import progress_text, run_estimate
from djsync.mapping.switches import SWITCHES, job_switches
from djsync.models import MAX_PARTITIONS, SyncChange, SyncJob, SyncRowError, SyncRun
from djsync.run_page import decision, owner_name
from djsync.runs import report
from djsync.runs.lifecycle import NOT_APPLIED
from djsync.sources.files import FORMATS
from djsync.store import CHANGE_COLUMNS


def api_url(request: Any, name: str, *args: Any) -> str:
    """An absolute URL of the API (the namespace it was included under is the request's)."""
    namespace = getattr(getattr(request, "resolver_match", None), "namespace", "") or "djsync_api"
    url = reverse(f"{namespace}:{name}", args=args)
    return request.build_absolute_uri(url) if request is not None else url


#: The schema of a run's counts.
COUNTS_SCHEMA = {
    "type": "object",
    "properties": {
        name: {"type": "integer"} for name in ("created", "updated", "deleted", "unchanged")
    }
    | {"errors": {"type": "integer", "description": gettext_lazy("Rows the run could not use.")}},
}


#: The schema of a working run's estimate (djsync.runs.progress.Estimate, and its line).
ESTIMATE_SCHEMA = {
    "type": "object",
    "nullable": True,
    "properties": {
        "phase": {"type": "string", "enum": ["reading", "applying"]},
        "done": {"type": "integer"},
        "total": {"type": "integer", "nullable": True},
        "unit": {
            "type": "string",
            "description": gettext_lazy("What done and total count: bytes, rows, changes…"),
        },
        "percent": {"type": "number", "nullable": True},
        "rate": {"type": "number", "nullable": True},
        "rate_unit": {"type": "string", "enum": ["rows", "changes"]},
        "remaining": {
            "type": "number",
            "nullable": True,
            "description": gettext_lazy("Seconds left; null when not known yet."),
        },
        "rows": {"type": "integer"},
        "text": {"type": "string"},
    },
}


class JobSerializer(serializers.ModelSerializer):
    """A job: what it reads and writes, its switches, its last run."""

    switches = serializers.SerializerMethodField(
        help_text=gettext_lazy("The job's switches and limits; null: as the importer says.")
    )
    last_run = serializers.SerializerMethodField()
    runs_url = serializers.SerializerMethodField(
        help_text=gettext_lazy("POST here to queue a run.")
    )

    class Meta:
        model = SyncJob
        fields = [
            "name",
            "description",
            "importer",
            "source",
            "target",
            "enabled",
            "schedule",
            "switches",
            "last_run",
            "runs_url",
        ]

    def get_switches(self, job: SyncJob) -> dict[str, Any]:
        return job_switches(job)

    @extend_schema_field({"type": "object", "nullable": True})
    def get_last_run(self, job: SyncJob) -> dict[str, Any] | None:
        last_runs = self.context.get("last_runs")  # a list's: fetched for its page at once
        run = last_runs.get(job.pk) if last_runs is not None else job.last_run
        if run is None:
            return None
        return {
            "id": run.pk,
            "status": run.status,
            "created_at": serializers.DateTimeField().to_representation(run.created_at),
            "counts": run.counts,
            "url": api_url(self.context.get("request"), "run", run.pk),
        }

    def get_runs_url(self, job: SyncJob) -> str:
        return api_url(self.context.get("request"), "job-runs", job.name)


class RunSerializer(serializers.ModelSerializer):
    """A run: where it is, what it counted, what it did, and what may be done with it."""

    job = serializers.CharField(source="job.name", read_only=True)
    user = serializers.SerializerMethodField(
        help_text=gettext_lazy("Who started it (null: nobody).")
    )
    source = serializers.CharField(source="source_name", read_only=True)  # type: ignore[assignment]
    counts = serializers.SerializerMethodField()
    per_model = serializers.JSONField(source="stats", read_only=True)
    progress = serializers.SerializerMethodField()
    estimate = serializers.SerializerMethodField(
        help_text=gettext_lazy(
            "While it reads or applies: done of total, the share done, the rate and the seconds "
            "left (null when not known yet), as the admin's progress shows them; null otherwise."
        )
    )
    paths = serializers.SerializerMethodField(
        help_text=gettext_lazy("The path each model took (staged: postgresql, generic: <why>).")
    )
    active = serializers.SerializerMethodField(
        help_text=gettext_lazy("Queued, reading, diffing or applying.")
    )
    finished = serializers.SerializerMethodField(
        help_text=gettext_lazy(
            "Succeeded, failed, cancelled or discarded: nothing more will happen."
        )
    )
    apply_refused = serializers.SerializerMethodField(
        help_text=gettext_lazy(
            "An apply was refused (another run of the job was active); the preview "
            "stays, to apply again."
        )
    )
    summary = serializers.SerializerMethodField(
        help_text=gettext_lazy("The run in one line, as runsync says it.")
    )
    decision = serializers.SerializerMethodField(
        help_text=gettext_lazy(
            "For a preview: whether you may apply or discard it, and what stops an apply."
        )
    )
    links = serializers.SerializerMethodField()

    class Meta:
        model = SyncRun
        fields = [
            "id",
            "job",
            "status",
            "active",
            "finished",
            "apply_refused",
            "dry_run",
            "trigger",
            "user",
            "source",
            "options",
            "column_mapping",
            "progress",
            "estimate",
            "counts",
            "per_model",
            "paths",
            "error",
            "warnings",
            "summary",
            "created_at",
            "started_at",
            "previewed_at",
            "apply_started_at",
            "finished_at",
            "heartbeat_at",
            "duration",
            "decision",
            "links",
        ]
        read_only_fields = fields

    def get_user(self, run: SyncRun) -> str | None:
        return owner_name(run) if run.user_id else None

    @extend_schema_field(
        {
            "type": "object",
            "properties": {
                "rows_read": {"type": "integer"},
                "rows_applied": {"type": "integer"},
                "changes": {"type": "integer"},
                "attempts": {"type": "integer"},
            },
        }
    )
    def get_progress(self, run: SyncRun) -> dict[str, int]:
        return {
            "rows_read": run.rows_read,
            "rows_applied": run.rows_applied,
            "changes": run.created + run.updated + run.deleted,
            "attempts": run.attempts,
        }

    @extend_schema_field(ESTIMATE_SCHEMA)
    def get_estimate(self, run: SyncRun) -> dict[str, Any] | None:
        found = run_estimate(run)
        if found is None:
            return None
        return {**found.as_dict(), "text": progress_text(found)}

    @extend_schema_field(COUNTS_SCHEMA)
    def get_counts(self, run: SyncRun) -> dict[str, int]:
        return run.counts

    def get_paths(self, run: SyncRun) -> dict[str, str]:
        return report.paths(run)

    def get_active(self, run: SyncRun) -> bool:
        return run.status in SyncRun.ACTIVE

    def get_finished(self, run: SyncRun) -> bool:
        return run.is_done

    def get_apply_refused(self, run: SyncRun) -> bool:
        return run.status == SyncRun.Status.PREVIEWED and run.error.startswith(NOT_APPLIED)

    def get_summary(self, run: SyncRun) -> str:
        return report.summary_line(run)

    @extend_schema_field({"type": "object", "nullable": True})
    def get_decision(self, run: SyncRun) -> dict[str, Any] | None:
        request = self.context.get("request")
        if run.status != SyncRun.Status.PREVIEWED or request is None:
            return None
        return decision(request.user, run)

    def get_links(self, run: SyncRun) -> dict[str, str]:
        request = self.context.get("request")
        names = {"self": "run", "changes": "run-changes", "errors": "run-errors"}
        if run.status == SyncRun.Status.PREVIEWED:
            names |= {"apply": "run-apply", "discard": "run-discard"}
        if run.status in SyncRun.ACTIVE:
            names["cancel"] = "run-cancel"
        return {key: api_url(request, name, run.pk) for key, name in names.items()}


class ChangeSerializer(serializers.ModelSerializer):
    """One action of a run's plan: before and after (an update: only what changes)."""

    refused = serializers.CharField(
        source="error",
        read_only=True,
        help_text=gettext_lazy("The target's answer when it refused it."),
    )

    class Meta:
        model = SyncChange
        fields = ["id", *(name for name in CHANGE_COLUMNS if name != "run"), "refused"]
        read_only_fields = fields


class RowErrorSerializer(serializers.ModelSerializer):
    """A source row the run could not use: where, what is wrong, the raw row."""

    class Meta:
        model = SyncRowError
        fields = ["id", "model", "row", "column", "key", "message", "value", "raw"]
        read_only_fields = fields


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know (a misspelt option must not be dropped silently)."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = set(getattr(self.initial_data, "keys", lambda: [])())
        unknown = sorted(given - set(self.fields))
        if unknown:
            known = {"fields": ", ".join(self.fields)}
            raise serializers.ValidationError(
                {name: [_("Unknown field; known: %(fields)s") % known] for name in unknown}
            )
        return attrs


#: Each switch's help text, as runsync shows it.
HELP = {s.name: s.help for s in SWITCHES}


def _switch_field(kind: str, help_text: Any) -> serializers.Field:
    if kind == "action":
        return serializers.BooleanField(required=False, allow_null=True, help_text=help_text)
    if kind == "limit":
        return serializers.IntegerField(
            required=False, allow_null=True, min_value=0, max_value=2**31 - 1, help_text=help_text
        )
    return serializers.FloatField(
        required=False, allow_null=True, min_value=0, max_value=1, help_text=help_text
    )


class RunRequestSerializer(StrictSerializer):
    """What starts a run: a dry run (a preview) or not, optionally from an uploaded file,
    with run options that override the job's switches (null or absent: as the job says) —
    the options ``runsync`` takes as flags."""

    dry_run = serializers.BooleanField(
        default=False,
        help_text=gettext_lazy("Compute and store the plan (a preview); write nothing."),
    )
    file = serializers.FileField(
        required=False,
        help_text=gettext_lazy("Read this file instead of the job's source (multipart)."),
    )
    format = serializers.ChoiceField(
        choices=list(FORMATS),
        required=False,
        allow_blank=True,
        help_text=gettext_lazy("The file's format when its extension does not say."),
    )
    on_row_error = serializers.ChoiceField(
        choices=["fail", "skip"], required=False, allow_null=True, help_text=HELP["on_row_error"]
    )
    force = serializers.BooleanField(required=False, allow_null=True, help_text=HELP["force"])
    partitions = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_PARTITIONS,
        help_text=gettext_lazy(
            "Split the run across this many Celery tasks (PostgreSQL; null or absent: as "
            "the job says). See docs/scale.md."
        ),
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        for switch in SWITCHES:
            if switch.kind != "flag":
                fields[switch.name] = _switch_field(switch.kind, switch.help)
        return fields

    def options(self) -> dict[str, Any]:
        """The run options given (None: as the job says), by switch name."""
        data = self.validated_data
        return {s.name: data.get(s.name) for s in SWITCHES}


class ApplyRequestSerializer(StrictSerializer):
    """How to apply a preview: as it was made, or past what stops it, each with its
    permission (the admin's two ways)."""

    skip_errors = serializers.BooleanField(
        default=False,
        help_text=gettext_lazy(
            "Apply the good rows of a preview whose job fails on row errors "
            "(needs djsync.apply_skipping_errors)."
        ),
    )
    force = serializers.BooleanField(
        default=False,
        help_text=gettext_lazy(
            "Apply past the delete guard (needs djsync.force_delete_guard and confirm)."
        ),
    )
    confirm = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        help_text=gettext_lazy(
            "With force: how many rows the apply deletes (the run's decision says)."
        ),
    )

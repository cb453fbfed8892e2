"""Jobs (what to sync) and their history: runs, the changes each run planned, row errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from djsync.conf import settings
from djsync.exceptions import ConfigurationError
from djsync.mapping.registry import importer_names, importers_of, job_database, split_names
from djsync.runs.lifecycle import SyncRunQuerySet

if TYPE_CHECKING:
    from django_stubs_ext import StrPromise


#: The most partitions a run may be split into (djsync.runs.partitions).
MAX_PARTITIONS = 64


class SyncJobQuerySet(models.QuerySet):
    def enabled(self) -> SyncJobQuerySet:
        return self.filter(enabled=True)

    def get_by_natural_key(self, name: str) -> SyncJob:
        return self.get(name=name)


class SyncJob(models.Model):
    """A named sync: a registered importer, its source, and the switches a run uses."""

    class OnRowError(models.TextChoices):
        FAIL = "fail", _("fail the run, write nothing")
        SKIP = "skip", _("skip bad rows, apply the rest")

    name = models.SlugField(_("name"), max_length=100, unique=True)
    description = models.TextField(_("description"), blank=True)
    importer = models.CharField(
        _("importer"), max_length=200, help_text=_("Name of a registered importer.")
    )
    source = models.JSONField(
        _("source options"),
        default=dict,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text=_('e.g. {"path": "data/products.csv", "encoding": "latin-1"}'),
    )
    target = models.JSONField(
        _("target options"),
        default=dict,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text=_(
            "Empty: the importer's model. An export writes the model's rows to a file: "
            '{"kind": "file", "path": "exports/products-{date}.csv"}'
        ),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    # Switches and limits; empty means "as the importer says".
    # Named allow_* so that they do not shadow Model.delete() and friends.
    allow_create = models.BooleanField(_("create"), null=True, blank=True)
    allow_update = models.BooleanField(_("update"), null=True, blank=True)
    allow_delete = models.BooleanField(_("delete"), null=True, blank=True)
    max_create = models.PositiveIntegerField(_("max creates"), null=True, blank=True)
    max_update = models.PositiveIntegerField(_("max updates"), null=True, blank=True)
    max_delete = models.PositiveIntegerField(_("max deletes"), null=True, blank=True)
    max_total = models.PositiveIntegerField(_("max changes"), null=True, blank=True)
    delete_guard = models.FloatField(
        _("delete guard"),
        null=True,
        blank=True,
        help_text=_("Largest share (0–1) of the rows in scope a run may delete without force."),
    )
    on_row_error = models.CharField(
        _("on row error"), max_length=10, choices=OnRowError.choices, blank=True
    )
    # Scheduling and notifications (run by Celery beat; see docs/celery.md).
    schedule = models.CharField(
        _("schedule"),
        max_length=100,
        blank=True,
        help_text=_('A crontab ("*/15 * * * *") or an interval ("every 10 minutes").'),
    )
    notify_on_failure = models.JSONField(
        _("notify on failure"), default=list, blank=True, help_text=_("E-mail addresses.")
    )
    warn_on_change = models.BooleanField(
        _("warn on change"),
        default=False,
        help_text=_("Mail the diff to the recipients whenever a run changes anything."),
    )
    #: Column mappings confirmed in the admin's upload, per importer and header set
    #: (djsync.mapping.columns): a file with the same headers is read through them.
    column_mapping = models.JSONField(
        _("column mapping"),
        default=dict,
        blank=True,
        help_text=_(
            "Which header of a file feeds which column, saved by the upload's mapping step "
            "for each set of headers. Empty it to forget them."
        ),
    )
    #: A run split across Celery workers (djsync.runs.partitions): how many ranges of its
    #: source are read at once, each by a worker; 1 reads it in one process.
    partitions = models.PositiveSmallIntegerField(
        _("partitions"),
        default=1,
        help_text=_(
            "Split the job's source (a CSV file, a partition column, an API's pages) into "
            "this many ranges, each read by a Celery worker, and apply the whole run once "
            "(PostgreSQL; 1 to 64). 1: one process."
        ),
    )
    #: Real-time sync (djsync.realtime, docs/realtime.md): changes on the source model are
    #: captured as they happen and applied by a consumer within seconds.
    realtime = models.BooleanField(
        _("real time"),
        default=False,
        help_text=_(
            "Capture every change of the source model as it happens and apply it to the "
            "target at once (the source must be a queryset source)."
        ),
    )
    realtime_paused = models.BooleanField(
        _("real time paused"),
        default=False,
        help_text=_("Changes are still captured, but not applied until consuming resumes."),
    )
    #: Until when a ``runsync --follow`` listens for the job's NOTIFY (a lease it renews):
    #: its trigger sends one only then, since a NOTIFY serializes the commits of every
    #: writer of the table. A follower killed outright stops it once the lease ends.
    realtime_followed_until = models.DateTimeField(
        _("followed until"), null=True, blank=True, editable=False
    )
    #: When the job's parked changes were last mailed (djsync.realtime.parking): at most one
    #: mail per REALTIME_PARKED_MAIL_INTERVAL.
    realtime_mailed_at = models.DateTimeField(
        _("parked changes mailed at"), null=True, blank=True, editable=False
    )
    #: Watch mode (djsync.watch, docs/realtime.md): poll an incremental source with its
    #: saved cursor, or a drop folder for new files, every this many seconds.
    watch = models.PositiveIntegerField(
        _("watch every (seconds)"),
        null=True,
        blank=True,
        help_text=_(
            "Poll the source every this many seconds: an incremental source reads what "
            "changed since its cursor, a drop folder runs each new file. Empty: off."
        ),
    )
    #: Free state kept between runs, e.g. an incremental sync's cursor.
    state = models.JSONField(_("state"), default=dict, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)

    objects = SyncJobQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = _("sync job")
        verbose_name_plural = _("sync jobs")
        permissions = [
            # Editing what a job reads and writes is apart from editing its switches and
            # running it (docs/security.md).
            ("change_syncjob_source", _("Can change a job's source and target")),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(delete_guard__isnull=True)
                | Q(delete_guard__gte=0, delete_guard__lte=1),
                name="djsync_job_delete_guard_share",
            ),
            models.CheckConstraint(
                condition=Q(partitions__gte=1, partitions__lte=MAX_PARTITIONS),
                name="djsync_job_partitions_range",
            ),
            models.CheckConstraint(
                condition=Q(watch__isnull=True) | Q(watch__gte=1),
                name="djsync_job_watch_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def natural_key(self) -> tuple[str]:
        return (self.name,)

    def clean(self) -> None:
        errors: dict[str, Any] = {}
        if problem := self._importer_problem():
            errors["importer"] = problem
        if self.delete_guard is not None and not 0 <= self.delete_guard <= 1:
            errors["delete_guard"] = _("A share between 0 and 1.")
        if self.partitions is not None and not 1 <= self.partitions <= MAX_PARTITIONS:
            errors["partitions"] = _("A number from 1 to %(max)s.") % {"max": MAX_PARTITIONS}
        if not isinstance(self.source, dict):
            errors["source"] = _("Source options must be a JSON object.")
        if not errors.get("importer"):
            try:
                job_database(self.target, split_names(self.importer), job=self.name)
            except ConfigurationError as exc:
                errors["target"] = str(exc)
        from djsync.runs.cron import validate_schedule

        if problem := validate_schedule(self.schedule):
            errors["schedule"] = problem
        if self.watch is not None and self.watch < settings.WATCH_MIN_INTERVAL:
            errors["watch"] = _('At least %(least)s seconds (DJSYNC["WATCH_MIN_INTERVAL"]).') % {
                "least": settings.WATCH_MIN_INTERVAL
            }
        if errors:
            raise ValidationError(errors)

    def _importer_problem(self) -> str | StrPromise | None:
        """Why ``importer`` cannot run: an unknown name, or several names (a multi-model
        job, comma-separated) that cannot run together (one model twice, a cycle)."""
        names = split_names(self.importer)
        if not self.importer:
            return None
        unknown = [name for name in names if name not in importer_names()]
        if unknown or not names:
            return _("No importer is registered under the name %(names)s.") % {
                "names": ", ".join(repr(n) for n in unknown) or repr(self.importer)
            }
        if len(set(names)) != len(names):
            return _("An importer is named twice.")
        if len(names) > 1:
            try:
                importers_of(self.importer, job=self.name)
            except ConfigurationError as exc:
                return str(exc)
        return None

    @property
    def last_run(self) -> SyncRun | None:
        return self.runs.order_by("-created_at").first()


class SyncRun(models.Model):
    """One execution of a job, recorded whether it succeeds or fails."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        READING = "reading", _("reading")
        DIFFING = "diffing", _("diffing")
        PREVIEWED = "previewed", _("previewed")
        APPLYING = "applying", _("applying")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed")
        CANCELLED = "cancelled", _("cancelled")
        DISCARDED = "discarded", _("discarded")

    ACTIVE = (Status.QUEUED, Status.READING, Status.DIFFING, Status.APPLYING)
    DONE = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.DISCARDED)

    class Trigger(models.TextChoices):
        COMMAND = "command", _("command")
        API = "api", _("Python API")
        ADMIN = "admin", _("admin")
        SCHEDULE = "schedule", _("schedule")
        REALTIME = "realtime", _("real time")
        WATCH = "watch", _("watch")
        WEBHOOK = "webhook", _("webhook")

    job = models.ForeignKey(
        SyncJob, on_delete=models.CASCADE, related_name="runs", verbose_name=_("job")
    )
    trigger = models.CharField(_("trigger"), max_length=20, choices=Trigger.choices)
    dry_run = models.BooleanField(_("dry run"), default=False)
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    user = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("user"),
    )
    source_name = models.CharField(_("source"), max_length=500, blank=True)
    upload = models.CharField(
        _("uploaded file"), max_length=500, blank=True, help_text=_("Private storage name.")
    )
    #: Options this run was started with (overrides of the job's switches).
    options = models.JSONField(_("options"), default=dict, blank=True, encoder=DjangoJSONEncoder)
    #: A column mapping for this run's upload only, shaped like the job's (confirmed in the
    #: upload's mapping step by someone who may not save one on the job): read after the
    #: job's saved mappings, so it wins for its header set.
    column_mapping = models.JSONField(
        _("column mapping (this upload only)"), default=dict, blank=True
    )
    created = models.PositiveIntegerField(_("created"), default=0)
    updated = models.PositiveIntegerField(_("updated"), default=0)
    deleted = models.PositiveIntegerField(_("deleted"), default=0)
    unchanged = models.PositiveIntegerField(_("unchanged"), default=0)
    errors = models.PositiveIntegerField(_("row errors"), default=0)
    #: Per model: {"demo.Product": {"created": 1, ...}}.
    stats = models.JSONField(_("counts per model"), default=dict, blank=True)
    rows_read = models.PositiveIntegerField(_("rows read"), default=0)
    rows_applied = models.PositiveIntegerField(_("rows applied"), default=0)
    #: How far the current phase has got, for the estimate every door shows
    #: (djsync.runs.progress.snapshot): {"phase", "since", "at", "done", "total", "unit", "rows"}.
    progress = models.JSONField(_("progress"), default=dict, blank=True)
    error = models.TextField(_("error"), blank=True)
    warnings = models.JSONField(_("warnings"), default=list, blank=True)
    task_id = models.CharField(_("task id"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("queued at"), default=timezone.now, db_index=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    #: A preview applied later: when the preview was ready, and when its apply began (the
    #: time between is a person deciding, not the run working).
    previewed_at = models.DateTimeField(_("previewed at"), null=True, blank=True)
    apply_started_at = models.DateTimeField(_("apply started at"), null=True, blank=True)
    heartbeat_at = models.DateTimeField(_("heartbeat"), null=True, blank=True)
    #: Set by ``djsync.runs.monitor.cancel``; a running run checks it between phases and batches.
    cancel_requested = models.BooleanField(_("cancel requested"), default=False)
    #: Partitions asked for this run (None: as its job says), then how many it was read in.
    partitions = models.PositiveSmallIntegerField(_("partitions"), null=True, blank=True)
    #: How many times a worker started this run (more than 1 after transient source errors).
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    #: Incremental sync: the cursor this run read up to, saved on the job once it is applied.
    cursor = models.JSONField(_("cursor"), null=True, blank=True, encoder=DjangoJSONEncoder)

    #: Named filters and the only way a run's status changes (djsync.runs.lifecycle).
    objects = SyncRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("sync run")
        verbose_name_plural = _("sync runs")
        permissions = [
            # A preview belongs to the user who started it; this lets others apply or
            # discard it.
            ("apply_any_preview", _("Can apply or discard another user's preview")),
            # The admin's two ways past what stops an apply, each its own decision.
            ("apply_skipping_errors", _("Can apply the good rows of a preview with row errors")),
            ("force_delete_guard", _("Can apply a preview past the delete guard")),
        ]
        indexes = [models.Index(fields=["job", "status"], name="djsync_run_job_status")]

    def __str__(self) -> str:
        return f"{self.job} #{self.pk} ({self.get_status_display()})"

    @property
    def counts(self) -> dict[str, int]:
        return {
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "errors": self.errors,
        }

    @property
    def duration(self) -> float | None:
        """Seconds the run worked: its preview and its apply, not the pause between."""
        if self.apply_started_at and self.preview_duration is not None:
            apply = self.apply_duration
            return None if apply is None else self.preview_duration + apply
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    @property
    def preview_duration(self) -> float | None:
        """Seconds from the start to the preview being ready (a preview applied later)."""
        if self.started_at and self.previewed_at:
            return (self.previewed_at - self.started_at).total_seconds()
        return None

    @property
    def apply_duration(self) -> float | None:
        """Seconds the apply of a stored preview took."""
        if self.apply_started_at and self.finished_at:
            return (self.finished_at - self.apply_started_at).total_seconds()
        return None

    @property
    def is_done(self) -> bool:
        return self.status in self.DONE


class SyncChange(models.Model):
    """One action of a run's plan, kept for preview and audit."""

    class Action(models.TextChoices):
        CREATE = "create", _("create")
        UPDATE = "update", _("update")
        DELETE = "delete", _("delete")

    #: No database constraint and no index of its own: a run stores up to millions of
    #: changes in one statement, and the deferred foreign key check at commit cost as much
    #: as the insert. Django still deletes a run's changes with it (``on_delete`` runs in
    #: Python), and the (run, action) index serves every lookup by run.
    run = models.ForeignKey(
        SyncRun,
        on_delete=models.CASCADE,
        related_name="changes",
        db_constraint=False,
        db_index=False,
        verbose_name=_("run"),
    )
    model = models.CharField(_("model"), max_length=200)
    action = models.CharField(_("action"), max_length=10, choices=Action.choices)
    key = models.JSONField(_("key"), encoder=DjangoJSONEncoder)
    object_pk = models.CharField(_("object id"), max_length=255, blank=True)
    row = models.PositiveIntegerField(_("row"), null=True, blank=True)
    before = models.JSONField(_("before"), null=True, blank=True, encoder=DjangoJSONEncoder)
    after = models.JSONField(_("after"), null=True, blank=True, encoder=DjangoJSONEncoder)
    changed_fields = models.JSONField(_("changed fields"), default=list, blank=True)
    #: Why the target refused this change when it was applied (a target that answers item
    #: by item, such as an HTTP API); empty when it was written, or not applied.
    error = models.TextField(_("refused"), blank=True, db_default="")

    class Meta:
        ordering = ["pk"]
        verbose_name = _("change")
        verbose_name_plural = _("changes")
        indexes = [models.Index(fields=["run", "action"], name="djsync_change_run_action")]

    def __str__(self) -> str:
        return f"{self.action} {self.model} {self.key}"


class SyncRowError(models.Model):
    """A source row a run could not use: where it is, what is wrong, and the raw row."""

    run = models.ForeignKey(
        SyncRun, on_delete=models.CASCADE, related_name="row_errors", verbose_name=_("run")
    )
    model = models.CharField(_("model"), max_length=200)
    row = models.PositiveIntegerField(_("row"), null=True, blank=True)
    key = models.JSONField(_("key"), null=True, blank=True, encoder=DjangoJSONEncoder)
    column = models.CharField(_("column"), max_length=255, blank=True)
    message = models.TextField(_("message"))
    value = models.TextField(_("value"), blank=True)
    raw = models.JSONField(_("raw row"), null=True, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        ordering = ["row", "pk"]
        verbose_name = _("row error")
        verbose_name_plural = _("row errors")

    def __str__(self) -> str:
        where = _("row %(row)s") % {"row": "?" if self.row is None else self.row}
        if self.column:
            where += _(", column %(column)r") % {"column": self.column}
        return _("%(where)s: %(message)s") % {"where": where, "message": self.message}


class SyncLock(models.Model):
    """A lease that keeps a second run of a job from starting (the database lock backend).

    Used when Redis is not the broker; a lease expires at ``expires_at`` unless its holder
    renews it, so a dead worker blocks its job for at most ``LOCK_TTL`` seconds.
    """

    name = models.CharField(_("name"), max_length=200, primary_key=True)
    owner = models.CharField(_("owner"), max_length=100)
    expires_at = models.DateTimeField(_("expires at"))

    class Meta:
        verbose_name = _("lock")
        verbose_name_plural = _("locks")

    def __str__(self) -> str:
        return f"{self.name} (until {self.expires_at:%H:%M:%S})"


class PendingChange(models.Model):
    """A change captured on a real-time job's source model, waiting for its consumer.

    Written in the transaction of the change itself (a database trigger on PostgreSQL, a
    signal elsewhere: djsync.realtime.capture), so it exists exactly when the change was
    committed; deleted once the consumer applied it (djsync.realtime.queue). The sequence
    (``id``) orders the changes of one key.
    """

    class Operation(models.TextChoices):
        CREATE = "create", _("create")
        UPDATE = "update", _("update")
        DELETE = "delete", _("delete")

    id = models.BigAutoField(primary_key=True)
    job = models.ForeignKey(
        SyncJob, on_delete=models.CASCADE, related_name="pending_changes", verbose_name=_("job")
    )
    model = models.CharField(_("model"), max_length=200)
    #: The source row's primary key, as text.
    key = models.CharField(_("key"), max_length=255)
    operation = models.CharField(_("operation"), max_length=10, choices=Operation.choices)
    #: The row before an update or a delete, by column: where its target row was.
    old = models.JSONField(_("before"), null=True, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(_("captured"), db_default=Now())
    attempts = models.PositiveIntegerField(_("attempts"), db_default=0)
    #: Not consumed before this time: a failed attempt's backoff, or another consumer's claim.
    available_at = models.DateTimeField(_("available at"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True, db_default="")
    #: Set when the change failed too often: it waits for a person (retry or discard).
    parked_at = models.DateTimeField(_("parked"), null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["id"]
        verbose_name = _("pending change")
        verbose_name_plural = _("pending changes")
        indexes = [models.Index(fields=["job", "id"], name="djsync_pending_job_id")]

    def __str__(self) -> str:
        return f"{self.operation} {self.model} {self.key}"


class ConsumedMinute(models.Model):
    """What a real-time job's consumer applied in one minute: its throughput, read from a
    few rows (djsync.realtime.history) rather than from the run history. Kept one day."""

    job = models.ForeignKey(
        SyncJob, on_delete=models.CASCADE, related_name="consumed_minutes", verbose_name=_("job")
    )
    minute = models.DateTimeField(_("minute"))
    #: Captured changes consumed (each change, before coalescing per key).
    changes = models.PositiveIntegerField(_("changes"), default=0)
    #: Target rows created, updated or deleted.
    rows = models.PositiveIntegerField(_("rows written"), default=0)

    class Meta:
        ordering = ["job", "minute"]
        verbose_name = _("consumed minute")
        verbose_name_plural = _("consumed minutes")
        constraints = [
            models.UniqueConstraint(fields=["job", "minute"], name="djsync_consumed_job_minute")
        ]

    def __str__(self) -> str:
        return f"{self.job_id} {self.minute:%Y-%m-%d %H:%M}: {self.changes}"


class WebhookDelivery(models.Model):
    """A delivery a job's webhook took (djsync.realtime.webhooks), remembered while its
    signed timestamp is within the tolerance: the same delivery sent again is a replay,
    refused. A delivery whose run failed is forgotten, so that its sender may send it again.
    """

    job = models.ForeignKey(
        SyncJob, on_delete=models.CASCADE, related_name="+", verbose_name=_("job")
    )
    #: The delivery's ``id`` (in its signed body), else a SHA-256 of its timestamp and body.
    delivery = models.CharField(_("delivery"), max_length=200)
    run = models.ForeignKey(
        SyncRun,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("run"),
    )
    #: False while its run is under way.
    applied = models.BooleanField(_("applied"), default=False)
    received_at = models.DateTimeField(_("received"), default=timezone.now)
    #: When its timestamp leaves the tolerance: the delivery cannot be replayed after this.
    expires_at = models.DateTimeField(_("expires"), db_index=True)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        constraints = [
            models.UniqueConstraint(fields=["job", "delivery"], name="djsync_webhook_once")
        ]

    def __str__(self) -> str:
        return f"{self.job_id} {self.delivery}"

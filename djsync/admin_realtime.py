"""The admin of real-time sync: each job's lag, throughput and parked changes, a pause
switch, and the pending changes with their retry and discard actions (djsync.realtime).
A retry or a discard acts on whole keys: a key is applied, parked and retried as a whole."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.formats import number_format
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from djsync.display import duration
from djsync.models import PendingChange, SyncJob
from djsync.realtime import history, outage, queue

#: The spans, in minutes, the job's page gives the throughput over.
THROUGHPUT_MINUTES = (1, 15)

#: The fieldset the job's change page shows.
FIELDSET: Any = (
    _("Real time"),
    {
        "description": _(
            "Changes on the source model are captured as they happen and applied by a "
            "consumer within seconds (docs/realtime.md)."
        ),
        "fields": ["realtime", "realtime_paused", "realtime_lag", "realtime_throughput"],
    },
)


@admin.display(description=_("lag"))
def realtime_lag(job: SyncJob) -> str:
    """Pending changes and the age of the oldest one; parked ones, linked to their list."""
    if job is None or not job.pk or not job.realtime:
        return "—"
    lag = queue.lag(job)
    url = (
        reverse("admin:djsync_pendingchange_changelist")
        + "?"
        + urlencode({"job__id__exact": job.pk})
    )
    text = _("%(pending)s pending") % {"pending": lag.pending}
    if lag.oldest is not None:
        text += _(", oldest %(age)s ago") % {"age": duration(lag.seconds)}
    if job.realtime_paused:
        text += _(" (paused)")
    shown = format_html('<a href="{}">{}</a>', url, text)
    if lag.parked:
        parked = ngettext("%(count)s parked", "%(count)s parked", lag.parked) % {
            "count": lag.parked
        }
        shown = format_html(
            '{}; <a href="{}" class="djsync-status djsync-status-failed">{}</a>',
            shown,
            url + "&parked=yes",
            parked,
        )
    down = outage.state(job)
    if down:
        note = _(
            "the target is unavailable since %(since)s (%(failures)s failed tries; next at "
            "%(next)s): %(error)s"
        ) % {
            "since": down.get("since", "?")[:19].replace("T", " "),
            "failures": down.get("failures", 0),
            "next": str(down.get("retry_at", "?"))[:19].replace("T", " "),
            "error": str(down.get("error", ""))[:300],
        }
        shown = format_html(
            '{}<br><span class="djsync-status djsync-status-failed">{}</span>', shown, note
        )
    return shown


@admin.display(description=_("throughput"))
def realtime_throughput(job: SyncJob) -> str:
    """Changes applied per minute over the last minute and the last 15 (from the job's
    per-minute counts: a few rows read, djsync.realtime.history)."""
    if job is None or not job.pk or not job.realtime:
        return "—"
    parts = []
    for minutes in THROUGHPUT_MINUTES:
        figures = history.throughput(job, minutes)
        text = (
            _("%(rate)s changes/min over the last minute")
            if minutes == 1
            else _("%(rate)s changes/min over the last %(minutes)s minutes")
        )
        rate = number_format(figures.changes_per_minute, 1)
        parts.append(text % {"rate": rate, "minutes": minutes})
    return "; ".join(parts)


class ParkedFilter(admin.SimpleListFilter):
    title = _("parked")
    parameter_name = "parked"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Parked")), ("no", _("Pending"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(parked_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(parked_at__isnull=True)
        return queryset


@admin.register(PendingChange)
class PendingChangeAdmin(admin.ModelAdmin):
    """Captured changes waiting for their consumer; the parked ones wait for a person."""

    list_display = ["id", "job", "operation", "model", "key", "created_at", "attempts", "state"]
    list_filter = [ParkedFilter, "job", "operation"]
    search_fields = ["key", "error"]
    actions = ["retry", "discard"]
    list_select_related = ["job"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # read-only: the actions say what may be done

    @admin.display(description=_("state"))
    def state(self, change: PendingChange) -> str:
        if change.parked_at is not None:
            return format_html(
                '<span class="djsync-status djsync-status-failed">{}</span> {}',
                _("parked"),
                change.error,
            )
        if change.attempts:
            return _("retrying: %(error)s") % {"error": change.error}
        return str(_("pending"))

    @admin.action(
        description=_("Retry the selected changes now (with every change of their keys)"),
        permissions=["delete"],
    )
    def retry(self, request: HttpRequest, queryset: QuerySet[PendingChange]) -> None:
        keys = _keys(queryset)
        count = queue.retry(queryset)
        self.message_user(
            request,
            ngettext(
                "%(count)s change will be retried (%(keys)s keys).",
                "%(count)s changes will be retried (%(keys)s keys).",
                count,
            )
            % {"count": count, "keys": keys},
            messages.SUCCESS,
        )

    @admin.action(
        description=_("Discard the selected changes (with every change of their keys)"),
        permissions=["delete"],
    )
    def discard(self, request: HttpRequest, queryset: QuerySet[PendingChange]) -> None:
        keys = _keys(queryset)
        count = queue.discard(queryset)
        self.message_user(
            request,
            ngettext(
                "%(count)s change of %(keys)s keys discarded: the next full run of its job "
                "makes up for it.",
                "%(count)s changes of %(keys)s keys discarded: the next full run of their job "
                "makes up for them.",
                count,
            )
            % {"count": count, "keys": keys},
            messages.SUCCESS,
        )


def _keys(queryset: QuerySet[PendingChange]) -> int:
    return queryset.order_by().values_list("job_id", "key").distinct().count()


def pause(modeladmin: Any, request: HttpRequest, queryset: QuerySet[SyncJob], paused: bool) -> None:
    """The pause switch of the selected real-time jobs: changes are still captured."""
    count = queryset.filter(realtime=True).update(realtime_paused=paused)
    text = (
        ngettext("%(count)s real-time job paused.", "%(count)s real-time jobs paused.", count)
        if paused
        else ngettext(
            "%(count)s real-time job resumed.", "%(count)s real-time jobs resumed.", count
        )
    )
    modeladmin.message_user(request, text % {"count": count}, messages.SUCCESS)


@admin.action(description=_("Pause real-time consuming"), permissions=["change"])
def pause_realtime(modeladmin: Any, request: HttpRequest, queryset: QuerySet[SyncJob]) -> None:
    pause(modeladmin, request, queryset, True)


@admin.action(description=_("Resume real-time consuming"), permissions=["change"])
def resume_realtime(modeladmin: Any, request: HttpRequest, queryset: QuerySet[SyncJob]) -> None:
    pause(modeladmin, request, queryset, False)

"""Admin forms: a job's definition (validated against the registry) and a source file upload."""

from __future__ import annotations

import copy
import re
from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import slugify
from django.utils.translation import gettext_lazy as _

from djsync.conf import settings
from djsync.exceptions import DjsyncError
from djsync.mapping.registry import importer_choices, importer_names
from djsync.mapping.switches import JOB_FIELD_NAMES, SWITCHES
from djsync.models import SyncJob
from djsync.sources.files import FORMATS, format_from_name


class EmailListField(forms.CharField):
    """A list of e-mail addresses typed one per line or separated by commas."""

    widget = forms.Textarea(attrs={"rows": 2})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return "\n".join(value)
        return value

    # A CharField for its widget and checks, whose cleaned value is a list.
    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list | tuple):
            return list(value)
        text = super().to_python(value) or ""
        return [part.strip() for part in re.split(r"[,;\s]+", text) if part.strip()]

    def validate(self, value: list[str]) -> None:
        super().validate(value)
        most = settings.MAX_NOTIFY_ADDRESSES
        if len(value) > most:
            raise ValidationError(
                _(
                    "%(count)s addresses; a job notifies at most %(most)s "
                    '(DJSYNC["MAX_NOTIFY_ADDRESSES"]).'
                ),
                params={"count": len(value), "most": most},
            )
        for address in value:
            try:
                validate_email(address)
            except ValidationError:
                raise ValidationError(
                    _("%(address)s is not an e-mail address."), params={"address": address}
                ) from None


class JobJSONField(forms.JSONField):
    """A job's source or target options: JSON nested too deeply for Python's parser is a
    form error, not a RecursionError (a 500)."""

    def to_python(self, value: Any) -> Any:
        try:
            return super().to_python(value)
        except RecursionError:
            raise ValidationError(_("The JSON is nested too deeply.")) from None

    def bound_data(self, data: Any, initial: Any) -> Any:
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return forms.fields.InvalidJSONInput(data)


def validate_schedule(text: str) -> None:
    """A crontab line or an ``every N minutes`` interval, as Celery beat runs them."""
    from djsync.runs.cron import validate_schedule as problem

    message = problem(text.strip())
    if message:
        raise ValidationError(message)


class ImporterWidget(forms.SelectMultiple):
    """A single select for the job's importer, then a multiple one for the others of a
    multi-model job: one importer, the usual case, is one choice. Both post ``importer``."""

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        chosen = [v for v in (value or []) if v]
        first = forms.Select(choices=[("", "---------"), *self.choices])
        more = forms.SelectMultiple(attrs={"size": 5}, choices=self.choices)
        attrs = dict(attrs or {})
        main = first.render(name, chosen[0] if chosen else "", attrs, renderer)
        extra_attrs = {**attrs, "id": f"{attrs.get('id', 'id_' + name)}_more"}
        extra_attrs.pop("required", None)  # more importers are optional
        extra = more.render(name, chosen[1:], extra_attrs, renderer)
        label = _("More importers, for a multi-model job (parents run first):")
        return format_html(
            '{}<div class="djsync-more-importers"><label for="{}">{}</label>{}</div>',
            main,
            extra_attrs["id"],
            label,
            extra,
        )

    def value_from_datadict(self, data: Any, files: Any, name: str) -> list[str]:
        """The posted names, in order, each once (the single select's comes first)."""
        values = super().value_from_datadict(data, files, name) or []
        return list(dict.fromkeys(v for v in values if v))


class ImporterNamesField(forms.MultipleChoiceField):
    """One or several registered importers (a multi-model job), kept as ``"a, b"``."""

    widget = ImporterWidget

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    def to_python(self, value: Any) -> list[str]:
        return super().to_python(self.prepare_value(value))

    def clean(self, value: Any) -> str:
        return ", ".join(super().clean(value))


class SyncJobForm(forms.ModelForm):
    """A job's definition: the importer is a choice from the registry, never a dotted path."""

    importer = ImporterNamesField(
        label=_("Importer"),
        choices=importer_choices,
        help_text=_(
            "The importer; for a multi-model job, more below (run parents first, in "
            "one transaction)."
        ),
    )
    notify_on_failure = EmailListField(
        label=_("Notify on failure"),
        required=False,
        help_text=_("E-mail addresses, one per line."),
    )
    schedule = forms.CharField(
        label=_("Schedule"),
        required=False,
        validators=[validate_schedule],
        help_text=SyncJob._meta.get_field("schedule").help_text,
    )

    class Meta:
        model = SyncJob
        field_classes = {
            "source": JobJSONField,
            "target": JobJSONField,
            "column_mapping": JobJSONField,
        }
        fields = [
            "name",
            "description",
            "importer",
            "source",
            "target",
            "enabled",
            *JOB_FIELD_NAMES,  # the switches (djsync/mapping/switches.py)
            "schedule",
            "watch",
            "notify_on_failure",
            "warn_on_change",
            "partitions",
            "realtime",
            "realtime_paused",
            "column_mapping",
        ]

    def clean(self) -> dict[str, Any]:
        """A real-time job needs a source that can be captured (djsync.realtime.capture);
        a watched one, a source to poll (djsync.watch.modes)."""
        data = cast("dict[str, Any]", super().clean())
        if data.get("watch") is not None and not self.errors:
            from djsync.watch.modes import watch_problem

            job = copy.copy(self.instance)
            for name in ("name", "importer", "source", "target", "watch"):
                if name in data:
                    setattr(job, name, data[name])
            if problem := watch_problem(job):
                self.add_error("watch", problem)
        if data.get("realtime") and not self.errors:
            from django.core.exceptions import ImproperlyConfigured

            from djsync.realtime.capture import check

            job = copy.copy(self.instance)
            for name in ("name", "importer", "source", "target"):
                if name in data:
                    setattr(job, name, data[name])
            try:
                check(job)
            except (DjsyncError, ImproperlyConfigured) as exc:
                self.add_error("realtime", str(exc))
        return data

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for switch in SWITCHES:
            field = self.fields.get(switch.job_field or "")
            if field is not None and not field.help_text:
                field.help_text = _("%(help)s Empty: as the importer says.") % {"help": switch.help}
            if field is not None and isinstance(field.widget, forms.NullBooleanSelect):
                # "Unknown" says nothing: an empty switch means the importer decides.
                field.widget.choices = [
                    ("unknown", _("As the importer says")),
                    ("true", _("Yes")),
                    ("false", _("No")),
                ]
        if "partitions" in self.fields:  # empty: one process, as a job without the setting
            self.fields["partitions"].required = False

    def clean_partitions(self) -> int:
        value = self.cleaned_data.get("partitions")
        return 1 if value is None else int(value)

    def clean_source(self) -> dict[str, Any]:
        options = self.cleaned_data.get("source") or {}
        if not isinstance(options, dict):
            raise ValidationError(_('Source options are a JSON object: {"path": "x.csv"}.'))
        if options:  # a job's source is data: it may only pick what is declared
            from djsync.checks import source_problem

            importer = self.cleaned_data.get("importer", "") or getattr(
                self.instance, "importer", ""
            )
            problem = source_problem(importer, options, name=self.cleaned_data.get("name") or "")
            if problem:
                raise ValidationError(problem)
        return options

    def clean_column_mapping(self) -> dict[str, Any]:
        """Saved by the upload's mapping step; edited or emptied here, checked against
        the job's importers (djsync.admin_columns)."""
        from djsync.admin_columns import saved_problem
        from djsync.mapping.registry import get_importer_class, split_names

        value = self.cleaned_data.get("column_mapping") or {}
        names = self.cleaned_data.get("importer", "") or getattr(self.instance, "importer", "")
        try:
            fields_of = {
                name: set(get_importer_class(name)().bound_fields) for name in split_names(names)
            }
        except Exception:  # noqa: BLE001 - an unusable importer is the importer field's error
            return value if isinstance(value, dict) else {}
        problem = saved_problem(value, fields_of)
        if problem:
            raise ValidationError(problem)
        return value

    def clean_target(self) -> dict[str, Any]:
        """Empty (the importer's model or target), a database among the importer's
        ``Meta.databases`` (``{"database": "reporting"}``, checked with the job), or an
        export's options; where an export may write is checked when it runs
        (docs/security.md)."""
        from djsync.exports.step import TARGET_OPTIONS

        options = self.cleaned_data.get("target") or {}
        if not isinstance(options, dict):
            raise ValidationError(_('Target options are a JSON object: {"kind": "file", …}.'))
        if options.get("kind", "model") == "model":
            from djsync.mapping.registry import MODEL_TARGET_OPTIONS

            unknown = sorted(set(options) - MODEL_TARGET_OPTIONS)
            if unknown:
                raise ValidationError(
                    _("Unknown target options: %(names)s (known: %(known)s).")
                    % {
                        "names": ", ".join(unknown),
                        "known": ", ".join(sorted(MODEL_TARGET_OPTIONS)),
                    }
                )
            return options  # the alias is checked against the importers by SyncJob.clean
        unknown = sorted(set(options) - TARGET_OPTIONS)
        if unknown:
            raise ValidationError(
                _("Unknown target options: %(names)s (known: %(known)s).")
                % {"names": ", ".join(unknown), "known": ", ".join(sorted(TARGET_OPTIONS))}
            )
        return options


class UploadForm(forms.Form):
    """A source file for a preview; its format comes from its extension unless chosen."""

    file = forms.FileField(label=_("file"))
    format = forms.ChoiceField(
        label=_("format"),
        required=False,
        choices=[("", _("from the file's extension"))] + [(f, f) for f in FORMATS],
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        limit = settings.MAX_UPLOAD_SIZE
        if upload.size > limit:
            raise ValidationError(
                _('The file is %(size)s, larger than DJSYNC["MAX_UPLOAD_SIZE"] (%(limit)s).'),
                params={"size": filesizeformat(upload.size), "limit": filesizeformat(limit)},
            )
        return upload

    def clean(self) -> dict[str, Any]:
        # Form.clean returns cleaned_data; the stubs allow None for overrides that don't.
        data = cast("dict[str, Any]", super().clean())
        upload = data.get("file")
        if upload is not None and not data.get("format"):
            data["format"] = format_from_name(upload.name)
            if data["format"] is None:
                self.add_error(
                    "format",
                    _("Cannot tell the format of %(name)s from its extension; choose one.")
                    % {"name": upload.name},
                )
        return data


class ModelUploadForm(UploadForm):
    """An upload from a model's changelist: also chooses which job (or importer) reads it."""

    job = forms.ChoiceField(label=_("job"))

    def __init__(self, *args: Any, importers: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.importers = importers
        jobs = SyncJob.objects.filter(importer__in=importers).order_by("name")
        choices = [(f"job:{job.pk}", str(job)) for job in jobs]
        with_job = {job.importer for job in jobs}
        choices += [
            (f"importer:{name}", _("%(name)s (new job)") % {"name": name})
            for name in importers
            if name not in with_job
        ]
        cast(forms.ChoiceField, self.fields["job"]).choices = choices
        if len(choices) == 1:
            self.fields["job"].initial = choices[0][0]
            self.fields["job"].widget = forms.HiddenInput()

    def get_job(self) -> SyncJob:
        """The chosen job; an importer without a job yet gets one named after it."""
        kind, _sep, value = self.cleaned_data["job"].partition(":")
        if kind == "job":
            return SyncJob.objects.get(pk=value, importer__in=self.importers)
        if value not in importer_names() or value not in self.importers:
            raise ValidationError(_("Unknown importer."))
        existing = SyncJob.objects.filter(importer=value).first()
        if existing is not None:
            return existing
        base = slugify(value) or "upload"
        name, n = base, 1
        while SyncJob.objects.filter(name=name).exists():
            n += 1
            name = f"{base}-{n}"
        return SyncJob.objects.create(
            name=name, importer=value, description=str(_("Created by an upload in the admin."))
        )

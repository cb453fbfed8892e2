"""The admin upload's mapping step: when a file's headers do not fit the job's importer,
a person picks the header of each column, and the mapping is saved on the job.

:func:`check_upload` reads an upload's headers (the first record only, for the formats
that stream) and says whether the step is needed; the upload is then kept in private
storage and named in a signed token (:func:`stash`) that the step's form posts back.
Only a user who may change the job saves a mapping (it applies to every later run of the
job, ``runsync`` and Celery included); anyone who may preview can confirm a mapping for
this upload only, kept on its run (``SyncRun.column_mapping``), not on the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any, cast

from django import forms
from django.core import signing
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.translation import gettext_lazy as _

from djsync.conf import settings
from djsync.mapping.columns import (
    MAX_HEADER_LENGTH,
    MAX_MAPPED_HEADERS,
    MAX_SAVED_MAPPINGS,
    SIGNATURE_RE,
    Proposal,
    needs_mapping,
    propose,
    remember,
    saved_for,
)
from djsync.models import SyncJob
from djsync.uploads import save_upload

#: The field a mapping step's form posts its token in (a token marks the POST as a step).
TOKEN_FIELD = "djsync_columns"
#: The submit button that maps this upload only (the job's saved mappings unchanged).
ONCE_FIELD = "djsync_columns_once"
_SALT = "djsync.admin_columns"
#: Formats whose header is read without parsing the whole file (a workbook's sheet is read
#: up to its header row): checked in the request whatever the size. YAML is checked up to
#: MAX_YAML_SIZE (a larger file fails its run), JSON up to BACKGROUND_PREVIEW_SIZE (its
#: columns are every record's keys).
HEADER_ALONE = frozenset({"csv", "tsv", "jsonl", "xlsx", "xls", "ods"})
#: Unmatched headers listed on the step's page (the rest are counted).
LISTED_HEADERS = 100


@dataclass
class HeaderCheck:
    """An upload whose headers need the mapping step, and what is proposed."""

    importer_name: str
    headers: list[str]
    proposals: list[Proposal]

    @property
    def unmatched(self) -> list[str]:
        picked = {p.header for p in self.proposals}
        return [h for h in self.headers if h not in picked]

    @property
    def problem(self) -> str:
        """Why the step cannot offer this file (then its columns are renamed in the file)."""
        if len(self.headers) > MAX_MAPPED_HEADERS:
            return str(
                _(
                    "The file has %(count)s columns; the mapping step offers at most %(most)s. "
                    "Rename its columns to the importer's (listed below) and upload it again."
                )
                % {"count": f"{len(self.headers):,}", "most": MAX_MAPPED_HEADERS}
            )
        return ""


def check_upload(job: SyncJob, file: IO[bytes], format: str | None) -> HeaderCheck | None:
    """The mapping step ``file`` needs for ``job``, or None: its headers fit (a run reads
    them by itself), they cannot be read (the run reports why), or the job is not one
    importer reading one file (an export, a multi-model job)."""
    from djsync.exports.jobs import is_export
    from djsync.runs.steps import is_multi, make_importer

    if is_export(job) or is_multi(job):
        return None
    if not _checked_whole(format, getattr(file, "size", None)):
        return None
    try:
        importer = make_importer(job)
        headers = read_headers(job, importer, file, format)
    except Exception:  # noqa: BLE001 - the check only advises: the run reports what is wrong
        return None
    if not headers:
        return None
    fields = list(importer.bound_fields.values())
    proposals = propose(
        fields,
        headers,
        required=[f.name for f in fields if importer.requires(f)],
        saved=saved_for(importer.column_mappings, headers),
    )
    if not needs_mapping(proposals):
        return None
    return HeaderCheck(importer.name, headers, proposals)


def _checked_whole(format: str | None, size: int | None) -> bool:
    """Whether an upload's header is read in the request: always for a format whose header
    is read alone, else when the file is small enough to parse whole there."""
    if format in HEADER_ALONE or size is None:
        return True
    limit = settings.MAX_YAML_SIZE if format == "yaml" else settings.BACKGROUND_PREVIEW_SIZE
    return limit is None or size <= limit


def read_headers(job: SyncJob, importer: Any, file: IO[bytes], format: str | None) -> list[str]:
    """The file's headers as the job's run reads them (its encoding, delimiter, sheet): its
    first record is read, nothing more for a format that streams; a workbook's sheet is
    read up to its header row (``header_only``)."""
    from djsync.runs.steps import make_source
    from djsync.sources.workbooks import WorkbookReading

    source = make_source(job, importer, file=file, source_options={"format": format})
    if isinstance(source, WorkbookReading):
        source.header_only = True
    records = source.read()
    try:
        next(records, None)
    finally:
        records.close()  # type: ignore[attr-defined]
    return list(source.columns or [])


# -- the pending upload ----------------------------------------------------------------------
@dataclass
class Pending:
    """An upload kept while its mapping step waits: who sent it, for which job, in what."""

    upload: str
    job: int
    user: int
    format: str
    name: str


def stash(job: SyncJob, user: Any, file: IO[bytes], format: str, name: str) -> str:
    """Keep ``file`` in private upload storage and return the token naming it (signed: the
    form cannot name another file, job or user; it expires with UPLOAD_MAX_AGE). An upload
    whose step is never confirmed is removed with the other orphans (djsync.uploads)."""
    stored = save_upload(file, f"{name}.{format}")
    data = {"upload": stored, "job": job.pk, "user": user.pk, "format": format, "name": name}
    return signing.dumps(data, salt=_SALT, compress=True)


def pending(token: str, user: Any) -> Pending:
    """The upload a step's token names; a token not ours, expired or another user's is
    refused."""
    try:
        data = signing.loads(token, salt=_SALT, max_age=settings.UPLOAD_MAX_AGE)
        found = Pending(**data)
    except (signing.BadSignature, TypeError):
        raise PermissionDenied(_("This mapping step has expired; upload the file again.")) from None
    if found.user != user.pk:
        raise PermissionDenied
    return found


# -- the form --------------------------------------------------------------------------------
class ColumnMappingForm(forms.Form):
    """One select per column of the importer, offering the file's headers; the required
    ones must be picked and a header feeds one column at most."""

    def __init__(self, *args: Any, check: HeaderCheck, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.check = check
        offered = [h for h in check.headers if len(h) <= MAX_HEADER_LENGTH]
        choices = [("", _("— not in the file —")), *((h, h) for h in offered)]
        for p in check.proposals:
            self.fields[self.name_of(p)] = forms.ChoiceField(
                label=p.column,
                choices=choices,
                required=p.required,
                initial=p.header or "",
            )

    @staticmethod
    def name_of(p: Proposal) -> str:
        return f"column-{p.field}"

    def rows(self) -> list[tuple[Proposal, forms.BoundField]]:
        return [(p, self[self.name_of(p)]) for p in self.check.proposals]

    def clean(self) -> dict[str, Any]:
        data = cast("dict[str, Any]", super().clean())
        taken: dict[str, str] = {}
        for p in self.check.proposals:
            header = data.get(self.name_of(p))
            if not header:
                continue
            if header in taken:
                self.add_error(
                    self.name_of(p),
                    ValidationError(
                        _("The header “%(header)s” already feeds the column %(other)s."),
                        params={"header": header, "other": taken[header]},
                    ),
                )
            taken.setdefault(header, p.column)
        return data

    def columns(self) -> dict[str, str]:
        """Field name → the picked header ("" for "not in the file")."""
        return {p.field: self.cleaned_data.get(self.name_of(p)) or "" for p in self.check.proposals}


def save_mapping(job: SyncJob, check: HeaderCheck, columns: dict[str, str]) -> None:
    """Save ``columns`` on the job for this header set (the job's row locked meanwhile, so
    two steps confirmed at once both land)."""
    from django.db import router

    with transaction.atomic(using=router.db_for_write(SyncJob)):
        locked = SyncJob.objects.select_for_update().get(pk=job.pk)
        saved = dict(locked.column_mapping) if isinstance(locked.column_mapping, dict) else {}
        saved[check.importer_name] = remember(
            saved.get(check.importer_name), check.headers, columns
        )
        SyncJob.objects.filter(pk=job.pk).update(column_mapping=saved)
        job.column_mapping = saved


def for_this_upload(check: HeaderCheck, columns: dict[str, str]) -> dict[str, Any]:
    """``columns`` as a run's own column mapping: the job's shape, for one header set."""
    return {check.importer_name: remember(None, check.headers, columns)}


def may_save(user: Any, job: SyncJob) -> bool:
    """Whether ``user`` may save a mapping on ``job``: who may change the job."""
    opts = SyncJob._meta
    return bool(user.has_perm(f"{opts.app_label}.change_{opts.model_name}"))


def step_context(check: HeaderCheck, form: ColumnMappingForm, token: str) -> dict[str, Any]:
    unmatched = check.unmatched
    return {
        "check": check,
        "form": form,
        "token": token,
        "token_field": TOKEN_FIELD,
        "once_field": ONCE_FIELD,
        "unmatched": unmatched[:LISTED_HEADERS],
        "unmatched_more": max(0, len(unmatched) - LISTED_HEADERS),
        "too_long": sum(1 for h in check.headers if len(h) > MAX_HEADER_LENGTH),
        "max_header_length": MAX_HEADER_LENGTH,
    }


def saved_problem(value: Any, fields_of: dict[str, set[str]]) -> str | None:
    """Why ``value`` is not a job's column mapping, or None (the job form's check).
    ``fields_of``: the job's importer names and each one's field names."""
    if not isinstance(value, dict):
        return str(_('A JSON object: {"<importer>": [{"signature": …, "columns": {…}}]}.'))
    for name, entries in value.items():
        if name not in fields_of:
            return str(_("%(name)r is not an importer of this job.") % {"name": str(name)[:60]})
        if not isinstance(entries, list) or len(entries) > MAX_SAVED_MAPPINGS:
            return str(
                _("%(name)s: a list of at most %(most)s mappings.")
                % {"name": name, "most": MAX_SAVED_MAPPINGS}
            )
        for entry in entries:
            if problem := _entry_problem(entry, fields_of[name]):
                return f"{name}: {problem}"
    return None


def _entry_problem(entry: Any, fields: set[str]) -> str | None:
    if not isinstance(entry, dict) or set(entry) != {"signature", "columns"}:
        return str(_('each mapping is {"signature": …, "columns": {…}}.'))
    if not (isinstance(entry["signature"], str) and SIGNATURE_RE.fullmatch(entry["signature"])):
        return str(_("a signature is 32 hexadecimal digits."))
    columns = entry["columns"]
    if not isinstance(columns, dict):
        return str(_("columns map field names to headers."))
    for key, header in columns.items():
        if key not in fields:
            return str(_("%(key)r is not one of its fields.") % {"key": str(key)[:60]})
        if not isinstance(header, str) or len(header) > MAX_HEADER_LENGTH:
            return str(
                _("a header is text of at most %(most)s characters.") % {"most": MAX_HEADER_LENGTH}
            )
    return None

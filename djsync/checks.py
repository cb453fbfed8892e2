"""System checks: every problem of every importer (djsync.E001), unknown ``DJSYNC`` keys
(djsync.E002), badly declared webhooks (djsync.E003), stored jobs that name no registered
importer or whose source or target no longer passes the trust policy (docs/security.md;
djsync.W010), and SQLite databases
that would fail runs on a busy lock (djsync.W020), so that ``manage.py check`` says at once
what to fix, not one problem per run."""

from __future__ import annotations

import difflib
from typing import Any

from django.core import checks
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import DatabaseError
from django.utils.translation import gettext as _

from djsync.exceptions import DjsyncError

#: Jobs looked at per check (a check must stay fast; the rest fail when they run).
MAX_JOBS_CHECKED = 1000


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Every unknown key of the project's ``DJSYNC`` dict, with the setting it may mean."""
    from django.conf import settings

    from djsync.conf import DEFAULTS

    given = getattr(settings, "DJSYNC", None) or {}
    if not isinstance(given, dict):
        return [checks.Error(_("DJSYNC must be a dict of settings"), id="djsync.E002")]
    messages: list[checks.CheckMessage] = []
    for key in sorted(set(given) - set(DEFAULTS), key=str):
        close = difflib.get_close_matches(str(key), sorted(DEFAULTS), n=1)
        messages.append(
            checks.Error(
                _("DJSYNC has an unknown setting %(key)r") % {"key": str(key)[:80]},
                hint=_("Did you mean %(close)r?") % {"close": close[0]}
                if close
                else _("See docs/reference.md#settings."),
                id="djsync.E002",
            )
        )
    return messages + webhook_problems(given.get("WEBHOOKS"))


def webhook_problems(hooks: Any) -> list[checks.CheckMessage]:
    """Every badly declared webhook of ``DJSYNC["WEBHOOKS"]`` (djsync.E003): a short or
    missing secret, an unknown key; a delivery to it would fail with the same message."""
    from djsync.realtime.webhooks import declaration_problems

    if hooks is None:
        return []
    if not isinstance(hooks, dict):
        return [
            checks.Error(_('DJSYNC["WEBHOOKS"] must be a dict of jobs by name'), id="djsync.E003")
        ]
    return [
        checks.Error(problem, id="djsync.E003")
        for name, entry in hooks.items()
        for problem in declaration_problems(name, entry)
    ]


def check_sqlite_locking(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A SQLite database opened with deferred transactions (Django's default) fails a run
    with ``database is locked`` when a web request or a worker writes at the same moment;
    ``transaction_mode: IMMEDIATE`` makes writers queue for the lock (djsync.W020)."""
    from django.conf import settings

    messages: list[checks.CheckMessage] = []
    for alias, database in settings.DATABASES.items():
        if not str(database.get("ENGINE", "")).endswith("sqlite3"):
            continue
        if str(database.get("NAME", "")) in ("", ":memory:"):
            continue  # one process's own database: nobody else writes to it
        options = database.get("OPTIONS") or {}
        mode = options.get("transaction_mode") if isinstance(options, dict) else None
        if str(mode or "").upper() != "IMMEDIATE":
            messages.append(
                checks.Warning(
                    _(
                        "SQLite database %(alias)r uses deferred transactions: a sync run "
                        "beside web requests or workers can fail with 'database is locked'"
                    )
                    % {"alias": alias},
                    hint=_(
                        'Add "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20} '
                        "to DATABASES[%(alias)r] (docs/admin.md)."
                    )
                    % {"alias": alias},
                    id="djsync.W020",
                )
            )
    return messages


def importer_problems(cls: Any) -> list[str]:
    """What keeps importer class ``cls`` from being built, every problem found: each key
    and field that its model or target lacks, each foreign key lookup its related model
    lacks; else the error building it raises."""
    from djsync.mapping.fields import related_model

    problems: list[str] = []
    try:
        target = cls.target_class() if cls.target_class is not None else None
    except Exception as exc:  # noqa: BLE001 - a check reports, it never breaks `check`
        return [
            _("its target cannot be built: %(name)s: %(exc)s")
            % {"name": type(exc).__name__, "exc": exc}
        ]
    model = getattr(cls, "model", None)
    if target is not None:
        owner, get_field = target.label, target.get_field
    elif model is not None:
        owner, get_field = model._meta.label, model._meta.get_field
    else:
        return [_("it names no model and no target")]
    names = list(cls.declared_fields)
    if cls.fields != "__all__":
        names += [n for n in cls.fields if n not in names]
    names += [k for k in cls.keys if k not in names]
    if not cls.keys:
        problems.append(_("keys is empty: name the fields that identify a row"))
    for name in names:
        try:
            field = get_field(name)
        except (FieldDoesNotExist, LookupError):
            problems.append(_("%(owner)s has no field %(name)r") % {"owner": owner, "name": name})
            continue
        spec = cls.declared_fields.get(name)
        lookup = getattr(spec, "lookup", None)
        if target is None and field.is_relation and lookup:
            try:
                related_model(field)._meta.get_field(lookup)
            except FieldDoesNotExist:
                related = related_model(field)._meta.label
                problems.append(
                    _("field %(name)r: %(related)s has no field %(lookup)r to look up by")
                    % {"name": name, "related": related, "lookup": lookup}
                )
    problems += alias_problems(cls, names)
    if problems:
        return problems
    try:
        cls()
    except (FieldDoesNotExist, ImproperlyConfigured, AttributeError, LookupError) as exc:
        problems.append(str(exc))
    return problems


def alias_problems(cls: Any, names: list[str]) -> list[str]:
    """Aliases that are not text, or that two fields share (the same header, in any case,
    would feed both): djsync.mapping.columns matches a header to one column."""
    problems: list[str] = []
    owner: dict[str, str] = {}
    for name in names:
        spec = cls.declared_fields.get(name)
        column = (getattr(spec, "column", None) or name).strip().lower()
        owner.setdefault(column, name)
    for name in names:
        spec = cls.declared_fields.get(name)
        for alias in getattr(spec, "aliases", ()):
            if not isinstance(alias, str) or not alias.strip():
                problems.append(
                    _("field %(name)r: an alias is a header's name, not %(alias)r")
                    % {"name": name, "alias": alias}
                )
                continue
            other = owner.setdefault(alias.strip().lower(), name)
            if other != name:
                problems.append(
                    _(
                        "field %(name)r: alias %(alias)r is already the column or an alias "
                        "of field %(other)r"
                    )
                    % {"name": name, "alias": alias, "other": other}
                )
    return problems


def check_jobs(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Every stored job's source and export target must pass djsync.sources.policy."""
    from djsync.models import SyncJob

    messages: list[checks.CheckMessage] = []
    try:
        jobs = list(SyncJob.objects.order_by("name")[:MAX_JOBS_CHECKED])
    except DatabaseError:  # not migrated yet, or no database: nothing stored to check
        return messages
    for job in jobs:
        problem = job_problem(job)
        if problem:
            messages.append(
                # A warning, not an error: errors would stop `migrate` (which rewrites old
                # jobs) and every other command; the job itself fails with this message.
                checks.Warning(
                    problem,
                    hint=_(
                        "Edit the job: its importer must be registered, and its source and target "
                        'must pick what DJSYNC["FILE_ROOTS"], DJSYNC["SQL_QUERIES"] and its '
                        "importer declare (docs/security.md)."
                    ),
                    obj=job,
                    id="djsync.W010",
                )
            )
    return messages


def job_problem(job: Any) -> str | None:
    """Why ``job`` would be refused before reading anything, or None."""
    from djsync.exports.step import check_target, is_export
    from djsync.mapping.registry import importer_names, split_names
    from djsync.runs.job_sources import make_source
    from djsync.runs.steps import make_importer, make_importers

    unknown = [name for name in split_names(job.importer) if name not in importer_names()]
    if unknown or not split_names(job.importer):
        known = ", ".join(importer_names()) or "none"
        return _("job %(name)r names no registered importer %(map)s (registered: %(known)s)") % {
            "name": job.name,
            "map": ", ".join(map(repr, unknown)),
            "known": known,
        }
    try:
        if is_export(job):
            check_target(job, make_importer(job))
        else:
            for importer in make_importers(job):
                if job.source or importer.source:
                    make_source(job, importer)
    except DjsyncError as exc:
        message = str(exc)
        prefix = _("job %(name)r: ") % {"name": job.name}
        return message if message.startswith(prefix.rstrip(": ")) else prefix + message
    except Exception as exc:  # noqa: BLE001 - a check reports, it never breaks `check`
        return _("job %(name)r: ") % {"name": job.name} + f"{type(exc).__name__}: {exc}"
    return None


def source_problem(importer: str, source: Any, *, name: str = "") -> str | None:
    """Why a job with this importer (one name or several, comma-separated) and ``source``
    would be refused (djsync.sources.policy), or None: for the admin's job form."""
    from djsync.mapping.registry import get_importer_class
    from djsync.models import SyncJob
    from djsync.sources import get_source

    try:
        for each in filter(None, (n.strip() for n in (importer or "").split(","))):
            get_importer_class(each)
        known = bool(importer)
    except Exception:  # noqa: BLE001 - an unregistered importer is the importer field's error
        known = False
    if not known:  # check the source alone
        try:
            get_source(source, job=name)
        except DjsyncError as exc:
            return str(exc)
        return None
    problem = job_problem(SyncJob(name=name, importer=importer, source=source))
    prefix = _("job %(name)r: ") % {"name": name}
    return problem[len(prefix) :] if problem and problem.startswith(prefix) else problem

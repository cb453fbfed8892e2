"""Importers registered under stable names, so jobs (data) can refer to code safely."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext as _

if TYPE_CHECKING:
    from djsync.mapping.importers import BaseImporter

ImporterT = TypeVar("ImporterT", bound="type[BaseImporter]")

_importers: dict[str, type[BaseImporter]] = {}


def register(
    importer: ImporterT | None = None, *, name: str | None = None
) -> ImporterT | Callable[[ImporterT], ImporterT]:
    """Register an importer class; usable as ``@register`` or ``@register(name="x")``.

    The name defaults to the importer's ``Meta.name``, else the target model's label
    in lower case. Registering a second class under a taken name raises.
    """

    def decorator(cls: ImporterT) -> ImporterT:
        key = name or getattr(cls, "name", None) or _default_name(cls)
        existing = _importers.get(key)
        if existing is not None and existing is not cls:
            raise ImproperlyConfigured(
                f"djsync: importer name {key!r} is taken by {existing.__module__}."
                f"{existing.__qualname__}; cannot register {cls.__module__}.{cls.__qualname__}"
            )
        if getattr(cls, "history", False):
            from djsync.history import connect

            connect(cls)
        cls.name = key
        _importers[key] = cls
        return cls

    if importer is not None:
        return decorator(importer)
    return decorator


def _default_name(cls: type[BaseImporter]) -> str:
    """The target model's label in lower case, or a target class's label."""
    if cls.target_class is not None:
        label = cls.target_class.label
        if not label:
            raise ImproperlyConfigured(
                f"djsync: {cls.__qualname__}'s target {cls.target_class.__qualname__} has no "
                "label; give it one, or the importer a Meta.name"
            )
        return label.lower()
    if getattr(cls, "model", None) is None:
        raise ImproperlyConfigured(f"djsync: {cls.__qualname__} has no model or target")
    return cls.model._meta.label_lower


def unregister(name: str) -> None:
    _importers.pop(name, None)


def get_importer_class(name: str) -> type[BaseImporter]:
    try:
        return _importers[name]
    except KeyError:
        known = ", ".join(sorted(_importers)) or "none"
        raise ImproperlyConfigured(
            f"djsync: no importer registered as {name!r} (registered: {known})"
        ) from None


def importer_names() -> list[str]:
    return sorted(_importers)


def importer_choices() -> list[tuple[str, str]]:
    return [(n, n) for n in importer_names()]


# -- the importers a job names ---------------------------------------------------------------
def split_names(text: str | None) -> list[str]:
    """The importer names in a job's ``importer`` field: one, or several separated by commas."""
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def bind(cls: type[BaseImporter], using: str | None = None) -> BaseImporter:
    """An importer of ``cls`` bound to its target's database: ``using`` (a job's choice
    among the importer's ``databases``), else its own ``database``, else the router's."""
    from django.db import DEFAULT_DB_ALIAS, router

    if using is not None:
        return cls(using=using)
    if cls.target_class is not None:  # not a model: the run's own database holds the history
        return cls(using=cls.database or DEFAULT_DB_ALIAS)
    return cls(using=cls.database or router.db_for_write(cls.model))


def dependency_order(importers: Sequence[BaseImporter]) -> list[BaseImporter]:
    """Parents before children (by foreign keys between their models, or the parents a
    target names), else as given."""
    from djsync.exceptions import ConfigurationError
    from djsync.mapping.fields import related_model

    labels = {imp.label: imp for imp in importers}
    needs: dict[str, set[str]] = {}
    for imp in importers:
        if imp.writes_model:
            parents = {
                related_model(f)._meta.label
                for f in imp.model._meta.concrete_fields
                if f.is_relation and f.related_model is not imp.model
            }
        else:  # another system: the target says which of its siblings come first
            parents = set(imp.target.parents)
        needs[imp.label] = parents & set(labels) - {imp.label}
    ordered: list[BaseImporter] = []
    done: set[str] = set()
    while len(ordered) < len(importers):
        ready = [i for i in importers if i.label not in done and needs[i.label] <= done]
        if not ready:
            cycle = ", ".join(i.label for i in importers if i.label not in done)
            raise ConfigurationError(
                _("the importers' models depend on each other: %(cycle)s") % {"cycle": cycle}
            )
        ordered.append(ready[0])
        done.add(ready[0].label)
    return ordered


def importers_of(text: str | None, *, job: str, using: str | None = None) -> list[BaseImporter]:
    """The importers a job's ``importer`` field names, bound, in dependency order, all
    writing to one database (one transaction needs one). ``job`` names it in errors."""
    from djsync.exceptions import ConfigurationError

    names = split_names(text)
    if len(names) == 1:
        return [bind(get_importer_class(names[0]), using)]
    importers = [bind(get_importer_class(name), using) for name in names]
    labels = [i.label for i in importers]
    if len(set(labels)) != len(labels):
        raise ConfigurationError(
            _("job %(job)r names one model twice: %(labels)s")
            % {"job": job, "labels": ", ".join(labels)}
        )
    aliases = {i.using for i in importers}
    if len(aliases) > 1:
        raise ConfigurationError(
            _(
                "job %(job)r: its importers write to several databases (%(sorted)s); one "
                "transaction needs one"
            )
            % {"job": job, "sorted": ", ".join(sorted(aliases))}
        )
    return dependency_order(importers)


#: What a job's ``target`` (data) may set when it writes to its importers' models.
MODEL_TARGET_OPTIONS = frozenset({"kind", "database"})


def job_database(target: Any, names: Sequence[str], *, job: str) -> str | None:
    """The database alias a job's ``target`` (data) picks for its importers ``names``,
    among those every one declares in ``Meta.databases`` (code); None: the importers'
    own. An export's target is a file (djsync.exports.jobs) and picks none."""
    from djsync.exceptions import ConfigurationError

    options = target if isinstance(target, dict) else {}
    if not options or options.get("kind") == "file":
        return None
    unknown = set(options) - MODEL_TARGET_OPTIONS
    kind = options.get("kind", "model")
    if unknown or kind != "model":
        raise ConfigurationError(
            _(
                'job %(job)r: the target is {} (the importer\'s model), {"database": "<alias>"} '
                'or an export {"kind": "file", …}; not %(value)s'
            )
            % {"job": job, "value": ", ".join(sorted(map(str, unknown))) or repr(kind)}
        )
    alias = options.get("database")
    if alias is None:
        return None
    for name in names:
        cls = get_importer_class(name)
        if alias not in cls.databases:
            allowed = ", ".join(cls.databases) or "none"
            raise ConfigurationError(
                _(
                    "job %(job)r: importer %(name)s may not write to database %(alias)r (its "
                    "Meta.databases: %(allowed)s)"
                )
                % {"job": job, "name": name, "alias": str(alias)[:40], "allowed": allowed}
            )
    return str(alias)

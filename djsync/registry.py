"""Importers registered under stable names, so jobs (data) can refer to code safely."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from .importers import BaseImporter

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
        key = name or getattr(cls, "name", None) or cls.model._meta.label_lower
        existing = _importers.get(key)
        if existing is not None and existing is not cls:
            raise ImproperlyConfigured(
                f"djsync: importer name {key!r} is taken by {existing.__module__}."
                f"{existing.__qualname__}; cannot register {cls.__module__}.{cls.__qualname__}"
            )
        cls.name = key
        _importers[key] = cls
        return cls

    if importer is not None:
        return decorator(importer)
    return decorator


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

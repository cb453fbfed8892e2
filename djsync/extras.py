"""Optional dependencies (the extras of pyproject.toml), imported where a feature uses them.

djsync itself needs only Django and tablib: a CSV job runs, ``manage.py check`` passes.
Celery, django-celery-beat, httpx, django-import-export, tqdm and django-simple-history
are imported when a feature needs them; a missing one is an ImproperlyConfigured error
naming the feature and the extra that installs it (``pip install "djsync[celery]"``).
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType
from typing import Any

from django.core.exceptions import ImproperlyConfigured

__all__ = ["EXTRAS", "lazy", "require"]

#: The extra that installs each optional top-level module.
EXTRAS: dict[str, str] = {
    "celery": "celery",
    "kombu": "celery",
    "redis": "celery",
    "django_celery_beat": "celery",
    "httpx": "http",
    "httpcore": "http",
    "import_export": "import-export",
    "tqdm": "progress",
    "simple_history": "history",
    "pgtrigger": "realtime",
}


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature`` ("an HTTP source"), or say which extra to install."""
    try:
        return import_module(module)
    except ImportError as exc:
        top = module.partition(".")[0]
        if exc.name is not None and exc.name.partition(".")[0] != top and exc.name != module:
            raise  # the module is there; something it imports is not
        extra = EXTRAS.get(top, top)
        raise ImproperlyConfigured(
            f'djsync: {feature} needs {top}, which is not installed: pip install "djsync[{extra}]"'
        ) from None


class _Lazy:
    """A module imported on first use of one of its names (:func:`lazy`)."""

    def __init__(self, module: str, feature: str) -> None:
        self._module, self._feature = module, feature

    def __getattr__(self, name: str) -> Any:
        return getattr(require(self._module, self._feature), name)


def lazy(module: str, feature: str) -> Any:
    """``module``, imported when a name of it is first used: a module of djsync that uses an
    optional library imports without it, and says which extra to install when used."""
    return _Lazy(module, feature)

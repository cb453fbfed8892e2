"""djsync: keep Django models in sync with files, APIs and other databases."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .fields import Field
from .importers import Importer
from .registry import register

if TYPE_CHECKING:
    from .services import run

__version__ = "0.1.0"
__all__ = ["Field", "Importer", "register", "run"]


def __getattr__(name: str) -> Any:
    """``djsync.run``: :func:`djsync.services.run` itself (its explicit signature), imported
    on first use, once the app registry is ready."""
    if name == "run":
        from .services import run

        return run
    raise AttributeError(f"module 'djsync' has no attribute {name!r}")

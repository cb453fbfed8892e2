"""djsync: keep Django models in sync with files, APIs and other databases."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from djsync.mapping.fields import Field
from djsync.mapping.importers import Importer
from djsync.mapping.registry import register

if TYPE_CHECKING:
    from djsync.runs.orchestrator import run

__version__ = "0.1.0"
__all__ = ["Field", "Importer", "register", "run"]


def __getattr__(name: str) -> Any:
    """``djsync.run``: :func:`djsync.runs.orchestrator.run` itself (its explicit
    signature), imported on first use, once the app registry is ready."""
    if name == "run":
        from djsync.runs.orchestrator import run

        return run
    raise AttributeError(f"module 'djsync' has no attribute {name!r}")

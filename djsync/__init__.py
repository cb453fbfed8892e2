"""djsync: keep Django models in sync with files, APIs and other databases."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .fields import Field
from .importers import Importer
from .registry import register

if TYPE_CHECKING:
    from .models import SyncRun

__version__ = "0.1.0"
__all__ = ["Field", "Importer", "register", "run"]


def run(job: Any, **kwargs: Any) -> SyncRun:
    """Run a job now; see :func:`djsync.services.run` for the options."""
    from .services import run as run_job

    return run_job(job, **kwargs)

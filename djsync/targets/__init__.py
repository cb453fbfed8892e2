"""Targets: what a step writes to. A Django model (the main one, with staged paths), an HTTP
JSON API, or any system a developer wraps in a :class:`Target` subclass (docs/targets.md)."""

from djsync.targets.base import Refused, Target, WriteResult
from djsync.targets.http import HttpApiTarget
from djsync.targets.model import ModelTarget

__all__ = ["HttpApiTarget", "ModelTarget", "Refused", "Target", "WriteResult"]

"""Targets: what a step writes to. A Django model (the main one, with staged paths), an HTTP
JSON API, a file (exports), or any system a developer wraps in a :class:`Target` subclass
(docs/targets.md)."""

from djsync.targets.base import Refused, Target, WriteResult
from djsync.targets.file import FileTarget
from djsync.targets.http import HttpApiTarget
from djsync.targets.model import ModelTarget

__all__ = ["FileTarget", "HttpApiTarget", "ModelTarget", "Refused", "Target", "WriteResult"]

"""Keeps the directory on its own database, as an external system would be."""

from __future__ import annotations

from typing import Any

from django.db.models import Model

from .conf import setting

APP_LABEL = "directory"


def directory_database() -> str:
    """The alias the directory lives on: settings.DIRECTORY_DATABASE, "directory" by default."""
    return str(setting("DIRECTORY_DATABASE"))


class DirectoryRouter:
    """Sends the directory's reads, writes and migrations to its alias, and nothing else there.

    ``DIRECTORY_DATABASE_EXCLUSIVE = False`` lets other apps share the alias (the test suite
    puts the directory on its "other" database, which cross-database tests also use).
    """

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        return directory_database() if model._meta.app_label == APP_LABEL else None

    db_for_write = db_for_read

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        inside = {obj._meta.app_label == APP_LABEL for obj in (obj1, obj2)}
        return False if len(inside) == 2 else None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        if app_label == APP_LABEL:
            return db == directory_database()
        if db == directory_database() and setting("DIRECTORY_DATABASE_EXCLUSIVE"):
            return False
        return None

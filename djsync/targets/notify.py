"""Receivers told about a model target's writes, one batch at a time (djsync.signals).

Bulk creates, set-based UPDATEs and batched DELETEs send no ``post_save``: a project (and
djsync's own model history, djsync.history) learns which rows a run wrote from
``batch_applied`` — the primary keys created, updated or deleted, at most ``BATCH_SIZE`` at
once — and from ``batch_deleting`` before a batch of rows goes. The generic path
(djsync.targets.model) and the staged paths (djsync.backends) tell the same. When nobody
listens for the model, no primary key is read and nothing is sent: the fast path pays
nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from django.db import connections, models

from djsync.conf import settings
from djsync.signals import batch_applied, batch_deleting

__all__ = ["Notifier"]


class Notifier:
    """Sends ``batch_deleting`` and ``batch_applied`` for ``importer``'s model, on its
    database, with the run it applies (``importer.run``); false when nobody listens."""

    def __init__(self, importer: Any) -> None:
        self.importer = importer
        self.model: type[models.Model] = importer.model
        self.using: str = importer.using
        self.run = getattr(importer, "run", None)
        self.listening = batch_applied.has_listeners(self.model) or batch_deleting.has_listeners(
            self.model
        )

    def __bool__(self) -> bool:
        return self.listening

    def deleting(self, pks: Sequence[Any]) -> None:
        """Before the rows ``pks`` are deleted."""
        if self.listening and pks:
            batch_deleting.send(
                sender=self.model,
                run=self.run,
                importer=self.importer,
                using=self.using,
                pks=list(pks),
            )

    def applied(
        self,
        *,
        created: Sequence[Any] = (),
        updated: Sequence[Any] = (),
        deleted: Sequence[Any] = (),
    ) -> None:
        """After a batch was written."""
        if self.listening and (created or updated or deleted):
            batch_applied.send(
                sender=self.model,
                run=self.run,
                importer=self.importer,
                using=self.using,
                created=list(created),
                updated=list(updated),
                deleted=list(deleted),
            )

    def created(self, objs: Sequence[models.Model]) -> None:
        """After ``bulk_create`` saved ``objs``: their primary keys, looked up by key on a
        database that returns none from a bulk insert."""
        if not self.listening or not objs:
            return
        pks = [obj.pk for obj in objs]
        if any(pk is None for pk in pks):
            fields = [self.importer.bound_fields[k].model_field for k in self.importer.keys]
            match = models.Q()
            for obj in objs:
                match |= models.Q(**{f.attname: getattr(obj, f.attname) for f in fields})
            manager = self.model._base_manager.db_manager(self.using)
            pks = list(manager.filter(match).values_list("pk", flat=True))
        self.applied(created=pks)

    def stream(self, action: str, sql: str) -> None:
        """Send the primary keys that ``sql`` selects (its first column) as ``action``
        (``"created"``, ``"updated"``), one batch at a time."""
        for pks in self.chunks(sql):
            self.applied(**{action: pks})

    def delete(self, sql: str) -> int:
        """Delete the rows whose primary keys ``sql`` selects, one batch at a time through the
        ORM (cascades and delete signals hold), telling receivers before and after each.
        Returns how many rows were named."""
        manager = self.model._base_manager.db_manager(self.using)
        deleted = 0
        for pks in self.chunks(sql):
            self.deleting(pks)
            manager.filter(pk__in=pks).delete()
            self.applied(deleted=pks)
            deleted += len(pks)
        return deleted

    def chunks(self, sql: str) -> Iterator[list[Any]]:
        """The first column of ``sql``'s rows, ``BATCH_SIZE`` at a time, read with a
        server-side cursor where the database has one: never all of them in memory."""
        if not self.listening:
            return
        with connections[self.using].chunked_cursor() as cursor:
            cursor.execute(sql)
            while rows := cursor.fetchmany(settings.BATCH_SIZE):
                yield [row[0] for row in rows]

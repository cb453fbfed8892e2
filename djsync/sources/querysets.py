"""Queryset source: rows of a Django model (any database alias) as records, model → model.

Use it to keep one model in step with another, or a ``reporting`` database's copy of a
table in step with ``default``. Records are read with ``.values().iterator()``, streamed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from django.apps import apps
from django.core.exceptions import FieldError
from django.db import models
from django.db.models import F
from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.exceptions import ConfigurationError, SourceError
from djsync.sources.base import Source
from djsync.sources.ranges import KeyRange, check_column
from djsync.sources.sql import check_alias


class QuerySetSource(Source):
    """Reads a queryset's rows as dicts.

    Options (from code: an importer's ``source``, its ``querysets``, or Python; a job only
    picks one of its importer's ``querysets`` by name, see djsync.sources.policy):
    ``model`` (``"app_label.Model"``) or ``queryset=``; ``using``
    (database alias; default: the queryset's own); ``filter`` / ``exclude`` (``filter()``
    keywords); ``fields`` (a list of field paths, or ``{"column": "path"}`` to rename, e.g.
    ``{"category_code": "category__code"}``; default: every concrete field, foreign keys by
    ``<name>_id``); ``order_by``; ``chunk_size``; ``incremental`` (``{"column":
    "updated_at"}``: only rows past the saved cursor); ``partition`` (a whole-number, date or
    time field: a split run reads it in ranges of that field, djsync.sources.ranges).
    """

    first_row = 1
    #: The range of the partition field this source reads (a partition of a split run).
    key_range: KeyRange | None = None

    def __init__(
        self,
        model: str | type[models.Model] | None = None,
        *,
        queryset: models.QuerySet | None = None,
        using: str | None = None,
        filter: dict[str, Any] | None = None,
        exclude: dict[str, Any] | None = None,
        fields: Sequence[str] | dict[str, str] | None = None,
        order_by: Sequence[str] | None = None,
        chunk_size: int | None = None,
        incremental: dict[str, Any] | None = None,
        partition: str | None = None,
        name: str | None = None,
    ) -> None:
        if (model is None) == (queryset is None):
            raise ConfigurationError(_("a queryset source needs either a model or a queryset"))
        if queryset is None:
            assert model is not None  # one of the two, checked above
            if isinstance(model, str):
                try:
                    model = apps.get_model(model)
                except (LookupError, ValueError):
                    raise ConfigurationError(
                        _("queryset source: no model %(model)r (use app_label.ModelName)")
                        % {"model": model}
                    ) from None
            queryset = model._default_manager.all()
        if using is not None:
            check_alias(using, _("queryset source"))
            queryset = queryset.using(using)
        self.queryset = queryset
        self.database = queryset.db
        self.filter = dict(filter or {})
        self.exclude = dict(exclude or {})
        self.fields = fields
        self.order_by = list(order_by or [])
        self.chunk_size = int(chunk_size or settings.BATCH_SIZE)
        self.name = name or _("%(label)s on database %(db)r") % {
            "label": queryset.model._meta.label,
            "db": queryset.db,
        }
        self.columns = None
        self.setup_incremental(incremental)
        self.partition = check_column(partition, f"{self.name}: ")

    def get_queryset(self) -> models.QuerySet:
        qs = self.queryset
        if self.filter:
            qs = qs.filter(**self.filter)
        if self.exclude:
            qs = qs.exclude(**self.exclude)
        if self.incremental:
            column = self.incremental["column"]
            if self.cursor not in (None, ""):
                qs = qs.filter(**{f"{column}__gte": self.cursor})
            qs = qs.order_by(column)
        elif self.order_by:
            qs = qs.order_by(*self.order_by)
        if self.key_range is not None:
            qs = qs.filter(self.key_range.q())
        return qs

    def _values(self, qs: models.QuerySet) -> tuple[models.QuerySet, list[str]]:
        fields = self.fields
        if fields is None:
            names = [f.attname for f in qs.model._meta.concrete_fields]
            return qs.values(*names), names
        if isinstance(fields, dict):
            plain = [c for c, p in fields.items() if c == p]
            renamed = {c: F(p) for c, p in fields.items() if c != p}
            return qs.values(*plain, **renamed), list(fields)
        return qs.values(*fields), list(fields)

    def read(self) -> Iterator[dict[str, Any]]:
        yield from self.track(self._rows())

    def _rows(self) -> Iterator[dict[str, Any]]:
        try:
            qs, columns = self._values(self.get_queryset())
            qs.query.get_compiler(qs.db).as_sql()  # a bad field path fails here, not mid-run
        except (FieldError, ValueError) as exc:  # an unknown path, a column named as a field
            raise SourceError(
                _("bad field in the queryset: %(exc)s") % {"exc": exc}, source=self.name
            ) from None
        self.columns = columns
        for row in qs.iterator(chunk_size=self.chunk_size):
            yield {c: row[c] for c in columns}

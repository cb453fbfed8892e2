"""Declarative field mapping: which source column feeds which model field, and how to convert
it (the converters are in djsync.mapping.converters)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from django.db import models, router
from django.utils.translation import gettext as _

from djsync.mapping.converters import (
    NOT_PROVIDED,
    ConversionError,
    Converter,
    _identity,
    converter_for,
    guarded,
    is_empty,
    model_validators,
    shown,
    validating,
)
from djsync.sources.base import MISSING

if TYPE_CHECKING:
    from djsync.targets.base import Target


class Field:
    """Maps one source column onto one model field.

    ``Field()`` as a class attribute of an importer maps the column of the same name;
    ``Field("Price (EUR)")`` renames; ``converter=`` replaces the type-based converter;
    ``default=`` fills empty cells and an absent column; ``lookup="code"`` makes a foreign
    key look up the related row by its natural key instead of by primary key;
    ``null_tokens=["NA"]`` makes cells that read exactly so count as empty for this field
    (replacing the importer's and the source's tokens; ``null_tokens=()`` for none).
    """

    def __init__(
        self,
        column: str | None = None,
        *,
        converter: Converter | None = None,
        default: Any = NOT_PROVIDED,
        required: bool | None = None,
        lookup: str | None = None,
        date_formats: Sequence[str] | None = None,
        datetime_formats: Sequence[str] | None = None,
        time_zone: str | None = None,
        null_tokens: Iterable[str] | None = None,
    ) -> None:
        self.column = column
        self.converter = converter
        self.default = default
        self.required = required
        self.lookup = lookup
        self.date_formats = date_formats
        self.datetime_formats = datetime_formats
        self.time_zone = time_zone
        self.null_tokens = None if null_tokens is None else null_token_set(null_tokens)
        self.name: str = ""  # set when bound to an importer

    def bind(
        self,
        name: str,
        model: type[models.Model] | Target,
        *,
        using: str | None = None,
        date_formats: Sequence[str] | None = None,
        datetime_formats: Sequence[str] | None = None,
    ) -> BoundField:
        """This field on ``model`` (or a target's field), for the database ``using``;
        ``date_formats`` and ``datetime_formats`` are the importer's, used when the field
        declares none."""
        return BoundField(
            self,
            name,
            model,
            using=using,
            date_formats=date_formats,
            datetime_formats=datetime_formats,
        )

    def __repr__(self) -> str:
        return f"<Field {self.name or '?'} column={self.column!r}>"


def null_token_set(tokens: Iterable[str]) -> frozenset[str]:
    """Null tokens as a set, each stripped (cells are compared stripped)."""
    if isinstance(tokens, str):
        tokens = [tokens]
    out = set()
    for token in tokens:
        if not isinstance(token, str):
            raise TypeError(f"a null token is text, not {shown(token)}")
        out.add(token.strip())
    out.discard("")  # empty cells are empty anyway
    return frozenset(out)


def concrete_field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    """``model``'s field ``name`` as a model field: an importer maps concrete fields and
    forward relations, never the reverse relations ``_meta.get_field`` also finds."""
    return cast("models.Field[Any, Any]", model._meta.get_field(name))


def related_model(field: models.Field[Any, Any]) -> type[models.Model]:
    """The model a relation field points to (``"self"`` and ``"app.Model"`` are resolved
    to the class once the app registry is ready, so the stubs' wider type never occurs)."""
    return cast("type[models.Model]", field.related_model)


class BoundField:
    """A Field tied to its model field: knows its converter, its empty value and its lookup."""

    def __init__(
        self,
        spec: Field,
        name: str,
        model: type[models.Model] | Target,
        *,
        using: str | None = None,
        date_formats: Sequence[str] | None = None,
        datetime_formats: Sequence[str] | None = None,
    ) -> None:
        self.name = name
        self.column = spec.column or name
        self.spec = spec
        if not isinstance(model, type):  # a target's record: plain values, no relation
            self.model_field = model.get_field(name)
            using = using or "default"
        else:
            self.model_field = concrete_field(model, name)
        self.default = spec.default
        mf = self.model_field
        self.is_relation = bool(mf.is_relation and mf.many_to_one)
        self.lookup: str | None
        if self.is_relation:
            related = related_model(mf)
            self.lookup = spec.lookup or related._meta.pk.name
            value_field = concrete_field(related, self.lookup)
            # Target rows are read as the related row's natural key ("category__code").
            self.target_path = f"{name}__{self.lookup}"
        else:
            self.lookup = None
            value_field = mf
            self.target_path = mf.attname
        using = using or router.db_for_write(model)  # type: ignore[arg-type]
        converter = converter_for(
            value_field,
            date_formats=spec.date_formats or date_formats,
            datetime_formats=spec.datetime_formats or datetime_formats,
            time_zone=spec.time_zone,
            using=using,
        )
        if spec.converter is not None:
            converter = guarded(spec.converter, value_field, converter)
        #: The model field's validators beyond what the converter enforces (EmailField,
        #: ``validators=[...]``); they run after conversion. Relations are checked by lookup.
        self.validators = [] if self.is_relation else model_validators(mf)
        self.converter = validating(converter, self.validators) if self.validators else converter
        #: Reads back a value stored in a plan (JSON, in the model's own ISO formats), which a
        #: custom converter written for the source's format may not understand.
        self.restore: Converter = (
            _identity
            if isinstance(value_field, models.JSONField)
            else converter_for(value_field, time_zone=spec.time_zone, using=using)
        )
        self.nullable = mf.null
        self.empty_string_ok = isinstance(value_field, models.CharField | models.TextField)
        #: The source column this field reads, once matched (None: the default fills it).
        self.source_column: str | None = self.column
        #: Cells that count as empty ("NA", "\\N"), stripped; set per run by the importer
        #: from the field's, the importer's and the source's tokens.
        self.null_tokens: frozenset[str] = spec.null_tokens or frozenset()

    def lookup_field(self) -> models.Field[Any, Any]:
        """The related model's field this foreign key is looked up by (``lookup``)."""
        if self.lookup is None:
            raise TypeError(f"{self.name} is not a foreign key")
        return concrete_field(related_model(self.model_field), self.lookup)

    def target_attname(self) -> str:
        """The related model's field this foreign key stores: its primary key, or the
        ``to_field`` of the ForeignKey."""
        return cast("models.ForeignKey[Any, Any]", self.model_field).target_field.attname

    def empty_value(self) -> Any:
        """What an empty cell becomes: the default, else None or "" as the field allows."""
        if self.default is not NOT_PROVIDED:
            return self.default() if callable(self.default) else self.default
        if self.nullable:
            return None
        if self.model_field.has_default():
            return self.model_field.get_default()
        if self.empty_string_ok and self.model_field.blank:
            return ""
        raise ConversionError(_("a value is required"))

    def convert(self, value: Any) -> Any:
        if is_empty(value):
            return self.empty_value()
        if value is MISSING:
            raise ConversionError(_("the row has no cell for this column"))
        if self.null_tokens and type(value) is str and value.strip() in self.null_tokens:
            return self.empty_value()
        return self.converter(value)

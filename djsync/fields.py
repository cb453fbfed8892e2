"""Declarative field mapping: which source column feeds which model field, and how to convert it.

Converters turn a raw cell (a string from CSV, a typed value from XLSX or JSON, or a value
stored in a plan) into the Python value the model field holds, so that source and target are
compared after conversion: ``"1.50"`` and ``Decimal("1.5")`` are the same price.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings as django_settings
from django.db import models
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime, parse_time

from .conf import settings

Converter = Callable[[Any], Any]

NOT_PROVIDED = object()

TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y", "on", "x", "oui", "ja", "si", "sí"})
FALSE_WORDS = frozenset({"0", "false", "f", "no", "n", "off", "non", "nein"})


class ConversionError(ValueError):
    """A cell could not be converted; the message says what was expected."""


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def to_str(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # spreadsheets hand "12" back as 12.0
    return str(value).strip()


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ConversionError(f"expected a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise ConversionError(f"expected a whole number, got {value!r}")
    text = str(value).strip().replace("_", "")
    try:
        return int(text)
    except ValueError:
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ConversionError(f"expected a whole number, got {value!r}") from None
        if number == number.to_integral_value():
            return int(number)
        raise ConversionError(f"expected a whole number, got {value!r}") from None


def to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ConversionError(f"expected a number, got {value!r}")
    try:
        return float(value if not isinstance(value, str) else value.strip())
    except (TypeError, ValueError):
        raise ConversionError(f"expected a number, got {value!r}") from None


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConversionError(f"expected yes/no, true/false or 1/0, got {value!r}")


def decimal_converter(max_digits: int | None, decimal_places: int | None) -> Converter:
    step = Decimal(1).scaleb(-decimal_places) if decimal_places is not None else None
    room = max_digits - decimal_places if max_digits is not None and step is not None else None

    def to_decimal(value: Any) -> Decimal:
        if type(value) is str:  # the common case, first: a text cell
            text = value.strip()
        elif isinstance(value, bool):
            raise ConversionError(f"expected a decimal number, got {value!r}")
        elif isinstance(value, float):
            text = repr(value)  # 1.1 stays 1.1, not 1.100000000000000088817841970012523
        else:
            text = str(value).strip()
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ConversionError(f"expected a decimal number, got {value!r}") from None
        if not number.is_finite():
            raise ConversionError(f"expected a finite decimal number, got {value!r}")
        if step is not None:
            # 5 → 5.00; trailing zeros beyond the field's precision are not a loss of data.
            try:
                quantized = number.quantize(step)
            except InvalidOperation:
                raise ConversionError(f"{value!r} is too large for {max_digits} digits") from None
            if quantized != number:
                places = -int(number.as_tuple().exponent)
                raise ConversionError(
                    f"{value!r} has {places} decimal places; the field allows {decimal_places}"
                )
            number = quantized
        if room is not None and number and number.adjusted() + 1 > room:
            raise ConversionError(f"{value!r} is too large for {max_digits} digits")
        return number

    return to_decimal


def _source_zone() -> dt.tzinfo:
    name = settings.SOURCE_TIME_ZONE or django_settings.TIME_ZONE
    return ZoneInfo(name)


def date_converter(formats: Sequence[str] | None = None) -> Converter:
    def to_date(value: Any) -> dt.date:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        text = str(value).strip()
        try:
            parsed = parse_date(text)
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed
        for fmt in formats or settings.DATE_FORMATS:
            try:
                return dt.datetime.strptime(text, fmt).date()
            except ValueError:
                continue
        raise ConversionError(f"expected a date (e.g. 2024-01-31), got {value!r}")

    return to_date


def datetime_converter(
    formats: Sequence[str] | None = None, time_zone: str | None = None
) -> Converter:
    def to_datetime(value: Any) -> dt.datetime:
        if isinstance(value, dt.datetime):
            parsed = value
        elif isinstance(value, dt.date):
            parsed = dt.datetime.combine(value, dt.time())
        else:
            text = str(value).strip()
            try:
                parsed = parse_datetime(text)
            except ValueError:
                parsed = None
            for fmt in () if parsed else (formats or settings.DATETIME_FORMATS):
                try:
                    parsed = dt.datetime.strptime(text, fmt)
                    break
                except ValueError:
                    continue
            if parsed is None:
                raise ConversionError(
                    f"expected a date and time (e.g. 2024-01-31 13:45:00), got {value!r}"
                )
        if django_settings.USE_TZ:
            if timezone.is_naive(parsed):
                zone = ZoneInfo(time_zone) if time_zone else _source_zone()
                parsed = parsed.replace(tzinfo=zone)
            return parsed.astimezone(dt.UTC)
        if timezone.is_aware(parsed):
            return timezone.make_naive(parsed, _source_zone())
        return parsed

    return to_datetime


def to_time(value: Any) -> dt.time:
    if isinstance(value, dt.time):
        return value
    if isinstance(value, dt.datetime):
        return value.time()
    try:
        parsed = parse_time(str(value).strip())
    except ValueError:
        parsed = None
    if parsed is None:
        raise ConversionError(f"expected a time (e.g. 13:45), got {value!r}")
    return parsed


def to_uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise ConversionError(f"expected a UUID, got {value!r}") from None


def to_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConversionError(f"expected JSON: {exc}") from None
    return value


def _identity(value: Any) -> Any:
    return value


def choices_converter(field: models.Field, inner: Converter) -> Converter:
    """Accept a choice by its stored value or by its label, case-insensitively."""
    by_value = {str(v).lower(): v for v, _ in field.flatchoices}
    by_label = {str(label).strip().lower(): v for v, label in field.flatchoices}

    def to_choice(value: Any) -> Any:
        word = to_str(value).lower()
        if word in by_value:
            return by_value[word]
        if word in by_label:
            return by_label[word]
        try:
            converted = inner(value)
        except ConversionError:
            converted = NOT_PROVIDED
        if converted in by_value.values():
            return converted
        allowed = ", ".join(str(v) for v in by_value.values())
        raise ConversionError(f"{value!r} is not one of the choices ({allowed})")

    return to_choice


def string_converter(max_length: int | None) -> Converter:
    def to_text(value: Any) -> str:
        text = to_str(value)
        if max_length is not None and len(text) > max_length:
            raise ConversionError(f"{len(text)} characters; the field allows at most {max_length}")
        return text

    return to_text


def converter_for(
    field: models.Field,
    *,
    date_formats: Sequence[str] | None = None,
    datetime_formats: Sequence[str] | None = None,
    time_zone: str | None = None,
) -> Converter:
    """The default converter for a model field, chosen by the field's type."""
    if isinstance(field, models.BooleanField):
        conv: Converter = to_bool
    elif isinstance(field, models.DecimalField):
        conv = decimal_converter(field.max_digits, field.decimal_places)
    elif isinstance(field, models.FloatField):
        conv = to_float
    elif isinstance(field, models.IntegerField | models.AutoField):
        conv = to_int
    elif isinstance(field, models.DateTimeField):
        conv = datetime_converter(datetime_formats, time_zone)
    elif isinstance(field, models.DateField):
        conv = date_converter(date_formats)
    elif isinstance(field, models.TimeField):
        conv = to_time
    elif isinstance(field, models.UUIDField):
        conv = to_uuid
    elif isinstance(field, models.JSONField):
        conv = to_json
    elif isinstance(field, models.CharField | models.TextField):
        conv = string_converter(field.max_length)
    else:
        conv = to_str
    if field.choices:
        conv = choices_converter(field, conv)
    return conv


class Field:
    """Maps one source column onto one model field.

    ``Field()`` as a class attribute of an importer maps the column of the same name;
    ``Field("Price (EUR)")`` renames; ``converter=`` replaces the type-based converter;
    ``default=`` fills empty cells and an absent column; ``lookup="code"`` makes a foreign
    key look up the related row by its natural key instead of by primary key.
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
    ) -> None:
        self.column = column
        self.converter = converter
        self.default = default
        self.required = required
        self.lookup = lookup
        self.date_formats = date_formats
        self.datetime_formats = datetime_formats
        self.time_zone = time_zone
        self.name: str = ""  # set when bound to an importer

    def bind(self, name: str, model: type[models.Model]) -> BoundField:
        return BoundField(self, name, model)

    def __repr__(self) -> str:
        return f"<Field {self.name or '?'} column={self.column!r}>"


class BoundField:
    """A Field tied to its model field: knows its converter, its empty value and its lookup."""

    def __init__(self, spec: Field, name: str, model: type[models.Model]) -> None:
        self.name = name
        self.column = spec.column or name
        self.spec = spec
        self.model_field = model._meta.get_field(name)
        self.default = spec.default
        mf = self.model_field
        self.is_relation = bool(mf.is_relation and mf.many_to_one)
        if self.is_relation:
            related = mf.related_model
            self.lookup = spec.lookup or related._meta.pk.name
            value_field = related._meta.get_field(self.lookup)
            # Target rows are read as the related row's natural key ("category__code").
            self.target_path = f"{name}__{self.lookup}"
        else:
            self.lookup = None
            value_field = mf
            self.target_path = mf.attname
        self.converter = spec.converter or converter_for(
            value_field,
            date_formats=spec.date_formats,
            datetime_formats=spec.datetime_formats,
            time_zone=spec.time_zone,
        )
        #: Reads back a value stored in a plan (JSON, in the model's own ISO formats), which a
        #: custom converter written for the source's format may not understand.
        self.restore: Converter = (
            _identity
            if isinstance(value_field, models.JSONField)
            else converter_for(value_field, time_zone=spec.time_zone)
        )
        self.nullable = mf.null
        self.empty_string_ok = isinstance(value_field, models.CharField | models.TextField)
        #: The source column this field reads, once matched (None: the default fills it).
        self.source_column: str | None = self.column

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
        raise ConversionError("a value is required")

    def convert(self, value: Any) -> Any:
        if is_empty(value):
            return self.empty_value()
        return self.converter(value)

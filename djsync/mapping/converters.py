"""Converters: a raw cell (a string from CSV, a typed value from XLSX or JSON, or a value
stored in a plan) into the Python value a model field holds, so that source and target are
compared after conversion: ``"1.50"`` and ``Decimal("1.5")`` are the same price. Chosen per
model field by :func:`converter_for`, bounded by :func:`guarded` (djsync.mapping.fields binds them).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import reprlib
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings as django_settings
from django.core import validators as django_validators
from django.core.exceptions import ValidationError
from django.db import connections, models, router
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime, parse_time
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from djsync.conf import settings

Converter = Callable[[Any], Any]

NOT_PROVIDED = object()

TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y", "on", "x", "oui", "ja", "si", "sí"})
FALSE_WORDS = frozenset({"0", "false", "f", "no", "n", "off", "non", "nein"})


class ConversionError(ValueError):
    """A cell could not be converted; the message says what was expected."""


class OutOfRange(ConversionError):
    """A whole number with more digits than any database column holds."""


_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlong = 40
_repr.maxlevel = 2
_repr.maxdict = _repr.maxlist = _repr.maxtuple = _repr.maxset = 4


def shown(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut short when it is long."""
    text = _repr.repr(value)
    if isinstance(value, str | bytes) and len(value) > _repr.maxstring:
        text += _(" (%(count)s characters)") % {"count": format(len(value), ",")}
    return text


def bad(message: str, value: Any) -> ConversionError:
    """The error for ``value``: ``message`` (translated) with the value quoted as
    :func:`shown` quotes it."""
    return ConversionError(message % {"value": shown(value)})


#: Values that are no single cell: a JSON object or array, or bytes.
NESTED = (dict, list, tuple, set, frozenset)


def _scalar(value: Any, expected: str) -> None:
    """Refuse a JSON object or array (or bytes) where one value is expected: its Python
    repr is never what the source meant."""
    if isinstance(value, NESTED):
        what = _("a JSON object") if isinstance(value, dict) else _("a list")
        raise ConversionError(
            _("expected %(expected)s, got %(what)s %(value)s")
            % {"expected": _(expected), "what": what, "value": shown(value)}
        )
    if isinstance(value, bytes | bytearray | memoryview):
        raise ConversionError(
            _("expected %(expected)s, got bytes %(bytes)s")
            % {"expected": _(expected), "bytes": shown(bytes(value))}
        )


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def to_str(value: Any) -> str:
    if type(value) is str:
        return value.strip()
    _scalar(value, gettext_noop("text"))
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # spreadsheets hand "12" back as 12.0
    return str(value).strip()


#: More digits than this in a whole number is out of every column's range (and converting
#: "1e1000000000" to an int would take minutes and gigabytes).
_MAX_DIGITS = 40


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ConversionError(_("expected a whole number, got %(value)r") % {"value": value})
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise bad(_("expected a whole number, got %(value)s"), value)
    _scalar(value, gettext_noop("a whole number"))
    text = str(value).strip().replace("_", "")
    if len(text) <= _MAX_DIGITS:
        try:
            return int(text)
        except ValueError:
            pass
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise bad(_("expected a whole number, got %(value)s"), value) from None
    if not number.is_finite():
        raise bad(_("expected a whole number, got %(value)s"), value)
    if number.adjusted() >= _MAX_DIGITS:
        raise OutOfRange(
            _("%(value)s is out of range of every integer column") % {"value": shown(value)}
        )
    if number == number.to_integral_value():
        return int(number)
    raise bad(_("expected a whole number, got %(value)s"), value)


def int_converter(low: int, high: int, what: str) -> Converter:
    """Whole numbers in ``low``..``high``, the range of the target column (``what``)."""

    def to_bounded_int(value: Any) -> int:
        number: int | None
        try:
            # The common case first: a short text cell (int() takes " 12 " and "1_000").
            if type(value) is str and len(value) <= _MAX_DIGITS:
                number = int(value)
            else:
                number = to_int(value)
        except OutOfRange:
            number = None
        except ValueError:
            try:
                number = to_int(value)
            except OutOfRange:
                number = None
        if number is not None and low <= number <= high:
            return number
        raise ConversionError(
            _("%(value)s is out of range: %(what)s holds %(low)s to %(high)s")
            % {
                "value": shown(value),
                "what": what,
                "low": format(low, ","),
                "high": format(high, ","),
            }
        )

    return to_bounded_int


def to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ConversionError(_("expected a number, got %(value)r") % {"value": value})
    if type(value) is not str:
        _scalar(value, gettext_noop("a number"))
    try:
        number = float(value if not isinstance(value, str) else value.strip())
    except (TypeError, ValueError, OverflowError):
        raise bad(_("expected a number, got %(value)s"), value) from None
    if not math.isfinite(number):  # "NaN", "inf", 1e400: no database compares them sanely
        raise bad(_("expected a finite number, got %(value)s"), value)
    return number


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if type(value) is not str:
        _scalar(value, gettext_noop("yes/no"))
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise bad(_("expected yes/no, true/false or 1/0, got %(value)s"), value)


def decimal_converter(max_digits: int | None, decimal_places: int | None) -> Converter:
    step = Decimal(1).scaleb(-decimal_places) if decimal_places is not None else None
    room = (
        max_digits - decimal_places
        if max_digits is not None and decimal_places is not None
        else None
    )

    def to_decimal(value: Any) -> Decimal:
        if type(value) is str:  # the common case, first: a text cell
            text = value.strip()
        elif isinstance(value, bool):
            raise ConversionError(_("expected a decimal number, got %(value)r") % {"value": value})
        elif isinstance(value, (*NESTED, bytes, bytearray, memoryview)):
            _scalar(value, gettext_noop("a decimal number"))
        elif isinstance(value, float):
            text = repr(value)  # 1.1 stays 1.1, not 1.100000000000000088817841970012523
        else:
            text = str(value).strip()
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise bad(_("expected a decimal number, got %(value)s"), value) from None
        if not number.is_finite():
            raise bad(_("expected a finite decimal number, got %(value)s"), value)
        if step is not None:
            # 5 → 5.00; trailing zeros beyond the field's precision are not a loss of data.
            try:
                quantized = number.quantize(step)
            except InvalidOperation:
                raise ConversionError(
                    _("%(value)s is too large for %(max_digits)s digits")
                    % {"value": shown(value), "max_digits": max_digits}
                ) from None
            if quantized != number:
                places = -int(number.as_tuple().exponent)
                raise ConversionError(
                    _(
                        "%(value)s has %(places)s decimal places; the field allows "
                        "%(decimal_places)s"
                    )
                    % {"value": shown(value), "places": places, "decimal_places": decimal_places}
                )
            number = quantized
        if room is not None and number and number.adjusted() + 1 > room:
            raise ConversionError(
                _("%(value)s is too large for %(max_digits)s digits")
                % {"value": shown(value), "max_digits": max_digits}
            )
        return number

    return to_decimal


def _source_zone() -> dt.tzinfo:
    name = settings.SOURCE_TIME_ZONE or django_settings.TIME_ZONE
    return ZoneInfo(name)


def _by_formats(text: str, formats: Sequence[str], what: str) -> dt.datetime | None:
    """``text`` read with every format that fits; two formats that fit with different
    results (01/02/2024 with both ``%d/%m/%Y`` and ``%m/%d/%Y``) are an error, not a guess."""
    found: dict[dt.datetime, str] = {}
    for fmt in formats:
        try:
            found.setdefault(dt.datetime.strptime(text, fmt), fmt)
        except ValueError:
            continue
    if len(found) > 1:
        readings = _(" or ").join(f"{value} ({fmt})" for value, fmt in found.items())
        raise ConversionError(
            _("ambiguous %(what)s %(text)s: it reads as %(readings)s")
            % {"what": _(what), "text": shown(text), "readings": readings}
        )
    return next(iter(found), None)


def date_converter(formats: Sequence[str] | None = None) -> Converter:
    def to_date(value: Any) -> dt.date:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if type(value) is not str:
            _scalar(value, gettext_noop("a date"))
        text = str(value).strip()
        try:
            parsed = parse_date(text)
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed
        found = _by_formats(text, formats or settings.DATE_FORMATS, gettext_noop("date"))
        if found is not None:
            return found.date()
        raise bad(_("expected a date (e.g. 2024-01-31), got %(value)s"), value)

    return to_date


def datetime_converter(
    formats: Sequence[str] | None = None, time_zone: str | None = None
) -> Converter:
    def to_datetime(value: Any) -> dt.datetime:
        parsed: dt.datetime | None
        if isinstance(value, dt.datetime):
            parsed = value
        elif isinstance(value, dt.date):
            parsed = dt.datetime.combine(value, dt.time())
        else:
            if type(value) is not str:
                _scalar(value, gettext_noop("a date and time"))
            text = str(value).strip()
            try:
                parsed = parse_datetime(text)
            except ValueError:
                parsed = None
            if parsed is None:
                parsed = _by_formats(
                    text, formats or settings.DATETIME_FORMATS, gettext_noop("date and time")
                )
            if parsed is None:
                raise bad(
                    _("expected a date and time (e.g. 2024-01-31 13:45:00), got %(value)s"), value
                )
        try:
            if django_settings.USE_TZ:
                if timezone.is_naive(parsed):
                    zone = ZoneInfo(time_zone) if time_zone else _source_zone()
                    parsed = parsed.replace(tzinfo=zone)
                return parsed.astimezone(dt.UTC)
            if timezone.is_aware(parsed):
                return timezone.make_naive(parsed, _source_zone())
        except OverflowError:  # 9999-12-31T23:59-14:00 is past year 9999 in UTC
            raise bad(
                _("%(value)s is out of range: in UTC it falls before year 1 or after 9999"), value
            ) from None
        return parsed

    return to_datetime


def to_time(value: Any) -> dt.time:
    if isinstance(value, dt.time):
        return value
    if isinstance(value, dt.datetime):
        return value.time()
    if type(value) is not str:
        _scalar(value, gettext_noop("a time"))
    try:
        parsed = parse_time(str(value).strip())
    except ValueError:
        parsed = None
    if parsed is None:
        raise bad(_("expected a time (e.g. 13:45), got %(value)s"), value)
    return parsed


def to_uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if type(value) is not str:
        _scalar(value, gettext_noop("a UUID"))
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise bad(_("expected a UUID, got %(value)s"), value) from None


def to_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConversionError(_("expected JSON: %(exc)s") % {"exc": exc}) from None
        except RecursionError:
            raise ConversionError(_("expected JSON: it is nested too deeply")) from None
    _check_json(value)
    return value


def _check_json(value: Any) -> None:
    """Refuse what a JSON column cannot store: NaN and infinities (not JSON at all) and
    NUL characters (PostgreSQL's jsonb refuses them). Walked without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                raise ConversionError(
                    _("%(item)s is not a JSON number (NaN or infinite)") % {"item": shown(item)}
                )
        elif isinstance(item, str):
            if "\x00" in item:
                raise ConversionError(
                    _("%(item)s contains a NUL character (\\x00)") % {"item": shown(item)}
                )
            if not (item.isascii() or encodable(item)):
                raise ConversionError(
                    _("%(item)s is not valid Unicode (a lone surrogate)") % {"item": shown(item)}
                )
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, Decimal) and not item.is_finite():
            raise ConversionError(
                _("%(item)s is not a JSON number (NaN or infinite)") % {"item": shown(item)}
            )


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
        raise ConversionError(
            _("%(value)s is not one of the choices (%(allowed)s)")
            % {"value": shown(value), "allowed": allowed}
        )

    return to_choice


def string_converter(max_length: int | None) -> Converter:
    def to_text(value: Any) -> str:
        text = to_str(value)
        if max_length is not None and len(text) > max_length:
            raise ConversionError(
                _("%(text)s characters; the field allows at most %(max_length)s")
                % {"text": len(text), "max_length": max_length}
            )
        if "\x00" in text:
            # PostgreSQL refuses NUL in text; SQLite would store it, but one source must give
            # the same result on both databases (and Django's forms refuse it too).
            raise bad(_("%(value)s contains a NUL character (\\x00)"), value)
        if not (text.isascii() or encodable(text)):
            raise bad(_("%(value)s is not valid Unicode (a lone surrogate)"), value)
        return text

    return to_text


def encodable(text: str) -> bool:
    """Whether ``text`` can be stored: a JSON "\\udc80" escape gives a lone surrogate,
    which no database encoding takes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def integer_range(field: models.Field, using: str | None) -> tuple[int, int]:
    """The range of ``field``'s column on the database ``using`` (positive types from 0)."""
    connection = connections[using or router.db_for_write(field.model) or "default"]
    internal = field.get_internal_type()
    try:
        return connection.ops.integer_field_range(internal)
    except KeyError:  # a custom integer type: the widest column any database has
        return (0 if "Positive" in internal else -(2**63), 2**63 - 1)


def converter_for(
    field: models.Field,
    *,
    date_formats: Sequence[str] | None = None,
    datetime_formats: Sequence[str] | None = None,
    time_zone: str | None = None,
    using: str | None = None,
) -> Converter:
    """The default converter for a model field, chosen by the field's type; it refuses what
    the field or the column of database ``using`` would refuse."""
    if isinstance(field, models.BooleanField):
        conv: Converter = to_bool
    elif isinstance(field, models.DecimalField):
        conv = decimal_converter(field.max_digits, field.decimal_places)
    elif isinstance(field, models.FloatField):
        conv = to_float
    elif isinstance(field, models.IntegerField | models.AutoField):
        low, high = integer_range(field, using)
        vendor = connections[using or router.db_for_write(field.model) or "default"].vendor
        conv = int_converter(low, high, f"{field.get_internal_type()} on {vendor}")
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
        conv = string_converter(getattr(field, "max_length", None))
    if field.choices:
        conv = choices_converter(field, conv)
    return conv


def guarded(custom: Converter, field: models.Field, builtin: Converter) -> Converter:
    """A custom converter, with its result held to what the column takes: the built-in
    converter checks numbers (range, finite, digits) and JSON; text is checked for length,
    NUL and nesting without being stripped. Other types go through as the converter made
    them (dates, times, UUIDs: their Python types cannot be out of a column's range)."""
    if field.choices:
        return custom
    if isinstance(field, models.BooleanField):
        return custom
    check: Converter
    if isinstance(field, models.IntegerField | models.AutoField | models.FloatField):
        check = builtin
    elif isinstance(field, models.DecimalField):
        check = builtin
    elif isinstance(field, models.JSONField):

        def check(value: Any) -> Any:
            _check_json(value)  # a str result is a JSON string, not JSON text to parse
            return value
    elif isinstance(field, models.CharField | models.TextField):
        limit = field.max_length

        def check(value: Any) -> Any:
            if not isinstance(value, str):
                return value if not isinstance(value, NESTED) else to_str(value)
            if limit is not None and len(value) > limit:
                raise ConversionError(
                    _("%(value)s characters; the field allows at most %(limit)s")
                    % {"value": len(value), "limit": limit}
                )
            if "\x00" in value:
                raise bad(_("%(value)s contains a NUL character (\\x00)"), value)
            return value
    else:
        return custom

    def convert_and_check(value: Any) -> Any:
        converted = custom(value)
        return converted if converted is None else check(converted)

    return convert_and_check


#: Validators the converters already enforce (length, digits, ranges, NUL).
_ENFORCED = (
    django_validators.MaxLengthValidator,
    django_validators.DecimalValidator,
    django_validators.ProhibitNullCharactersValidator,
)


def model_validators(field: models.Field) -> list[Callable[[Any], None]]:
    """The model field's own validators that a converter does not already enforce: those of
    its type (EmailField, URLField, SlugField, GenericIPAddressField…) and ``validators=``."""
    found = [*field.default_validators, *getattr(field, "_validators", ())]
    return [v for v in found if not isinstance(v, _ENFORCED)]


def validating(convert: Converter, checks: Sequence[Callable[[Any], None]]) -> Converter:
    """``convert``, then the model field's validators on the converted value."""

    def convert_and_validate(value: Any) -> Any:
        converted = convert(value)
        if converted is None or converted == "":
            return converted
        errors: list[str] = []
        for check in checks:
            try:
                check(converted)
            except ValidationError as exc:
                errors.extend(str(m) for m in exc.messages)
        if errors:
            raise ConversionError(f"{shown(value)}: {' '.join(errors)}")
        return converted

    return convert_and_validate

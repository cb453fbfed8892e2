"""Converters: every model field type reads what a spreadsheet or a CSV file hands it."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from djsync.engine.diff import same
from djsync.mapping.converters import ConversionError
from djsync.mapping.fields import Field
from tests.testapp.models import Member, Product

UTC = dt.UTC


def convert(model: type, name: str, value: Any, **spec: Any) -> Any:
    return Field(**spec).bind(name, model).convert(value)


def member(name: str, value: Any, **spec: Any) -> Any:
    return convert(Member, name, value, **spec)


# -- integers ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, expected",
    [("12", 12), (" 12 ", 12), ("12.0", 12), (12.0, 12), (12, 12), ("-3", -3), ("1_000", 1000)],
)
def test_integers(raw, expected):
    assert convert(Product, "qty", raw) == expected


@pytest.mark.parametrize("raw", ["12.5", 12.5, "twelve", True, "1e400x"])
def test_integers_refuse_fractions_and_words(raw):
    with pytest.raises(ConversionError, match="whole number"):
        convert(Product, "qty", raw)


def test_empty_integer_cell_takes_the_model_default():
    assert convert(Product, "qty", "") == 0
    assert convert(Product, "qty", None) == 0


# -- decimals ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, expected",
    [
        ("1.50", Decimal("1.50")),
        ("1.5", Decimal("1.50")),
        (1.5, Decimal("1.50")),
        (1.1, Decimal("1.10")),  # not 1.100000000000000088…
        (5, Decimal("5.00")),
        ("1.500", Decimal("1.50")),  # trailing zeros beyond the precision lose nothing
        (" 7 ", Decimal("7.00")),
    ],
)
def test_decimals(raw, expected):
    value = convert(Product, "price", raw)
    assert value == expected
    assert value.as_tuple().exponent == -2


def test_decimal_written_differently_is_not_a_change():
    assert same(convert(Product, "price", "1.50"), Decimal("1.5"))


def test_decimal_with_too_many_places_is_an_error():
    with pytest.raises(ConversionError, match="3 decimal places; the field allows 2"):
        convert(Product, "price", "1.555")


@pytest.mark.parametrize("raw", ["1,5x", "abc", "NaN", "Infinity", True])
def test_decimal_refuses_non_numbers(raw):
    with pytest.raises(ConversionError):
        convert(Product, "price", raw)


def test_decimal_too_large_for_max_digits():
    with pytest.raises(ConversionError, match="too large for 10 digits"):
        convert(Product, "price", "123456789.00")
    assert convert(Product, "price", "12345678.99") == Decimal("12345678.99")


# -- floats ------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [("3.25", 3.25), (" 2 ", 2.0), (4, 4.0), ("-1e3", -1000)])
def test_floats(raw, expected):
    assert member("score", raw) == expected


@pytest.mark.parametrize("raw", ["high", True])
def test_float_refuses_words(raw):
    with pytest.raises(ConversionError, match="expected a number"):
        member("score", raw)


def test_nan_equals_nan_so_it_is_never_an_endless_update():
    assert same(float("nan"), float("nan"))


# -- dates -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw", ["2024-01-31", " 2024-01-31 ", dt.date(2024, 1, 31), dt.datetime(2024, 1, 31, 9)]
)
def test_dates_in_the_default_formats(raw):
    assert member("joined", raw) == dt.date(2024, 1, 31)


@pytest.mark.parametrize("raw", ["31/01/2024", "31.01.2024", "01/02/2024", "2024/01/31"])
def test_dates_are_iso_only_unless_formats_are_declared(raw):
    # Issue 9: DATE_FORMATS no longer holds %d/%m/%Y and %d.%m.%Y: a day-first or
    # month-first date is not guessed.
    with pytest.raises(ConversionError, match="expected a date"):
        member("joined", raw)
    day_first = ["%d/%m/%Y", "%d.%m.%Y", "%Y/%m/%d"]
    assert member("joined", raw, date_formats=day_first) in (
        dt.date(2024, 1, 31),
        dt.date(2024, 2, 1),
    )


def test_a_date_two_declared_formats_read_differently_is_ambiguous():
    both = ["%d/%m/%Y", "%m/%d/%Y"]
    with pytest.raises(ConversionError, match=r"ambiguous date '01/02/2024': it reads as"):
        member("joined", "01/02/2024", date_formats=both)
    assert member("joined", "13/02/2024", date_formats=both) == dt.date(2024, 2, 13)
    assert member("joined", "02/13/2024", date_formats=both) == dt.date(2024, 2, 13)
    assert member("joined", "03/03/2024", date_formats=both) == dt.date(2024, 3, 3)  # same


def test_dates_in_a_configured_format():
    assert member("joined", "01-31-2024", date_formats=["%m-%d-%Y"]) == dt.date(2024, 1, 31)
    # ISO 8601 is always tried first.
    assert member("joined", "2024-01-31", date_formats=["%m-%d-%Y"]) == dt.date(2024, 1, 31)
    # Configured formats replace the defaults.
    with pytest.raises(ConversionError, match="expected a date"):
        member("joined", "31/01/2024", date_formats=["%m-%d-%Y"])


def test_date_formats_setting(settings):
    settings.DJSYNC = {**settings.DJSYNC, "DATE_FORMATS": ["%Y%m%d"]}
    assert member("joined", "20240131") == dt.date(2024, 1, 31)


@pytest.mark.parametrize("raw", ["2024-02-30", "tomorrow", "31/13/2024"])
def test_bad_dates(raw):
    with pytest.raises(ConversionError, match="expected a date"):
        member("joined", raw)


# -- datetimes ---------------------------------------------------------------------------
def test_naive_datetime_is_read_in_the_project_time_zone():
    # tests/settings.py: TIME_ZONE = "Europe/Paris" (UTC+1 in January).
    value = member("seen", "2024-01-31 13:45:00")
    assert value == dt.datetime(2024, 1, 31, 12, 45, tzinfo=UTC)


def test_naive_datetime_is_read_in_source_time_zone(settings):
    settings.DJSYNC = {**settings.DJSYNC, "SOURCE_TIME_ZONE": "America/New_York"}
    assert member("seen", "2024-01-31 13:45:00") == dt.datetime(2024, 1, 31, 18, 45, tzinfo=UTC)


def test_field_time_zone_beats_the_setting(settings):
    settings.DJSYNC = {**settings.DJSYNC, "SOURCE_TIME_ZONE": "America/New_York"}
    value = member("seen", "2024-07-01 08:00:00", time_zone="Asia/Tokyo")
    assert value == dt.datetime(2024, 6, 30, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw",
    [
        "2024-01-31T13:45:00+00:00",
        "2024-01-31T13:45:00Z",
        "2024-01-31T14:45:00+01:00",
        dt.datetime(2024, 1, 31, 8, 45, tzinfo=ZoneInfo("America/New_York")),
    ],
)
def test_aware_datetime_keeps_its_offset(raw):
    assert member("seen", raw) == dt.datetime(2024, 1, 31, 13, 45, tzinfo=UTC)


def test_datetime_from_a_spreadsheet_cell_is_naive_and_read_in_the_zone():
    assert member("seen", dt.datetime(2024, 7, 1, 12, 0)) == dt.datetime(
        2024, 7, 1, 10, 0, tzinfo=UTC
    )


def test_datetime_formats():
    # Issue 9: "%d/%m/%Y %H:%M" is no longer a default; it is declared where a source uses it.
    with pytest.raises(ConversionError, match="expected a date and time"):
        member("seen", "31/01/2024 13:45")
    value = member("seen", "31/01/2024 13:45", datetime_formats=["%d/%m/%Y %H:%M"])
    assert value == dt.datetime(2024, 1, 31, 12, 45, tzinfo=UTC)
    both = ["%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M"]
    with pytest.raises(ConversionError, match="ambiguous date and time"):
        member("seen", "01/02/2024 13:45", datetime_formats=both)
    value = member("seen", "01/31/24 1:45 PM", datetime_formats=["%m/%d/%y %I:%M %p"])
    assert value == dt.datetime(2024, 1, 31, 12, 45, tzinfo=UTC)


def test_bad_datetime():
    with pytest.raises(ConversionError, match="expected a date and time"):
        member("seen", "noon")


def test_datetime_without_use_tz(settings):
    settings.USE_TZ = False
    assert member("seen", "2024-01-31 13:45:00") == dt.datetime(2024, 1, 31, 13, 45)
    # An aware value becomes naive in the source time zone.
    assert member("seen", "2024-01-31T12:45:00Z") == dt.datetime(2024, 1, 31, 13, 45)


# -- times -------------------------------------------------------------------------------
def test_times():
    assert member("alarm", "07:30") == dt.time(7, 30)
    assert member("alarm", dt.time(7, 30)) == dt.time(7, 30)
    with pytest.raises(ConversionError, match="expected a time"):
        member("alarm", "half past seven")


# -- booleans ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw", ["yes", "Yes", "Y", "true", "TRUE", "t", "1", "on", "x", 1, 1.0, True, " yes "]
)
def test_true_words(raw):
    assert member("vip", raw) is True


@pytest.mark.parametrize("raw", ["no", "N", "false", "False", "f", "0", "off", 0, 0.0, False])
def test_false_words(raw):
    assert member("vip", raw) is False


@pytest.mark.parametrize("raw", ["maybe", 2, "2"])
def test_other_words_are_not_booleans(raw):
    with pytest.raises(ConversionError, match="yes/no"):
        member("vip", raw)


def test_empty_boolean_cell_takes_the_model_default():
    assert member("vip", "") is False
    assert convert(Product, "active", "") is True


# -- choices -----------------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["gold", "GOLD", " Gold ", "Gold member", "gold MEMBER"])
def test_choices_by_value_or_label(raw):
    assert member("level", raw) == "gold"


def test_unknown_choice_names_the_allowed_values():
    with pytest.raises(
        ConversionError, match=r"'bronze' is not one of the choices \(gold, silver\)"
    ):
        member("level", "bronze")


# -- empty cells -------------------------------------------------------------------------
def test_empty_cells_become_none_or_empty_string_as_the_field_allows():
    assert member("note", "") is None  # null=True
    assert member("note", "   ") is None
    assert member("nickname", "") == ""  # blank=True, not null
    assert member("score", None) is None
    assert member("joined", "") is None
    assert member("token", "") is None
    assert member("level", "") == "silver"  # the model default


def test_empty_cell_in_a_required_field_is_an_error():
    with pytest.raises(ConversionError, match="a value is required"):
        member("name", "")


def test_field_default_fills_empty_cells():
    assert member("name", "", default="anonymous") == "anonymous"
    assert member("number", None, default=lambda: 7) == 7


# -- strings -----------------------------------------------------------------------------
def test_strings_are_stripped_and_spreadsheet_numbers_lose_their_point_zero():
    assert member("name", "  Ada  ") == "Ada"
    assert member("team", 12.0) == "12"
    assert member("team", 12.5) == "12.5"


def test_string_max_length():
    assert member("team", "x" * 10) == "x" * 10
    with pytest.raises(ConversionError, match="11 characters; the field allows at most 10"):
        member("team", "x" * 11)


# -- UUID and JSON -----------------------------------------------------------------------
def test_uuid():
    token = uuid.uuid4()
    assert member("token", str(token)) == token
    assert member("token", str(token).upper()) == token
    assert member("token", token) == token
    with pytest.raises(ConversionError, match="expected a UUID"):
        member("token", "not-a-uuid")


def test_json():
    assert member("extra", '{"a": [1, 2]}') == {"a": [1, 2]}
    assert member("extra", {"a": 1}) == {"a": 1}  # JSON sources hand over objects
    assert member("extra", [1, 2]) == [1, 2]
    with pytest.raises(ConversionError, match="expected JSON"):
        member("extra", "{a: 1}")


# -- custom converters -------------------------------------------------------------------
def test_custom_converter_replaces_the_type_based_one():
    assert member("name", "ada", converter=str.title) == "Ada"


def test_foreign_key_converts_with_the_related_fields_type():
    bound = Field("category_code", lookup="code").bind("category", Product)
    assert bound.is_relation
    assert bound.target_path == "category__code"
    assert bound.convert(" TOY ") == "TOY"
    assert bound.convert("") is None  # null=True


# -- what a converter refuses (issue 9: no bad value reaches the database) ---------------------
@pytest.mark.parametrize(
    "raw, message",
    [
        ("2147483648", r"out of range: IntegerField on \w+ holds"),
        ("1e1000000000", r"out of range"),
        ("NaN", "expected a whole number"),
        ("inf", "expected a whole number"),
        ([1], "expected a whole number, got a list"),
        ({"n": 1}, "expected a whole number, got a JSON object"),
        (b"12", "expected a whole number, got bytes"),
    ],
)
def test_integers_refuse_what_the_column_cannot_hold(raw, message, db):
    from django.db import connection

    if connection.vendor == "sqlite" and raw == "2147483648":
        assert convert(Product, "qty", raw) == 2147483648  # SQLite columns hold 64 bits
        return
    with pytest.raises(ConversionError, match=message):
        convert(Product, "qty", raw)


@pytest.mark.parametrize("raw", ["NaN", "nan", "inf", "-Infinity", "1e400", float("nan")])
def test_floats_are_finite(raw):
    with pytest.raises(ConversionError, match="expected a finite number"):
        member("score", raw)


def test_minus_zero_is_zero():
    assert convert(Product, "qty", "-0") == 0
    assert member("score", "-0") == 0.0


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"a": 1}, r"expected text, got a JSON object \{'a': 1\}"),
        (["a"], r"expected text, got a list \['a'\]"),
        (b"x", r"expected text, got bytes b'x'"),
        ("a\x00b", r"contains a NUL character"),
        ("\udc80", r"not valid Unicode"),
    ],
)
def test_text_refuses_nested_values_bytes_nul_and_surrogates(raw, message):
    with pytest.raises(ConversionError, match=message):
        member("name", raw)


@pytest.mark.parametrize("raw", ['{"a": NaN}', {"a": [float("inf")]}, {"k": "\x00"}, {"\x00": 1}])
def test_json_refuses_what_a_json_column_cannot_store(raw):
    with pytest.raises(ConversionError, match="not a JSON number|NUL character"):
        member("extra", raw)


def test_a_fields_own_validators_run_after_conversion():
    from django.db import models

    from djsync.mapping.converters import converter_for, model_validators, validating

    field = models.GenericIPAddressField()
    check = validating(converter_for(field), model_validators(field))
    assert check(" 10.0.0.1 ") == "10.0.0.1"
    with pytest.raises(ConversionError, match=r"'10.0.0.300': Enter a valid IPv4 or IPv6"):
        check("10.0.0.300")
    email = models.EmailField(max_length=50)
    assert [type(v).__name__ for v in model_validators(email)] == ["EmailValidator"]
    assert model_validators(models.CharField(max_length=5)) == []  # length: the converter's


def test_missing_cell_is_never_empty():
    from djsync.sources.base import MISSING

    with pytest.raises(ConversionError, match="the row has no cell for this column"):
        convert(Product, "qty", MISSING)  # qty has a default: still not used


def test_null_tokens_of_a_field():
    bound = Field(null_tokens=["NA", " - "]).bind("score", Member)
    assert bound.convert(" NA ") is None and bound.convert("-") is None
    assert bound.convert("1.5") == 1.5
    with pytest.raises(ConversionError, match="a value is required"):
        Field(null_tokens=["NA"]).bind("name", Member).convert("NA")

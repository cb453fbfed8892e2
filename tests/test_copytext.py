"""PostgreSQL's staging sends a cell to COPY as written only when its converter would take
it unchanged; every other cell is converted in Python (tests/test_differential.py checks
the whole run against the generic path)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection, models

from djsync.backends.copytext import verbatim


def bound(model_field: models.Field, **more: Any) -> Any:
    """The parts of a BoundField that decide whether a cell may go as written."""
    spec = SimpleNamespace(converter=more.pop("converter", None))
    values = {"is_relation": False, "validators": [], "null_tokens": frozenset()}
    values |= {"source_column": "c", **more}
    return SimpleNamespace(model_field=model_field, spec=spec, **values)


@pytest.mark.parametrize(
    ("cell", "as_written"),
    [
        ("12345678.99", True),
        ("-0.5", True),
        ("7", True),
        ("123456789", False),  # too large for 10 digits: the converter's error
        ("1.005", False),  # three places: the converter's error
        ("1e2", False),
        ("+5", False),
        (" 5", False),
        ("\u0663", False),  # an Arabic-Indic digit: Python reads it, PostgreSQL would not
    ],
)
def test_a_decimal_goes_as_written_only_when_plainly_in_range(cell, as_written):
    test = verbatim(bound(models.DecimalField(max_digits=10, decimal_places=2)), "default")
    assert test is not None
    assert bool(test(cell)) is as_written


def test_a_decimal_wider_than_python_decimals_is_always_converted():
    # Python's quantize() refuses 29 digits or more, where PostgreSQL would store them.
    wide = models.DecimalField(max_digits=40, decimal_places=2)
    assert verbatim(bound(wide), "default") is None


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's column ranges")
def test_whole_numbers_go_as_written_within_the_column_and_sign():
    test = verbatim(bound(models.SmallIntegerField()), "default")
    assert test is not None
    assert [bool(test(c)) for c in ("9999", "-9999", "10000", "1_0", "1.0")] == [
        True,
        True,
        False,
        False,
        False,
    ]
    positive = verbatim(bound(models.PositiveIntegerField()), "default")
    assert positive is not None and not positive("-1")


def test_cells_with_their_own_rules_are_always_converted():
    price = models.DecimalField(max_digits=10, decimal_places=2)
    assert verbatim(bound(price, converter=str), "default") is None
    assert verbatim(bound(price, null_tokens=frozenset({"NA"})), "default") is None
    assert verbatim(bound(price, validators=[print]), "default") is None
    assert verbatim(bound(models.IntegerField(choices=[(1, "one")])), "default") is None

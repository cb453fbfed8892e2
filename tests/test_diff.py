"""The pure differ, table-driven: SourceRow/TargetRow/RowError in, a Plan out, no database.

Every row of CASES is one case: the source rows (in order), the target rows in scope, the
switches, and what the plan must hold. ``expect`` lists only what is not empty; ``outcome``
fills in the rest, so a case fails on anything it did not expect.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal
from typing import Any

import pytest

from djsync.engine.diff import Plan, RowError, SourceRow, TargetRow, diff, same

PARIS = dt.timezone(dt.timedelta(hours=1))
NEW_YORK = dt.timezone(dt.timedelta(hours=-5))
NAN = float("nan")
DUP = "duplicate key {!r}: it appears more than once"


# -- building rows ---------------------------------------------------------------------------
def src(row: int, key: Any, **values: Any) -> SourceRow:
    """A source row; a key that is not a tuple is a one-field key."""
    return SourceRow(row=row, key=key if isinstance(key, tuple) else (key,), values=values)


def tgt(pk: Any, key: Any, **values: Any) -> tuple[tuple, TargetRow]:
    """A target row in scope, under its natural key."""
    return (key if isinstance(key, tuple) else (key,), TargetRow(pk=pk, values=values))


def bad(row: int | None, message: str, key: Any = None, column: str | None = None) -> RowError:
    """A row error from conversion; ``key`` None: the row had no readable key."""
    if key is not None and not isinstance(key, tuple):
        key = (key,)
    return RowError(row=row, message=message, column=column, key=key)


# -- reading a plan --------------------------------------------------------------------------
def outcome(plan: Plan) -> dict[str, Any]:
    """Everything a plan says, in plain tuples (keys of one field shown bare)."""

    def k(key: tuple) -> Any:
        return key[0] if len(key) == 1 else key

    return {
        "create": [(k(a.key), a.row, a.values) for a in plan.creates],
        "update": [(k(a.key), a.pk, a.row, a.old, a.new) for a in plan.updates],
        "delete": [(k(a.key), a.pk) for a in plan.deletes],
        "unchanged": plan.unchanged,
        "errors": [(e.row, e.column, e.message) for e in plan.errors],
        "warnings": plan.warnings,
        "error_rows": plan.counts["errors"],
        "rows_read": plan.rows_read,
    }


def expected(expect: dict[str, Any], source: list[Any]) -> dict[str, Any]:
    """``expect`` with what it leaves out: nothing planned, every source row read, and as
    many error rows as distinct rows among the errors."""
    errors = expect.get("errors", [])
    return {
        "create": [],
        "update": [],
        "delete": [],
        "unchanged": 0,
        "errors": errors,
        "warnings": [],
        "error_rows": len({row for row, _, _ in errors}),
        "rows_read": len(source),
        **expect,
    }


# -- the table -------------------------------------------------------------------------------
#: Each row: (source rows, target rows, diff() switches, expected plan), and an id.
CASES = [
    # actions
    pytest.param(
        [src(2, "A", name="Lamp")],
        [],
        {},
        {"create": [("A", 2, {"name": "Lamp"})]},
        id="create-a-new-key",
    ),
    pytest.param(
        [src(2, "A", name="Lamp", qty=2)],
        [tgt(1, "A", name="Lamp", qty=1)],
        {},
        {"update": [("A", 1, 2, {"qty": 1}, {"qty": 2})]},
        id="update-holds-only-the-changed-fields",
    ),
    pytest.param(
        [src(2, "A", name="Lamp", qty=1)],
        [tgt(1, "A", name="Lamp", qty=1)],
        {},
        {"unchanged": 1},
        id="unchanged",
    ),
    pytest.param(
        [src(2, "A", name="Lamp", colour="red")],
        [tgt(1, "A", name="Lamp")],
        {},
        {"unchanged": 1},
        id="a-source-field-the-target-row-lacks-is-not-compared",
    ),
    pytest.param(
        [src(2, "A")],
        [tgt(1, "A"), tgt(7, "B", name="x")],
        {"delete": True},
        {"unchanged": 1, "delete": [("B", 7)]},
        id="delete-a-key-missing-from-the-source",
    ),
    pytest.param(
        [src(2, "A")],
        [tgt(1, "A"), tgt(7, "B")],
        {},
        {"unchanged": 1},
        id="delete-is-off-by-default",
    ),
    pytest.param(
        [src(2, "C"), src(3, "A", qty=2), src(4, "B")],
        [tgt(1, "A", qty=1), tgt(2, "B"), tgt(3, "D")],
        {"delete": True},
        {
            "create": [("C", 2, {})],
            "update": [("A", 1, 3, {"qty": 1}, {"qty": 2})],
            "delete": [("D", 3)],
            "unchanged": 1,
        },
        id="every-action-at-once",
    ),
    # switches
    pytest.param(
        [src(2, "C"), src(3, "A", qty=2)],
        [tgt(1, "A", qty=1)],
        {"create": False},
        {"update": [("A", 1, 3, {"qty": 1}, {"qty": 2})]},
        id="create-off",
    ),
    pytest.param(
        [src(2, "C"), src(3, "A", qty=2)],
        [tgt(1, "A", qty=1)],
        {"update": False},
        {"create": [("C", 2, {})]},
        id="update-off-a-changed-row-is-not-unchanged-either",
    ),
    pytest.param(
        [src(2, "A")],
        [tgt(1, "A"), tgt(2, "D")],
        {"delete": False},
        {"unchanged": 1},
        id="delete-off",
    ),
    pytest.param(
        [src(2, "C"), src(3, "A", qty=2), src(4, "B")],
        [tgt(1, "A", qty=1), tgt(2, "B"), tgt(3, "D")],
        {"create": False, "update": False, "delete": False},
        {"unchanged": 1},
        id="every-switch-off",
    ),
    # duplicate keys
    pytest.param(
        [src(2, "A", qty=1), src(3, "A", qty=2)],
        [],
        {},
        {"errors": [(2, None, DUP.format("A")), (3, None, DUP.format("A"))]},
        id="duplicate-new-key-creates-nothing",
    ),
    pytest.param(
        [src(2, "A", qty=5), src(3, "B"), src(4, "A", qty=6), src(5, "A", qty=7)],
        [tgt(1, "A", qty=1)],
        {"delete": True},
        {
            "create": [("B", 3, {})],
            "errors": [
                (2, None, DUP.format("A")),
                (4, None, DUP.format("A")),
                (5, None, DUP.format("A")),
            ],
        },
        id="duplicate-key-thrice-the-target-row-is-neither-updated-nor-deleted",
    ),
    pytest.param(
        [src(2, "A", qty=1), src(3, "A", qty=1)],
        [tgt(1, "A", qty=1)],
        {},
        {"errors": [(2, None, DUP.format("A")), (3, None, DUP.format("A"))]},
        id="duplicate-of-an-unchanged-row-is-not-unchanged",
    ),
    pytest.param(
        [src(2, ("red", 1)), src(3, ("blue", 1)), src(4, ("red", 1))],
        [],
        {},
        {
            "create": [(("blue", 1), 3, {})],
            "errors": [(2, None, DUP.format(("red", 1))), (4, None, DUP.format(("red", 1)))],
        },
        id="duplicate-composite-key-is-named-as-a-tuple",
    ),
    # row errors
    pytest.param(
        [bad(2, "expected a number, got 'x'", key="A", column="qty"), src(3, "B")],
        [tgt(1, "A"), tgt(2, "B")],
        {"delete": True},
        {"unchanged": 1, "errors": [(2, "qty", "expected a number, got 'x'")]},
        id="a-bad-row-with-a-key-keeps-its-target-row",
    ),
    pytest.param(
        [bad(2, "expected a number, got 'x'", key="A", column="qty"), src(3, "A", qty=2)],
        [],
        {},
        {"errors": [(2, "qty", "expected a number, got 'x'"), (3, None, DUP.format("A"))]},
        id="a-bad-row-then-a-good-row-under-one-key-creates-nothing",
    ),
    pytest.param(
        [src(2, "A", qty=2), bad(3, "expected a number, got 'x'", key="A", column="qty")],
        [tgt(1, "A", qty=1)],
        {},
        {"errors": [(2, None, DUP.format("A")), (3, "qty", "expected a number, got 'x'")]},
        id="a-good-row-then-a-bad-row-under-one-key-updates-nothing",
    ),
    pytest.param(
        [src(2, "A"), bad(3, "a value is required", column="sku")],
        [tgt(1, "A"), tgt(2, "B")],
        {"delete": True},
        {
            "unchanged": 1,
            "errors": [(3, "sku", "a value is required")],
            "warnings": [
                "1 target row is missing from the source, but some bad rows have no "
                "readable key, so nothing is deleted"
            ],
        },
        id="a-bad-row-without-a-key-blocks-every-delete",
    ),
    pytest.param(
        [src(2, "A"), bad(3, "a value is required", column="sku")],
        [tgt(1, "A")],
        {"delete": True},
        {"unchanged": 1, "errors": [(3, "sku", "a value is required")]},
        id="a-bad-row-without-a-key-and-nothing-to-delete-no-warning",
    ),
    pytest.param(
        [
            bad(2, "expected a number, got 'x'", key="A", column="qty"),
            bad(2, "expected yes/no, got 'y'", key="A", column="active"),
            bad(4, "rows with SKU BAD are refused"),
            src(5, "B"),
        ],
        [],
        {},
        {
            "create": [("B", 5, {})],
            "errors": [
                (2, "qty", "expected a number, got 'x'"),
                (2, "active", "expected yes/no, got 'y'"),
                (4, None, "rows with SKU BAD are refused"),
            ],
        },
        id="row-errors-pass-through-in-order-two-cells-of-one-row-count-once",
    ),
    pytest.param(
        [src(5, "A"), bad(3, "refused", key="C"), src(2, "B"), src(4, "A")],
        [],
        {},
        {
            "create": [("B", 2, {})],
            "errors": [
                (3, None, "refused"),
                (4, None, DUP.format("A")),
                (5, None, DUP.format("A")),
            ],
        },
        id="with-duplicates-errors-come-out-in-row-order",
    ),
    # empty values
    pytest.param(
        [src(2, "A", note=None)],
        [tgt(1, "A", note="")],
        {},
        {"update": [("A", 1, 2, {"note": ""}, {"note": None})]},
        id="none-is-not-empty-text",
    ),
    pytest.param(
        [src(2, "A", note="")],
        [tgt(1, "A", note=None)],
        {},
        {"update": [("A", 1, 2, {"note": None}, {"note": ""})]},
        id="empty-text-is-not-none",
    ),
    pytest.param(
        [src(2, "A", qty=None)],
        [tgt(1, "A", qty=0)],
        {},
        {"update": [("A", 1, 2, {"qty": 0}, {"qty": None})]},
        id="none-is-not-zero",
    ),
    pytest.param(
        [src(2, "A", qty=0)],
        [tgt(1, "A", qty="")],
        {},
        {"update": [("A", 1, 2, {"qty": ""}, {"qty": 0})]},
        id="zero-is-not-empty-text",
    ),
    pytest.param(
        [src(2, "A", note=None, qty=0)],
        [tgt(1, "A", note=None, qty=0)],
        {},
        {"unchanged": 1},
        id="none-equals-none-and-zero-equals-zero",
    ),
    pytest.param(
        [src(2, "A", active=False)],
        [tgt(1, "A", active=0)],
        {},
        {"unchanged": 1},
        id="false-equals-zero-python-equality-one-type-per-field-from-the-converters",
    ),
    # decimals
    pytest.param(
        [src(2, "A", price=Decimal("1.50"))],
        [tgt(1, "A", price=Decimal("1.5"))],
        {},
        {"unchanged": 1},
        id="decimal-scale-does-not-matter-1.5-1.50",
    ),
    pytest.param(
        [src(2, "A", price=Decimal("0E-8"))],
        [tgt(1, "A", price=Decimal("0"))],
        {},
        {"unchanged": 1},
        id="decimal-zero-at-any-scale",
    ),
    pytest.param(
        [src(2, "A", price=Decimal("1.51"))],
        [tgt(1, "A", price=Decimal("1.50"))],
        {},
        {"update": [("A", 1, 2, {"price": Decimal("1.50")}, {"price": Decimal("1.51")})]},
        id="decimal-value-does",
    ),
    pytest.param(
        [src(2, "A", price=Decimal("0.1"))],
        [tgt(1, "A", price=0.1)],
        {},
        {"update": [("A", 1, 2, {"price": 0.1}, {"price": Decimal("0.1")})]},
        id="decimal-0.1-is-not-the-float-0.1",
    ),
    # floats
    pytest.param(
        [src(2, "A", score=0.1 + 0.2)],
        [tgt(1, "A", score=0.3)],
        {},
        {"update": [("A", 1, 2, {"score": 0.3}, {"score": 0.1 + 0.2})]},
        id="floats-compare-exactly-no-tolerance",
    ),
    pytest.param(
        [src(2, "A", score=NAN)],
        [tgt(1, "A", score=float("nan"))],
        {},
        {"unchanged": 1},
        id="nan-equals-nan-never-an-endless-update",
    ),
    pytest.param(
        [src(2, "A", score=NAN)],
        [tgt(1, "A", score=1.0)],
        {},
        {"update": [("A", 1, 2, {"score": 1.0}, {"score": NAN})]},
        id="nan-is-not-a-number",
    ),
    pytest.param(
        [src(2, "A", score=-0.0, big=math.inf)],
        [tgt(1, "A", score=0.0, big=math.inf)],
        {},
        {"unchanged": 1},
        id="minus-zero-equals-zero-and-inf-equals-inf",
    ),
    # datetimes
    pytest.param(
        [src(2, "A", seen=dt.datetime(2024, 3, 31, 1, 30, tzinfo=PARIS))],
        [tgt(1, "A", seen=dt.datetime(2024, 3, 31, 0, 30, tzinfo=dt.UTC))],
        {},
        {"unchanged": 1},
        id="the-same-instant-in-two-time-zones",
    ),
    pytest.param(
        [src(2, "A", seen=dt.datetime(2024, 3, 30, 19, 30, tzinfo=NEW_YORK))],
        [tgt(1, "A", seen=dt.datetime(2024, 3, 31, 1, 30, tzinfo=PARIS))],
        {},
        {"unchanged": 1},
        id="the-same-instant-on-either-side-of-a-date-line",
    ),
    pytest.param(
        [src(2, "A", seen=dt.datetime(2024, 3, 31, 1, 30, tzinfo=PARIS))],
        [tgt(1, "A", seen=dt.datetime(2024, 3, 31, 1, 30, tzinfo=dt.UTC))],
        {},
        {
            "update": [
                (
                    "A",
                    1,
                    2,
                    {"seen": dt.datetime(2024, 3, 31, 1, 30, tzinfo=dt.UTC)},
                    {"seen": dt.datetime(2024, 3, 31, 1, 30, tzinfo=PARIS)},
                )
            ]
        },
        id="the-same-wall-clock-in-two-zones-is-another-instant",
    ),
    pytest.param(
        [src(2, "A", seen=dt.datetime(2024, 1, 1, 12, 0, 0, 1, tzinfo=dt.UTC))],
        [tgt(1, "A", seen=dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.UTC))],
        {},
        {
            "update": [
                (
                    "A",
                    1,
                    2,
                    {"seen": dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.UTC)},
                    {"seen": dt.datetime(2024, 1, 1, 12, 0, 0, 1, tzinfo=dt.UTC)},
                )
            ]
        },
        id="a-microsecond-is-a-change",
    ),
    pytest.param(
        [src(2, "A", seen=dt.datetime(2024, 1, 1, 12, 0))],
        [tgt(1, "A", seen=dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.UTC))],
        {},
        {
            "update": [
                (
                    "A",
                    1,
                    2,
                    {"seen": dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.UTC)},
                    {"seen": dt.datetime(2024, 1, 1, 12, 0)},
                )
            ]
        },
        id="naive-is-never-equal-to-aware",
    ),
    pytest.param(
        [src(2, "A", day=dt.date(2024, 1, 1), alarm=dt.time(7, 30))],
        [tgt(1, "A", day=dt.date(2024, 1, 1), alarm=dt.time(7, 30, 0))],
        {},
        {"unchanged": 1},
        id="dates-and-times",
    ),
    # JSON values
    pytest.param(
        [src(2, "A", extra={"b": {"y": 1, "x": 2}, "a": [1, 2.5, None]})],
        [tgt(1, "A", extra={"a": [1, 2.5, None], "b": {"x": 2, "y": 1}})],
        {},
        {"unchanged": 1},
        id="json-object-key-order-does-not-matter",
    ),
    pytest.param(
        [src(2, "A", extra=[2, 1])],
        [tgt(1, "A", extra=[1, 2])],
        {},
        {"update": [("A", 1, 2, {"extra": [1, 2]}, {"extra": [2, 1]})]},
        id="json-list-order-does",
    ),
    pytest.param(
        [src(2, "A", extra={"n": 1.0})],
        [tgt(1, "A", extra={"n": 1})],
        {},
        {"unchanged": 1},
        id="json-1.0-equals-1",
    ),
    pytest.param(
        [src(2, "A", extra={})],
        [tgt(1, "A", extra=None)],
        {},
        {"update": [("A", 1, 2, {"extra": None}, {"extra": {}})]},
        id="json-empty-object-is-not-null",
    ),
    pytest.param(
        [src(2, "A", extra="1")],
        [tgt(1, "A", extra=1)],
        {},
        {"update": [("A", 1, 2, {"extra": 1}, {"extra": "1"})]},
        id="json-text-1-is-not-number-1",
    ),
    # other types
    pytest.param(
        [src(2, "A", token=uuid.UUID(int=7))],
        [tgt(1, "A", token=uuid.UUID(int=7))],
        {},
        {"unchanged": 1},
        id="uuid",
    ),
    pytest.param(
        [src(2, "A", token=str(uuid.UUID(int=7)))],
        [tgt(1, "A", token=uuid.UUID(int=7))],
        {},
        {"update": [("A", 1, 2, {"token": uuid.UUID(int=7)}, {"token": str(uuid.UUID(int=7))})]},
        id="uuid-text-is-not-a-uuid-the-converter-makes-one",
    ),
    # keys of several fields
    pytest.param(
        [src(2, ("red", 1), name="Ann"), src(3, ("red", 2), name="Bob")],
        [tgt(1, ("red", 1), name="Ann"), tgt(2, ("blue", 1), name="Cy")],
        {"delete": True},
        {
            "create": [(("red", 2), 3, {"name": "Bob"})],
            "delete": [(("blue", 1), 2)],
            "unchanged": 1,
        },
        id="composite-key",
    ),
    pytest.param(
        [src(2, ("red", "1"))],
        [tgt(1, ("red", 1))],
        {"delete": True},
        {"create": [(("red", "1"), 2, {})], "delete": [(("red", 1), 1)]},
        id="composite-key-text-1-is-not-number-1",
    ),
    pytest.param(
        [src(2, ("a", "b", "c")), src(3, ("a", "b", "d"))],
        [tgt(1, ("a", "b", "c")), tgt(2, ("a", "b", "e"))],
        {"delete": True},
        {"create": [(("a", "b", "d"), 3, {})], "delete": [(("a", "b", "e"), 2)], "unchanged": 1},
        id="three-field-key",
    ),
    pytest.param(
        [src(2, ("red", None)), src(3, ("red", None))],
        [],
        {},
        {
            "errors": [
                (2, None, DUP.format(("red", None))),
                (3, None, DUP.format(("red", None))),
            ]
        },
        id="composite-key-with-a-null-part-is-still-one-key",
    ),
    # empty sides
    pytest.param([], [], {"delete": True}, {}, id="nothing-and-nothing"),
    pytest.param(
        [],
        [tgt(1, "A"), tgt(2, "B")],
        {"delete": True},
        {"delete": [("A", 1), ("B", 2)]},
        id="an-empty-source-deletes-everything-the-guard-is-not-the-differs-job",
    ),
]


@pytest.mark.parametrize("source, target, switches, expect", CASES)
def test_diff(source: list[Any], target: list[tuple], switches: dict, expect: dict) -> None:
    target_rows = dict(target)
    plan = diff(iter(source), target_rows, model="app.Thing", **switches)
    assert outcome(plan) == expected(expect, source)
    assert plan.rows_in_scope == len(target_rows)
    assert plan.total == len(plan.creates) + len(plan.updates) + len(plan.deletes)
    assert plan.counts == {
        "created": len(plan.creates),
        "updated": len(plan.updates),
        "deleted": len(plan.deletes),
        "unchanged": plan.unchanged,
        "errors": plan.error_rows,
    }


def test_diff_leaves_its_inputs_alone() -> None:
    target = dict([tgt(1, "A", qty=1), tgt(2, "B")])
    source = [src(2, "A", qty=2)]
    diff(source, target, model="app.Thing", delete=True)
    assert list(target) == [("A",), ("B",)]
    assert source[0].values == {"qty": 2}


@pytest.mark.parametrize(
    "a, b, equal",
    [
        (1, 1, True),
        (1, 2, False),
        (NAN, NAN, True),
        (NAN, 0.0, False),
        (None, None, True),
        (None, "", False),
        (Decimal("1.5"), Decimal("1.50"), True),
        (Decimal("NaN"), Decimal("NaN"), True),
        # NaN inside a value compares as Python does (the JSON converter refuses NaN).
        ({"a": float("nan")}, {"a": float("nan")}, False),
    ],
    ids=[
        "equal",
        "different",
        "nan-nan",
        "nan-zero",
        "none-none",
        "none-empty",
        "decimal-scale",
        "decimal-nan",
        "nan-inside-json-is-not-same",
    ],
)
def test_same(a: Any, b: Any, equal: bool) -> None:
    assert same(a, b) is equal

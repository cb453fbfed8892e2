"""Hostile values (issue 9, part 3): no bad value reaches the database, no missing value
becomes a default.

Each value goes through real runs — from a CSV file, a JSON file, typed records and
positional cells (the compiled converter), on the staged (fast) path and the generic path,
failing and skipping — and must end as a row error naming row, column and value, with
nothing written (fail) or only the good row written (skip), the run recorded with its row
errors stored, on PostgreSQL and SQLite alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import override_settings

import djsync
from djsync.engine.diff import storable
from djsync.exceptions import RowErrorsFound
from djsync.models import SyncRun
from djsync.sources.base import MISSING, Source
from tests.testapp.models import Gauge

COLUMNS = [f.name for f in Gauge._meta.concrete_fields if f.name != "id"]


@djsync.register
class GaugeImporter(djsync.Importer):
    class Meta:
        name = "hostile_gauges"
        model = Gauge
        keys = ["code"]
        fields = "__all__"


@djsync.register
class AmbiguousDateGaugeImporter(GaugeImporter):
    """A project that declares day-first and month-first dates."""

    class Meta(GaugeImporter.Meta):
        name = "hostile_gauges_dates"
        date_formats = ["%d/%m/%Y", "%m/%d/%Y"]


@djsync.register
class NullTokenGaugeImporter(GaugeImporter):
    """ "NA" and "\\N" are empty cells, except in ``label`` where "NA" is a value."""

    label = djsync.Field(null_tokens=())

    class Meta(GaugeImporter.Meta):
        name = "hostile_gauges_tokens"
        null_tokens = ["NA", "\\N", "n/a"]


@djsync.register
class CustomConverterGaugeImporter(GaugeImporter):
    """Custom converters whose results the column would refuse."""

    medium = djsync.Field(converter=lambda v: int(v) * 1000)
    ratio = djsync.Field(converter=float)
    label = djsync.Field(converter=lambda v: str(v) * 2)

    class Meta(GaugeImporter.Meta):
        name = "hostile_gauges_custom"


@djsync.register
class ShortGaugeImporter(GaugeImporter):
    class Meta(GaugeImporter.Meta):
        name = "hostile_gauges_short"
        fields = ["code", "medium", "active"]


def blank(code: str, cells: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    return {**dict.fromkeys(COLUMNS, ""), "code": code, **(cells or {}), **more}


class Records(Source):
    """Typed records, as a JSON feed or an HTTP source yields them (``read()`` only)."""

    name = "records"
    first_row = 2

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records

    def read(self) -> Iterator[dict[str, Any]]:
        self.columns = list(self.records[0])
        yield from (dict(r) for r in self.records)


class Cells(Records):
    """Positional cells (``read_rows()``), as a CSV file yields them: the compiled path."""

    name = "cells"

    def read_rows(self) -> Iterator[list[Any]]:
        self.columns = list(self.records[0])
        yield from ([r[c] for c in self.columns] for r in self.records)


# -- the cases -------------------------------------------------------------------------------
NA = object()  # a value one kind of source cannot carry


@dataclass
class Case:
    id: str
    column: str
    text: Any  # the CSV cell (NA: none); also what typed sources get unless ``typed`` is set
    message: str  # a regular expression the row error's message matches
    typed: Any = NA  # the value a JSON file and typed records carry instead of ``text``
    importer: str = "hostile_gauges"
    json_file: bool = True  # False: a JSON file cannot carry ``typed`` (NaN, bytes)
    #: False: the file source refuses the whole file before any value is converted (a NUL
    #: byte is no CSV text; tests/test_hostile_files.py), so cells carry it instead.
    csv_file: bool = True

    def in_file(self, kind: str) -> bool:
        """Whether a file of ``kind`` can carry this value to the converters."""
        if kind == "csv":
            return self.csv_file
        typed = self.for_records()
        # ijson's C backend refuses integers beyond 64 bits as a malformed file.
        return self.json_file and not (isinstance(typed, int) and abs(typed) >= 2**63)

    def for_csv(self) -> Any:
        return self.text

    def for_records(self) -> Any:
        return self.text if self.typed is NA else self.typed


def _range_cases() -> list[Case]:
    cases = []
    for column, internal in [
        ("small", "SmallIntegerField"),
        ("medium", "IntegerField"),
        ("big", "BigIntegerField"),
        ("psmall", "PositiveSmallIntegerField"),
        ("positive", "PositiveIntegerField"),
        ("pbig", "PositiveBigIntegerField"),
    ]:
        low, high = connection.ops.integer_field_range(internal)
        for side, number in (("above", high + 1), ("below", low - 1)):
            cases.append(
                Case(
                    f"{column}-{side}",
                    column,
                    str(number),
                    rf"^'?{number}'? is out of range: {internal} on {connection.vendor} "
                    rf"holds {low:,} to {high:,}$",
                    typed=number,
                )
            )
    return cases


CASES = [
    *_range_cases(),
    Case("float-1e400", "ratio", "1e400", r"^expected a finite number, got '1e400'$"),
    Case("float-NaN", "ratio", "NaN", r"^expected a finite number, got 'NaN'$"),
    Case("float-Infinity", "ratio", "Infinity", r"^expected a finite number, got 'Infinity'$"),
    Case(
        "float-nan-typed",
        "ratio",
        "nan",
        r"^expected a finite number, got (nan|'nan')$",
        typed=float("nan"),
        json_file=False,
    ),
    Case(
        "decimal-inf",
        "amount",
        "-inf",
        r"^expected a finite decimal number, got ('-inf'|-inf)$",
        typed=float("-inf"),
        json_file=False,
    ),
    Case("int-NaN", "medium", "NaN", r"^expected a whole number, got 'NaN'$"),
    Case("int-inf", "big", "inf", r"^expected a whole number, got 'inf'$"),
    Case(
        "int-1e400",
        "medium",
        "1e400",
        r"^'1e400' is out of range: IntegerField on \w+ holds",
    ),
    Case(
        "int-1e1000000000",
        "big",
        "1e1000000000",
        r"^'1e1000000000' is out of range: BigIntegerField on \w+ holds",
    ),
    Case("int-fraction", "medium", "2.5", r"^expected a whole number, got '?2.5'?$", typed=2.5),
    Case(
        "decimal-places",
        "amount",
        "12.345",
        r"^'12.345' has 3 decimal places; the field allows 2$",
    ),
    Case("decimal-digits", "amount", "12345.6", r"^'12345.6' is too large for 6 digits$"),
    Case(
        "nul-in-text",
        "text",
        "a\x00b",
        r"^'a\\x00b' contains a NUL character \(\\x00\)$",
        csv_file=False,
    ),
    Case(
        "nul-in-label",
        "label",
        "\x00",
        r"^'\\x00' contains a NUL character \(\\x00\)$",
        csv_file=False,
    ),
    Case(
        "nul-in-key",
        "code",
        "K\x00",
        r"^'K\\x00' contains a NUL character \(\\x00\)$",
        csv_file=False,
    ),
    Case(
        "surrogate",
        "label",
        NA,
        r"^'\\udc80' is not valid Unicode \(a lone surrogate\)$",
        typed="\udc80",
        json_file=False,  # the JSON file source refuses the whole file
    ),
    Case("too-long", "label", "x" * 31, r"^31 characters; the field allows at most 30$"),
    Case("email", "email", "not-an-email", r"^'not-an-email': Enter a valid email address\.$"),
    Case("url", "url", "javascript:alert(1)", r"^'javascript:alert\(1\)': Enter a valid URL\.$"),
    Case("slug", "slug", "no spaces!", r"^'no spaces!': Enter a valid .slug."),
    Case("custom-validator", "even", "3", r"^'?3'?: 3 is not an even number$", typed=3),
    Case("iso-only-date", "day", "31/01/2024", r"^expected a date \(e.g. 2024-01-31\), got '31/"),
    Case(
        "ambiguous-date",
        "day",
        "01/02/2024",
        r"^ambiguous date '01/02/2024': it reads as 2024-02-01 00:00:00 \(%d/%m/%Y\) or "
        r"2024-01-02 00:00:00 \(%m/%d/%Y\)$",
        importer="hostile_gauges_dates",
    ),
    Case(
        "object-into-text",
        "label",
        NA,
        r"^expected text, got a JSON object \{'a': 1\}$",
        typed={"a": 1},
    ),
    Case(
        "list-into-int",
        "medium",
        NA,
        r"^expected a whole number, got a list \[1, 2\]$",
        typed=[1, 2],
    ),
    Case(
        "object-into-date",
        "day",
        NA,
        r"^expected a date, got a JSON object \{'y': 2024\}$",
        typed={"y": 2024},
    ),
    Case("bool-into-int", "medium", NA, r"^expected a whole number, got True$", typed=True),
    Case("bool-into-decimal", "amount", NA, r"^expected a decimal number, got False$", typed=False),
    Case("bool-into-float", "ratio", NA, r"^expected a number, got True$", typed=True),
    Case(
        "bytes-into-text",
        "label",
        NA,
        r"^expected text, got bytes b'\\x00\\xff'$",
        typed=b"\x00\xff",
        json_file=False,
    ),
    Case("json-NaN", "data", '{"a": NaN}', r"^nan is not a JSON number \(NaN or infinite\)$"),
    Case(
        "json-nan-typed",
        "data",
        NA,
        r"^nan is not a JSON number \(NaN or infinite\)$",
        typed={"a": [float("nan")]},
        json_file=False,
    ),
    Case(
        "json-nul",
        "data",
        '{"a": "x\\u0000"}',
        r"^'[xa]\\x00' contains a NUL character \(\\x00\)$",
        typed={"a\x00": 1},
    ),
    Case(
        "custom-converter-overflow",
        "medium",
        "9999999999999999",
        r"^9999999999999999000 is out of range: IntegerField on \w+ holds",
        importer="hostile_gauges_custom",
    ),
    Case(
        "custom-converter-nan",
        "ratio",
        "nan",
        r"^expected a finite number, got nan$",
        importer="hostile_gauges_custom",
    ),
    Case(
        "custom-converter-too-long",
        "label",
        "x" * 20,
        r"^40 characters; the field allows at most 30$",
        importer="hostile_gauges_custom",
    ),
    Case(
        "huge-value-cut-in-message",
        "label",
        "y" * 100_000,
        r"^100000 characters; the field allows at most 30$",
    ),
]


def _expected_value(raw: Any) -> str:
    """What the stored row error shows as the bad value."""
    return str(storable(raw))


def _source(kind: str, case: Case, good: dict, bad: dict, write_csv, write_json) -> dict:
    if kind == "csv":
        return {"file": write_csv([good, bad])}
    if kind == "json":
        return {"file": write_json([good, bad])}
    return {"source": (Records if kind == "records" else Cells)([good, bad])}


def _run(job, **how) -> SyncRun:
    try:
        done = djsync.run(job, **how)
    except RowErrorsFound as exc:
        done = exc.run  # type: ignore[attr-defined]
    return SyncRun.objects.get(pk=done.pk)


KINDS = ["csv", "json", "records", "cells"]


def test_the_staged_path_serves_these_importers(db):
    """So that the "fast" runs below do take the staged path of their database."""
    from djsync.backends.postgresql import unsupported as pg_unsupported
    from djsync.backends.sqlite import unsupported as sqlite_unsupported
    from djsync.mapping.registry import get_importer_class

    unsupported = pg_unsupported if connection.vendor == "postgresql" else sqlite_unsupported
    names = ["hostile_gauges", "hostile_gauges_dates", "hostile_gauges_short"]
    for name in [*names, "hostile_gauges_custom", "hostile_gauges_tokens"]:
        assert unsupported(get_importer_class(name)()) is None, name


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
def test_a_hostile_value_is_a_row_error_naming_row_column_and_value(
    case, fast, make_job, write_csv, write_json, tmp_path
):
    strict = make_job(case.importer, name="strict")
    lenient = make_job(case.importer, name="lenient", on_row_error="skip")
    Gauge.objects.create(code="KEEP", medium=2)
    for kind in KINDS:
        raw = case.for_csv() if kind in ("csv", "cells") else case.for_records()
        if raw is NA or (kind in ("csv", "json") and not case.in_file(kind)):
            continue
        good = blank("OK1", medium="4" if kind in ("csv", "cells") else 4)
        bad = blank("BAD", {case.column: raw})
        if kind in ("json", "records"):  # typed sources: empty cells are nulls
            good = {k: (None if v == "" else v) for k, v in good.items()}
            bad = {k: (None if v == "" and k != case.column else v) for k, v in bad.items()}
        row = 2 if kind == "json" else 3
        for job in (strict, lenient):
            how = _source(kind, case, good, bad, write_csv, write_json)
            with override_settings(DJSYNC={**django_settings.DJSYNC, "FAST_PATH": fast}):
                run = _run(job, **how)
            label = f"{kind}, {job.name}"
            errors = list(run.row_errors.all())
            assert len(errors) == 1, label
            error = errors[0]
            assert (error.row, error.column) == (row, case.column), label
            assert re.search(case.message, error.message), (label, error.message)
            assert error.value == _expected_value(raw), label
            assert error.raw["code"] == ("BAD" if case.column != "code" else _expected_value(raw))
            codes = set(Gauge.objects.values_list("code", flat=True))
            if job is strict:
                assert run.status == "failed" and "nothing written" in run.error, label
                assert codes == {"KEEP"}, label
            else:
                assert run.status == "succeeded", label
                assert run.counts["errors"] == 1, label
                assert codes == {"KEEP", "OK1"}, label
                Gauge.objects.filter(code="OK1").delete()
    assert Gauge.objects.get(code="KEEP").medium == 2


# -- short rows: a missing cell is a row error, never the field's default -------------------
def _short_rows() -> list[dict[str, Any]]:
    return [
        {"code": "S1", "medium": "4", "active": "no"},
        {"code": "S2", "medium": "6", "active": MISSING},  # the last cell is missing
        {"code": "S3", "medium": MISSING, "active": MISSING},
    ]


@pytest.mark.parametrize("kind", ["records", "cells"])
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
def test_a_short_row_is_a_row_error_not_the_default(kind, fast, make_job):
    Gauge.objects.create(code="S2", medium=6, active=False)
    job = make_job("hostile_gauges_short", on_row_error="skip")
    source = (Records if kind == "records" else Cells)(_short_rows())
    with override_settings(DJSYNC={**django_settings.DJSYNC, "FAST_PATH": fast}):
        run = _run(job, source=source)
    errors = [(e.row, e.column, e.message) for e in run.row_errors.all()]
    assert errors == [
        (3, "active", "the row has 2 cells, the header has 3: column 'active' is missing"),
        (4, "medium", "the row has 1 cell, the header has 3: column 'medium' is missing"),
        (4, "active", "the row has 1 cell, the header has 3: column 'active' is missing"),
    ]
    assert run.status == "succeeded"
    # S2 keeps active=False: the missing cell did not become the field's default (True).
    assert Gauge.objects.get(code="S2").active is False
    assert sorted(Gauge.objects.values_list("code", flat=True)) == ["S1", "S2"]
    stored = run.row_errors.first()
    assert stored.raw == {"code": "S2", "medium": "6", "active": "<missing cell>"}


def _csv_pads_short_rows(tmp_path) -> bool:
    from djsync.sources import FileSource

    path = tmp_path / "probe.csv"
    path.write_text("a,b\n1\n", encoding="utf-8")
    return list(FileSource(str(path)).read())[0].get("b") is MISSING


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
def test_a_short_csv_row_is_a_row_error(fast, make_job, tmp_path):
    if not _csv_pads_short_rows(tmp_path):
        pytest.skip("the file source does not mark missing cells with MISSING yet")
    Gauge.objects.create(code="S2", medium=6, active=False)
    path = tmp_path / "short.csv"
    path.write_text("code,medium,active\nS1,4,no\nS2,6\n", encoding="utf-8")
    job = make_job("hostile_gauges_short")
    with override_settings(DJSYNC={**django_settings.DJSYNC, "FAST_PATH": fast}):
        run = _run(job, file=path)
    assert run.status == "failed" and "nothing written" in run.error
    assert "row 3, column 'active': the row has 2 cells, the header has 3" in run.error
    assert Gauge.objects.get(code="S2").active is False
    assert not Gauge.objects.filter(code="S1").exists()


# -- "-0" is zero ----------------------------------------------------------------------------
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
def test_minus_zero_is_zero(fast, make_job, write_csv):
    job = make_job("hostile_gauges")
    path = write_csv([blank("Z", positive="-0", ratio="-0", amount="-0", pbig="-0.0")])
    with override_settings(DJSYNC={**django_settings.DJSYNC, "FAST_PATH": fast}):
        run = _run(job, file=path)
    assert run.status == "succeeded"
    gauge = Gauge.objects.get(code="Z")
    assert (gauge.positive, gauge.ratio, gauge.amount, gauge.pbig) == (0, 0.0, 0, 0)


# -- null tokens keep the fast path and give its result on both paths ----------------------
class TokenRecords(Records):
    """A source whose job options say that "-" is an empty cell too."""

    null_tokens = ["-"]


def test_null_tokens_same_result_on_the_fast_and_the_generic_path(make_job, write_csv):
    from djsync.backends.postgresql import unsupported as pg_unsupported
    from djsync.backends.sqlite import unsupported as sqlite_unsupported
    from djsync.mapping.registry import get_importer_class
    from tests.test_differential import run_outcome, target_rows

    importer = get_importer_class("hostile_gauges_tokens")()
    unsupported = pg_unsupported if connection.vendor == "postgresql" else sqlite_unsupported
    assert unsupported(importer) is None  # null tokens do not turn the staged path off
    job = make_job("hostile_gauges_tokens", on_row_error="skip")
    rows = [
        blank("T1", medium="NA", day="\\N", label="NA", email=" n/a ", amount="1.5"),
        blank("T2", medium=" NA ", positive="\\N", text="NA", data="NA"),
        blank("NA", medium="1"),  # the key is a null token: an empty key
        blank("T3", medium="7", label="ok"),
    ]
    first = write_csv(rows, name="1.csv")
    again = write_csv([*rows[:2], blank("T3", medium="NA", label="NA")], name="2.csv")
    records = [{k: v for k, v in blank("T4", medium="-", day="NA").items()}]

    results = {}
    for fast in (False, True):
        with override_settings(DJSYNC={**django_settings.DJSYNC, "FAST_PATH": fast}):
            Gauge.objects.all().delete()
            SyncRun.objects.all().delete()
            outcomes = [run_outcome(job, first)[0], run_outcome(job, again)[0]]
            run = _run(job, source=TokenRecords(records))
            outcomes.append(run.counts)
            results[fast] = (outcomes, target_rows(Gauge))
    assert results[True] == results[False]
    outcomes, rows = results[False]
    by_code = {r["code"]: r for r in rows}
    t1, t2, t3 = by_code["T1"], by_code["T2"], by_code["T3"]
    assert (t1["medium"], t1["day"], t1["label"], t1["email"]) == (None, None, "NA", "")
    assert (t2["medium"], t2["positive"], t2["text"], t2["data"]) == (None, None, "", None)
    assert (t3["medium"], t3["label"]) == (None, "NA")  # updated: 7 → empty, "ok" → "NA"
    assert by_code["T4"]["medium"] is None and by_code["T4"]["day"] is None
    assert outcomes[0]["row_errors"] == [(4, "code", "a value is required", None, "NA")]
    assert outcomes[1]["counts"]["updated"] == 1


# -- a row error's own values are storable ---------------------------------------------------
def _junk() -> dict[str, Any]:
    import datetime as dt

    return {
        "nan": float("nan"),
        "inf": float("-inf"),
        "nul": "a\x00b",
        "bytes": b"\x00\xff" * 10,
        "deep": {"x": [1, {"y": float("inf"), "z": "\x00"}]},
        "huge": "h" * 50_000,
        "bigint": 10**100,
        "when": dt.datetime(2024, 1, 31, 13, 45, tzinfo=dt.UTC),
        "clock": dt.time(7, 30, tzinfo=dt.UTC),
        "surrogate": "\udc80",
        "missing": MISSING,
        "decimal_nan": Decimal("NaN"),
        "x" * 300: "a very long column name",
    }


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
def test_a_row_error_holding_hostile_values_is_stored(fast, make_job):
    job = make_job("hostile_gauges", on_row_error="skip")
    bad = {**blank("BAD", medium="NaN"), **_junk()}
    good = {**blank("OK"), **dict.fromkeys(_junk(), "")}
    with override_settings(DJSYNC={**django_settings.DJSYNC, "FAST_PATH": fast}):
        run = _run(job, source=Records([good, bad]))
    assert run.status == "succeeded" and list(Gauge.objects.values_list("code", flat=True)) == [
        "OK"
    ]
    error = run.row_errors.get()
    assert (error.row, error.column, error.value) == (3, "medium", "NaN")
    raw = error.raw
    assert raw["nan"] == "nan" and raw["inf"] == "-inf" and raw["nul"] == "a\\x00b"
    note = "… (50,000 characters)"
    assert raw["huge"] == "h" * (1000 - len(note)) + note  # DJSYNC["ROW_ERROR_VALUE_SIZE"]
    assert raw["bigint"].endswith("characters)") or raw["bigint"] == str(10**100)
    assert raw["surrogate"] == "\\udc80" and raw["missing"] == "<missing cell>"
    assert raw["decimal_nan"] == "NaN" and raw["clock"] == "07:30:00+00:00"
    assert "NaN" not in json.dumps(raw) or '"NaN"' in json.dumps(raw)
    assert any(len(k) == 255 for k in raw)  # a column name as long as the model keeps


def test_storable_caps_by_the_setting():
    from djsync.engine.diff import RowError

    with override_settings(DJSYNC={**django_settings.DJSYNC, "ROW_ERROR_VALUE_SIZE": 30}):
        error = RowError(row=1, message="m" * 50, value="v" * 50, raw={"c": "\x00" * 50})
    note = "… (50 characters)"  # 17 characters: 13 are left of each value
    assert error.value == "v" * 13 + note
    assert error.raw == {"c": "\\x00" * 3 + "\\" + note}
    assert error.message == "m" * 13 + note
    with override_settings(DJSYNC={**django_settings.DJSYNC, "ROW_ERROR_COLUMNS": 2}):
        error = RowError(row=1, message="m", raw={"a": 1, "b": 2, "c": 3, "d": 4})
    assert error.raw == {"a": 1, "b": 2, "…": "2 more cells"}
    error = RowError(row=1, message="m", column="\x00" * 1000)
    assert len(error.column) == 255 and error.column.endswith("… (1,000 characters)")


# -- a job's null_tokens source option --------------------------------------------------------
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
def test_a_job_declares_null_tokens_in_its_source_options(fast, make_job, write_csv, file_root):
    write_csv([blank("J1", medium="-", day="NA"), blank("J2", medium="-", label="-")])
    job = make_job(
        "hostile_gauges_tokens", source={"path": "data.csv", "null_tokens": ["-"]}
    )  # with the importer's "NA", "\\N" and "n/a"; label takes none of them
    with override_settings(DJSYNC={**django_settings.DJSYNC, "FAST_PATH": fast}):
        run = _run(job)
    assert run.status == "succeeded", run.error
    rows = {g.code: (g.medium, g.day, g.label) for g in Gauge.objects.all()}
    assert rows == {"J1": (None, None, ""), "J2": (None, None, "-")}


@pytest.mark.parametrize(
    "tokens, message",
    [
        ("NA", r"null_tokens is a list of at most 20 texts"),
        (["x"] * 21, r"null_tokens is a list of at most 20 texts"),
        ([1], r"a null token must be a short text, not 1"),
        (["x" * 21], r"a null token must be a short text"),
        (["\x00"], r"a null token must be a short text"),
        (["NA", None], r"a null token must be a short text, not None"),
    ],
)
def test_bad_null_tokens_in_a_job_are_refused(tokens, message, make_job, write_csv, file_root):
    if connection.vendor == "postgresql" and ["\x00"] == tokens:
        pytest.skip("PostgreSQL cannot even store a job whose JSON holds a NUL character")
    write_csv([blank("J1")])
    job = make_job("hostile_gauges", source={"path": "data.csv", "null_tokens": tokens})
    with pytest.raises(Exception, match=message) as info:
        djsync.run(job)
    run = SyncRun.objects.get(pk=info.value.run.pk)
    assert run.status == "failed" and re.search(message, run.error)
    assert not Gauge.objects.exists()

"""A run split into partitions gives what one process gives (eager Celery: in sequence).

Each scenario syncs the same file twice, into two copies of the same target state: once in
one process, once split into partitions, and compares the target rows, the counts, the
recorded changes and the row errors, row for row. The real-worker version, with a worker
killed during a partition, is tests/test_partitions_celery.py.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from djsync import queue
from djsync.mapping.registry import get_importer_class
from djsync.models import SyncJob, SyncRun
from djsync.sources.splits import Grammar, split, window
from tests.testapp.models import Member, Product

POSTGRES = pytest.mark.skipif(
    __import__("os").environ.get("DJSYNC_TEST_DB") == "sqlite",
    reason="partitions need PostgreSQL; on SQLite they are refused (test below)",
)


def rows_for(
    n: int,
    *,
    changed: set[int] = frozenset(),
    gone: set[int] = frozenset(),
    odd: dict[int, dict[str, str]] | None = None,
    breaks: bool = True,
) -> list[dict[str, str]]:
    out = []
    for i in range(n):
        if i in gone:
            continue
        name = f"Product {i}" + (" v2" if i in changed else "")
        if breaks and i % 7 == 0:
            name += '\n"quoted" line, break'  # a line break inside quotes near anywhere
        row = {
            "sku": f"S{i:06d}",
            "name": name,
            "price": f"{i % 100}.50",
            "qty": str(i % 9),
            "updated": "2024-01-02",
            "active": "1",
        }
        row.update((odd or {}).get(i, {}))
        out.append(row)
    return out


def write(path: Path, rows: list[dict[str, str]]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def result(run: SyncRun) -> dict[str, Any]:
    run.refresh_from_db()
    changes = sorted(
        (c.action, str(c.key), c.row or 0, repr(c.before), repr(c.after), c.changed_fields)
        for c in run.changes.all()
    )
    errors = [
        (e.row, repr(e.key), e.column, e.message, e.value, repr(e.raw))
        for e in run.row_errors.order_by("row", "pk")
    ]
    return {
        "status": run.status,
        "error": run.error,
        "counts": (run.created, run.updated, run.deleted, run.unchanged, run.errors),
        "rows_read": run.rows_read,
        "changes": changes,
        "errors": errors,
        "target": sorted(Product.objects.values_list("sku", "name", "price", "qty", "updated")),
        "members": sorted(Member.objects.values_list("team", "number", "name")),
    }


def queued(job: SyncJob, path: Path, parts: int, **options: Any) -> SyncRun:
    """Queue a run (eager Celery: carried out at once) and return it, failed or not."""
    try:
        queue.queue_run(job, file=str(path), partitions=parts, **options)
    except Exception:  # noqa: BLE001 - eager Celery propagates a failed run's error
        pass
    return SyncRun.objects.filter(job=job).latest("pk")


def both(
    job: SyncJob, path: Path, parts: int, statements: list[str] | None = None, **options: Any
) -> tuple[dict, dict]:
    """The same file synced in one process and in ``parts`` partitions, from the same target
    (the SQL of the split run added to ``statements``)."""
    model = get_importer_class(job.importer).model
    before = list(model.objects.values())
    single = result(queued(job, path, 1, **options))
    model.objects.all().delete()
    model.objects.bulk_create([model(**values) for values in before])

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if statements is not None:
            statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        split_run = queued(job, path, parts, **options)
    split_result = result(split_run)
    split_run.refresh_from_db()
    assert split_run.partitions == parts, (split_run.warnings, split_run.error)
    assert all("partitions" in model["path"] for model in split_run.stats.values())
    return single, split_result


@pytest.fixture
def small_ranges(settings: Any) -> None:
    settings.DJSYNC = {**settings.DJSYNC, "PARTITION_MIN_SIZE": 1}


@POSTGRES
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("small_ranges")
@pytest.mark.parametrize("importer", ["test_products", "test_products_plain"])
def test_same_result_as_one_process(make_job: Any, tmp_path: Path, importer: str) -> None:
    job = make_job(importer, partitions=1)
    n = 3000
    path = write(tmp_path / "day1.csv", rows_for(n))
    single, split_result = both(job, path, 4)  # initial load
    assert single == split_result
    assert single["counts"][0] == n
    single, split_result = both(job, path, 4)  # no change
    assert single == split_result
    assert single["counts"][3] == n
    changed = set(range(0, n, 97))
    gone = set(range(5, n, 101))
    rows = rows_for(n + 30, changed=changed, gone=gone)  # 1%: creates, updates, deletes
    path = write(tmp_path / "day2.csv", rows)
    single, split_result = both(job, path, 3)
    assert single == split_result
    assert single["counts"][:3] == (30, len(changed - gone), len(gone))


@POSTGRES
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("small_ranges")
@pytest.mark.parametrize("importer", ["test_products", "test_products_plain"])
def test_a_failed_and_a_redelivered_partition_count_once(
    make_job: Any, tmp_path: Path, importer: str, monkeypatch: Any
) -> None:
    """A partition failing after its rows went into the run's staging leaves none of them
    there (its retry stages them once), and one delivered again after it committed (a
    worker that died before acknowledging it) finds its work done."""
    from djsync.backends import partitioned
    from djsync.runs import partitions

    job = make_job(importer, partitions=1)
    path = write(tmp_path / "day1.csv", rows_for(2000, odd={1500: {"qty": "many"}}))
    real_load, real_save = partitions.load_partition, partitioned._save_errors
    failed: list[int] = []

    def save_once_failing(cursor: Any, table: str, part: int, errors: Any) -> None:
        if part == 1 and not failed:
            failed.append(part)
            raise RuntimeError("the worker's connection dropped")
        real_save(cursor, table, part, errors)

    def delivered_like_a_flaky_broker(run_id: int, spec: dict[str, Any], **kw: Any) -> str:
        if spec["range"]["part"] == 1:
            with pytest.raises(RuntimeError, match="connection dropped"):
                real_load(run_id, spec, last_attempt=False)
        assert real_load(run_id, spec, **kw) == "loaded"
        return real_load(run_id, spec, **kw)  # delivered again: nothing more

    monkeypatch.setattr(partitioned, "_save_errors", save_once_failing)
    monkeypatch.setattr(partitions, "load_partition", delivered_like_a_flaky_broker)
    single, split_result = both(job, path, 4, on_row_error="skip")
    assert failed == [1]
    assert single == split_result
    assert single["counts"][0] == 1999 and single["counts"][4] == 1


@POSTGRES
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("small_ranges")
def test_row_errors_and_duplicates_across_partitions(make_job: Any, tmp_path: Path) -> None:
    job = make_job("test_products", partitions=1)
    n = 2000
    odd = {
        10: {"price": "not a price"},
        1500: {"qty": "many"},
        1999: {"sku": "S000003"},  # the key of row 5, in the last partition
        1000: {"sku": "S000998"},  # a duplicate key in the middle
    }
    path = write(tmp_path / "bad.csv", rows_for(n, odd=odd))
    single, split_result = both(job, path, 4, on_row_error="skip")
    assert single == split_result
    rows = {error[0] for error in single["errors"]}
    assert {12, 1502, 2001, 5, 1002, 1000} <= rows  # file rows: the header is row 1
    single, split_result = both(job, path, 4)  # fails on them: nothing written either way
    assert single == split_result
    assert single["status"] == SyncRun.Status.FAILED


@POSTGRES
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("small_ranges")
def test_unsafe_quoting_falls_back_to_one_partition(make_job: Any, tmp_path: Path) -> None:
    job = make_job("test_products", partitions=1)
    rows = rows_for(500)
    path = write(tmp_path / "stray.csv", rows)
    text = path.read_text().replace("Product 250", 'Product 2"50 inch')  # a stray quote
    path.write_text(text)
    one = result(queued(job, path, 1))
    Product.objects.all().delete()
    run = queued(job, path, 4)
    assert result(run) == one
    run.refresh_from_db()
    assert run.partitions == 1
    assert any("one process" in w for w in run.warnings)


#: The statement of the duplicate check over the whole staging table.
CHECK = "HAVING count(*) > 1"


@pytest.fixture
def orders(monkeypatch: Any) -> list[tuple[int, bool, str]]:
    """What each partition recorded of its keys' order: (part, ordered, how it was read)."""
    from djsync.backends import partitioned

    seen: list[tuple[int, bool, str]] = []
    real = partitioned._save_order

    def save(cursor: Any, meta: str, part: int, plan: Any) -> None:
        real(cursor, meta, part, plan)
        cursor.execute(f"SELECT ordered FROM {meta} WHERE _part = %s", [part])
        seen.append((part, cursor.fetchone()[0], plan.raw_csv))

    monkeypatch.setattr(partitioned, "_save_order", save)
    return seen


#: Importers whose rows are staged by each path: text cells in one compiled loop, Python
#: values (hooks), the file's bytes parsed by PostgreSQL.
PATHS = ["test_products", "test_products_prepared", "test_products_plain"]


@POSTGRES
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("small_ranges")
@pytest.mark.parametrize("importer", PATHS)
def test_sorted_keys_skip_the_duplicate_check(
    make_job: Any, tmp_path: Path, importer: str, orders: list
) -> None:
    """Keys increasing through the file: each partition proves its own keys distinct and
    their ranges apart, and the last step runs no duplicate check, as one process."""
    job = make_job(importer, partitions=1)
    rows = [{**row, "category_code": ""} for row in rows_for(2000, breaks=False)]
    path = write(tmp_path / "sorted.csv", rows)
    for _day in range(2):  # an initial load, then into a target with every key
        statements: list[str] = []
        single, split_result = both(job, path, 4, statements)
        assert single == split_result
        assert not [sql for sql in statements if CHECK in sql]
    assert len(orders) == 8 and all(ordered for _part, ordered, _how in orders)
    raw = {how for _part, _ordered, how in orders}
    assert raw == ({"staged"} if importer == "test_products_plain" else {""})


def _overlapping(tmp_path: Path, n: int, parts: int) -> list[dict[str, str]]:
    """Rows whose keys increase within each of ``parts`` partitions, each partition's
    first 5 keys being the previous one's last 5 (the rows keep their length, so the
    file splits at the same rows)."""
    rows = rows_for(n, breaks=False)
    firsts = [cut.first_row - 2 for cut in split(write(tmp_path / "x.csv", rows), parts)]
    assert len(firsts) == parts
    for i, row in enumerate(rows):
        part = sum(first <= i for first in firsts) - 1
        row["sku"] = f"S{i - 5 * part:06d}"
    return rows


@POSTGRES
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("small_ranges")
@pytest.mark.parametrize("importer", ["test_products", "test_products_plain"])
@pytest.mark.parametrize("case", ["overlapping", "repeated", "unsorted"])
def test_keys_that_may_repeat_are_checked(
    make_job: Any, tmp_path: Path, importer: str, case: str, orders: list
) -> None:
    """Ranges of keys that overlap across partitions, a key repeated inside one, or keys
    in no order: the last step checks, and finds what one process finds."""
    job = make_job(importer, partitions=1)
    n = 2000
    if case == "overlapping":
        rows = _overlapping(tmp_path, n, 4)
    else:
        rows = rows_for(n, breaks=False, odd={1200: {"sku": "S001199"}})
        if case == "unsorted":
            rows[10], rows[1200] = rows[1200], rows[10]
    path = write(tmp_path / f"{case}.csv", rows)
    statements: list[str] = []
    single, split_result = both(job, path, 4, statements, on_row_error="skip")
    assert single == split_result
    assert [sql for sql in statements if CHECK in sql]
    duplicates = {error[0] for error in single["errors"] if "more than once" in error[3]}
    if case == "overlapping":  # each partition's keys increase: only their ranges overlap
        assert all(ordered for _part, ordered, _how in orders)
        assert len(duplicates) == 2 * 5 * 3
    else:
        assert len(duplicates) == 2 and 1201 in duplicates  # the header is row 1
        assert not all(ordered for _part, ordered, _how in orders)


@POSTGRES
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("small_ranges")
@pytest.mark.parametrize("overlapping", [False, True])
def test_composite_keys_compare_as_rows(
    make_job: Any, tmp_path: Path, overlapping: bool, orders: list
) -> None:
    """Keys of two columns, text by code point ("Z" before "a"), compared as Python
    compares tuples; ranges that share keys are still checked."""
    job = make_job("test_members", partitions=1)
    teams = ["AB", "ZZ", "ab", "zz"]
    rows = [
        {"team": teams[k // 500], "number": str(1000 + k % 500), "name": f"M{k:04d}"}
        for k in range(2000)
    ]
    if overlapping:  # the rows keep their length: the file splits at the same rows
        firsts = [cut.first_row - 2 for cut in split(write(tmp_path / "x.csv", rows), 4)]
        for i, row in enumerate(rows):
            k = i - 5 * (sum(first <= i for first in firsts) - 1)
            row.update(team=teams[k // 500], number=str(1000 + k % 500))
    statements: list[str] = []
    path = write(tmp_path / "members.csv", rows)
    single, split_result = both(job, path, 4, statements, on_row_error="skip")
    assert single == split_result
    assert len(orders) == 4 and all(ordered for _part, ordered, _how in orders)
    assert bool([sql for sql in statements if CHECK in sql]) == overlapping
    assert single["counts"][4] == (30 if overlapping else 0)


def test_split_points_keep_quoted_line_breaks(tmp_path: Path) -> None:
    rows = rows_for(4000)
    path = write(tmp_path / "q.csv", rows)
    cuts = split(path, 9, min_size=1)
    assert len(cuts) == 9
    header = cuts[1].start and len(path.read_bytes().split(b"\n", 1)[0]) + 1
    seen = []
    for cut in cuts:
        handle = window(path, header, cut, ",")
        records = list(csv.reader(io.TextIOWrapper(handle, encoding="utf-8", newline="")))
        assert records[0] == list(rows[0])
        assert records[1][0] == rows[cut.first_row - 2]["sku"]  # row numbers of the file
        assert handle.raw.grammar.finish() == ""
        seen += [r[0] for r in records[1:]]
    assert seen == [r["sku"] for r in rows]


def test_grammar_refuses_a_stray_quote() -> None:
    grammar = Grammar(",", last=True, carry_limit=1000)
    grammar.feed(b'a,b\n1,2"3\n')
    assert grammar.finish()
    grammar = Grammar(",", last=True, carry_limit=1000)
    grammar.feed(b'a,"b\n""c"""\r\n1,2')
    assert grammar.finish() == ""


@pytest.mark.django_db
def test_partitions_are_checked(make_job: Any, tmp_path: Path) -> None:
    job = make_job("test_products")
    path = write(tmp_path / "x.csv", rows_for(3))
    with pytest.raises(CommandError, match="from 1 to 64"):
        call_command("runsync", job.name, "--file", str(path), "--partitions", "65")
    job.partitions = 0
    with pytest.raises(Exception, match="1 to 64"):
        job.full_clean()


@pytest.mark.skipif(
    __import__("os").environ.get("DJSYNC_TEST_DB") != "sqlite", reason="the SQLite refusal"
)
@pytest.mark.django_db
def test_sqlite_refuses_partitions(
    make_job: Any, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    job = make_job("test_products")
    path = write(tmp_path / "x.csv", rows_for(3))
    with pytest.raises(CommandError, match="partitions need PostgreSQL"):
        call_command("runsync", job.name, "--file", str(path), "--partitions", "2")
    job.partitions = 4  # the job's own setting: one process, and a warning that says why
    job.save()
    with django_capture_on_commit_callbacks(execute=True):
        run = queue.queue_run(job, file=str(path))
    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.created == 3
    assert any("partitions need PostgreSQL" in w for w in run.warnings)

"""A split run of a SQL, queryset or HTTP source gives what one process gives.

The differential test of tests/test_partitions.py for the sources that are not files: a SQL
query and a queryset split by ranges of a declared partition column (skewed values, NULLs),
an HTTP API split by pages (one page failing once, retried); each synced in one process and
in partitions from the same target state, compared row for row, change for change, row
error for row error. Sources that cannot be split fall back to one process with a warning
that says why.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.db.models import F

import djsync
from djsync import queue
from djsync.models import SyncJob, SyncRun
from djsync.runs import partition_specs
from djsync.sources import SqlSource
from djsync.sources.ranges import KeyRange
from tests.httpserver import Reply, Request, allow, serve
from tests.test_partitions import result
from tests.testapp.models import Product

POSTGRES = pytest.mark.skipif(
    os.environ.get("DJSYNC_TEST_DB") == "sqlite",
    reason="partitions need PostgreSQL; on SQLite they are refused (tests/test_partitions.py)",
)
BOTH_DATABASES = pytest.mark.django_db(transaction=True, databases=["default", "other"])
FIELDS = ["sku", "name", "price", "qty", "updated", "active"]


@djsync.register
class ProductsFromOtherImporter(djsync.Importer):
    """Products read from the "other" database's copy, in the order of their date."""

    class Meta:
        name = "test_products_from_other"
        model = Product
        keys = ["sku"]
        fields = FIELDS
        delete = True
        querysets = {
            "by_date": {
                "queryset": lambda: Product.objects.using("other").order_by(
                    F("updated").asc(nulls_last=True), "sku"
                ),
                "fields": FIELDS,
            },
        }


def skewed(n: int, *, changed: set[int] = frozenset(), bad: set[int] = frozenset()) -> list:
    """Rows whose partition value is mostly one value, some NULL, the rest spread."""
    out = []
    for i in range(n):
        k = None if i % 11 == 0 else 1 if i % 3 else i
        price = "not a price" if i in bad else f"{i % 100}.50"
        name = f"Product {i}" + (" v2" if i in changed else "")
        out.append((f"S{i:06d}", name, price, str(i % 9), "2024-01-02", "1", k))
    return out


@pytest.fixture
def feed(settings: Any) -> Iterator[Any]:
    """A table on "other" and a declared query over it, ordered by its partition column."""
    query = (
        "SELECT code AS sku, title AS name, cost AS price, stock AS qty, changed AS updated, "
        "live AS active, k FROM split_feed ORDER BY k, code"
    )
    settings.DJSYNC = {
        **settings.DJSYNC,
        "SQL_QUERIES": {
            **settings.DJSYNC["SQL_QUERIES"],
            "split_feed": {"query": query, "using": "other"},
        },
    }

    def fill(rows: list[tuple]) -> None:
        with connections["other"].cursor() as cursor:
            cursor.execute("DELETE FROM split_feed")
            cursor.executemany("INSERT INTO split_feed VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)

    with connections["other"].cursor() as cursor:
        cursor.execute(
            "CREATE TABLE split_feed (code varchar(32), title varchar(200), cost varchar(20), "
            "stock varchar(10), changed varchar(10), live varchar(5), k integer)"
        )
    try:
        yield fill
    finally:
        with connections["other"].cursor() as cursor:
            cursor.execute("DROP TABLE split_feed")


def queued(job: SyncJob, parts: int | None, **options: Any) -> SyncRun:
    try:
        queue.queue_run(job, partitions=parts, **options)
    except Exception:  # noqa: BLE001 - eager Celery propagates a failed run's error
        pass
    return SyncRun.objects.filter(job=job).latest("pk")


def both(job: SyncJob, parts: int, **options: Any) -> tuple[dict, dict]:
    """The job's source synced in one process and in ``parts`` partitions, same target."""
    before = list(Product.objects.values())
    single = result(queued(job, 1, **options))
    Product.objects.all().delete()
    Product.objects.bulk_create([Product(**values) for values in before])
    run = queued(job, parts, **options)
    split = result(run)
    assert run.partitions > 1, (run.warnings, run.error)
    assert "partitions" in run.stats["testapp.Product"]["path"]
    return single, split


@POSTGRES
@BOTH_DATABASES
def test_sql_source_split_by_its_partition_column(make_job: Any, feed: Any) -> None:
    n = 1200
    job = make_job("test_products", source={"kind": "sql", "query": "split_feed", "partition": "k"})
    feed(skewed(n))
    single, split = both(job, 4)
    assert single == split
    assert single["counts"][0] == n
    feed(skewed(n + 20, changed=set(range(0, n, 50)), bad={7, 600, 1210}))
    single, split = both(job, 3, on_row_error="skip")
    assert single == split
    assert single["counts"][0] == 20 - 1 and single["counts"][4] == 3
    rows = {error[0] for error in single["errors"]}
    assert len(rows) == 3 and all(rows), rows  # the records' positions, as one process


@POSTGRES
@BOTH_DATABASES
def test_queryset_source_split_by_a_date_field(make_job: Any) -> None:
    base = datetime.date(2024, 1, 1)
    rows = [
        Product(
            sku=f"Q{i:05d}",
            name=f"Item {i}",
            price=i % 50,
            qty=i % 7,
            updated=None if i % 13 == 0 else base if i % 4 else base + datetime.timedelta(i),
        )
        for i in range(900)
    ]
    Product.objects.using("other").bulk_create(rows)
    job = make_job(
        "test_products_from_other",
        source={"kind": "queryset", "queryset": "by_date", "partition": "updated"},
    )
    single, split = both(job, 4)
    assert single == split
    assert single["counts"][0] == 900
    Product.objects.using("other").filter(sku__endswith="5").update(name="renamed")
    single, split = both(job, 3)
    assert single == split
    assert single["counts"][1] == 90


@pytest.mark.django_db(databases=["default", "other"])
def test_key_ranges_hold_every_row_once_an_empty_one_too(feed: Any) -> None:
    rows = [(*r[:6], None if r[6] is None else i) for i, r in enumerate(skewed(300))]
    feed(rows)
    source = SqlSource(
        "SELECT code AS sku, k FROM split_feed", using="other", partition="k", name="feed"
    )
    specs, columns = partition_specs.cut(source, 4)  # type: ignore[misc]
    assert columns == ["sku", "k"] and len(specs) >= 3
    middle = KeyRange.from_json(specs[1]["range"])
    with connections["other"].cursor() as cursor:  # the middle range empties after the cut
        cursor.execute("DELETE FROM split_feed WHERE k >= %s AND k < %s", [middle.low, middle.high])
    read = [[r["sku"] for r in partition_specs.narrow(source, spec).read()] for spec in specs]
    assert read[1] == []
    left = [r[0] for r in rows if not (r[6] is not None and middle.low <= r[6] < middle.high)]
    assert sorted(sum(read, [])) == sorted(left)  # NULLs included, each row once


# -- HTTP: pages -----------------------------------------------------------------------------
CATALOGUE = [
    {
        "sku": f"H{i:05d}",
        "name": f"Thing {i}",
        "price": "x" if i in (17, 130) else f"{i % 30}.25",
        "qty": str(i % 5),
        "updated": "2024-03-04",
        "active": "1",
    }
    for i in range(230)
]


def items(hits: dict[str, int]) -> Any:
    """Pages of CATALOGUE that say its count; every run's first ask for page 3 fails."""

    def reply(request: Request) -> Reply:
        page, size = int(request.query["page"]), int(request.query["per_page"])
        if page == 3:
            hits["failing"] += 1
            if hits["failing"] % 2:
                return Reply(503, {"detail": "busy"})
        chunk = CATALOGUE[(page - 1) * size : page * size]
        return Reply(body={"count": len(CATALOGUE), "results": chunk})

    return reply


@pytest.fixture
def api(settings: Any) -> Iterator[Any]:
    for server in serve():
        allow(settings, server.url("/"), HTTP_BACKOFF=0)
        server.hits_of_page_3 = {"failing": 0}  # type: ignore[attr-defined]
        server.route("/items", items(server.hits_of_page_3))  # type: ignore[attr-defined]
        yield server


def http_job(
    make_job: Any, api: Any, style: str = "page", name: str = "api", **pagination: Any
) -> SyncJob:
    options = {"style": style, "size_param": "per_page", "size": 40, "total": "count"}
    return make_job(
        "test_products",
        name=name,
        source={
            "kind": "http",
            "url": api.url("/items"),
            "records": "results",
            "pagination": {**options, **pagination},
        },
    )


@POSTGRES
@pytest.mark.django_db(transaction=True)
def test_http_source_split_by_pages_with_a_page_retried(make_job: Any, api: Any) -> None:
    job = http_job(make_job, api)
    single, split = both(job, 3, on_row_error="skip")
    assert single == split
    assert single["counts"][0] == 228 and single["counts"][4] == 2
    assert [e[0] for e in single["errors"]] == [18, 131]  # records 18 and 131 of the feed
    assert api.hits_of_page_3["failing"] == 4  # failed once, retried, in each run
    run = SyncRun.objects.filter(job=job).latest("pk")
    assert run.partitions == 3


@POSTGRES
@pytest.mark.django_db(transaction=True)
def test_a_page_that_keeps_failing_fails_the_split_run_with_nothing_written(
    make_job: Any, api: Any, settings: Any
) -> None:
    settings.DJSYNC = {**settings.DJSYNC, "HTTP_RETRIES": 0, "MAX_RETRIES": 0}
    job = http_job(make_job, api)
    api.hits_of_page_3["failing"] = 0  # the first ask for page 3 fails, and is not retried
    single = result(queued(job, 1))
    api.hits_of_page_3["failing"] = 0
    run = queued(job, 3)
    split = result(run)
    assert single["status"] == split["status"] == SyncRun.Status.FAILED
    assert "HTTP 503" in single["error"]
    assert split["error"].startswith("partition 2 of 3 failed: ")
    assert split["error"].endswith("; nothing was written")
    assert "HTTP 503" in split["error"]
    assert split["target"] == single["target"] == []


@POSTGRES
@pytest.mark.django_db(transaction=True)
def test_a_source_that_fails_while_it_is_cut_is_read_in_one_process(
    make_job: Any, api: Any, settings: Any
) -> None:
    settings.DJSYNC = {**settings.DJSYNC, "MAX_RETRIES": 0}
    api.route("/gone", Reply(404, {"detail": "gone"}))
    job = make_job(
        "test_products",
        source={
            "kind": "http",
            "url": api.url("/gone"),
            "pagination": {"style": "page", "size": 40, "total": "count"},
        },
    )
    single = result(queued(job, 1))
    run = queued(job, 3)
    assert result(run) == single  # failed, with one process's message, nothing written
    assert single["status"] == SyncRun.Status.FAILED and "HTTP 404" in single["error"]
    run.refresh_from_db()
    assert run.partitions == 1
    assert any("not in 3 partitions: it could not be cut (" in w for w in run.warnings)


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_sources_that_cannot_be_split_say_why(make_job: Any, api: Any, feed: Any) -> None:
    feed(skewed(20))
    cases = {
        "its cursor pagination can only be followed page after page": http_job(
            make_job, api, style="cursor", name="cursor", path="next"
        ),
        "its pagination declares no total": http_job(make_job, api, name="x", total=None),
        "it declares more pages than max_pages": make_job(
            "test_products",
            name="long",
            source={**http_job(make_job, api, name="y").source, "max_pages": 3},
        ),
        "no partition column is declared": make_job(
            "test_products", name="sql", source={"kind": "sql", "query": "split_feed"}
        ),
    }
    for why, job in cases.items():
        job.partitions = 4  # the job's setting: one process, and a warning
        job.save()
        run = queued(job, None)
        run.refresh_from_db()
        assert run.partitions == 1
        warning = " ".join(run.warnings)
        if os.environ.get("DJSYNC_TEST_DB") == "sqlite":
            assert "partitions need PostgreSQL" in warning
        else:
            assert f"read in one process, not in 4 partitions: {why}" in warning, warning


@POSTGRES
@BOTH_DATABASES
def test_a_partition_column_the_query_does_not_return(make_job: Any, feed: Any) -> None:
    feed(skewed(20))
    job = make_job(
        "test_products", source={"kind": "sql", "query": "split_feed", "partition": "nope"}
    )
    run = queued(job, 2)
    assert run.status == SyncRun.Status.FAILED
    assert "the partition column nope is not one the query returns" in run.error

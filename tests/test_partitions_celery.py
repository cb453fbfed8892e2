"""A split run on real Celery workers (Redis) gives what one process gives.

The differential test of tests/test_partitions.py, on the worker tests/test_celery.py
starts (prefork, two processes): the same file synced in one partition and in several,
compared row for row and change for change; and a worker killed in the middle of its
partition, whose partition is delivered again (acks_late) with the same result.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

import tests.celery_helpers  # noqa: F401 - the gated importer, registered here too
from djsync import queue
from djsync.models import SyncJob, SyncRun
from djsync.runs.monitor import follow
from tests.test_celery import rel, same_settings, stack, wait_for  # noqa: F401 - fixtures
from tests.test_partitions import result, rows_for, write
from tests.test_partitions_sources import items
from tests.testapp.models import Product

#: Any file is split, however small (the worker reads the setting too).
WORKER_DJSYNC = {"PARTITION_MIN_SIZE": 1, "STALE_AFTER": 30, "LOCK_TTL": 10, "HTTP_BACKOFF": 0}

pytestmark = [
    pytest.mark.celery,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        os.environ.get("DJSYNC_TEST_DB") == "sqlite",
        reason="a worker process cannot share the in-memory SQLite test database; "
        "partitions need PostgreSQL",
    ),
]


def on_worker(job: SyncJob, parts: int, **options: Any) -> dict[str, Any]:
    run = follow(queue.queue_run(job, partitions=parts, **options).pk)
    assert run.partitions == parts, run.warnings
    return result(run)


def both(job: SyncJob, parts: int, **options: Any) -> tuple[dict, dict]:
    before = list(Product.objects.values())
    single = on_worker(job, 1, **options)
    Product.objects.all().delete()
    Product.objects.bulk_create([Product(**values) for values in before])
    return single, on_worker(job, parts, **options)


@pytest.mark.usefixtures("stack")
def test_split_on_workers_same_as_one_process(make_job: Any, tmp_path: Path) -> None:
    n = 3000
    path = write(tmp_path / "data.csv", rows_for(n))
    job = make_job("test_products", source={"path": rel(path)})
    for _day in ("initial", "no change"):
        single, split = both(job, 4)
        assert single == split
        assert single["status"] == "succeeded", single["error"]
    changed, gone = set(range(0, n, 97)), set(range(5, n, 101))
    write(path, rows_for(n + 30, changed=changed, gone=gone))  # 1%: creates, updates, deletes
    single, split = both(job, 3)
    assert single == split
    assert single["counts"][:3] == (30, len(changed - gone), len(gone))
    odd = {10: {"price": "x"}, 2999: {"sku": "S000003"}, 1500: {"sku": "S000998"}}
    write(path, rows_for(n, odd=odd))  # row errors, duplicate keys across partitions
    single, split = both(job, 4, on_row_error="skip")
    assert single == split
    assert {12, 5, 3001, 1000, 1502} <= {error[0] for error in single["errors"]}


def test_an_api_split_by_pages_on_workers(
    stack: dict,  # noqa: F811 - the fixture of tests/test_celery.py
    make_job: Any,
) -> None:
    hits = {"failing": 0}
    stack["api"].route("/api/split-items", items(hits))  # page 3 fails once per run
    pagination = {"style": "page", "size_param": "per_page", "size": 40, "total": "count"}
    job = make_job(
        "test_products",
        source={
            "kind": "http",
            "url": stack["api"].url("/api/split-items"),
            "records": "results",
            "pagination": pagination,
        },
    )
    single, split = both(job, 3, on_row_error="skip")
    assert single == split
    assert single["status"] == "succeeded", single["error"]
    assert single["counts"][0] == 228 and [e[0] for e in single["errors"]] == [18, 131]
    assert hits["failing"] == 4  # failed once and retried, in each run


def test_a_worker_killed_during_its_partition(
    stack: dict,  # noqa: F811 - the fixture of tests/test_celery.py
    make_job: Any,
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "kill.csv", rows_for(3000))
    job = make_job("test_products_partition_gated", source={"path": rel(path)})
    single = on_worker(job, 1)
    Product.objects.all().delete()
    gate = stack["gates"] / "S002500"
    reached = stack["gates"] / "S002500.reached"
    Path(f"{gate}.hold").touch()  # the second partition stops at this row
    run = queue.queue_run(job, partitions=2)
    pid = int(wait_for(lambda: reached.exists() and reached.read_text().split(), "the gate")[0])
    os.kill(pid, signal.SIGKILL)  # the worker process dies in the middle of its partition
    # The partition is delivered again (acks_late) to another process, which reads its
    # range from the start and reaches the same row.
    again = wait_for(lambda: len(reached.read_text().split()) > 1, "the partition again")
    assert again
    Path(f"{gate}.hold").unlink()
    done = follow(run.pk)
    assert done.status == SyncRun.Status.SUCCEEDED, done.error
    assert result(done) == single


def test_progress_per_partition_and_cancel_stops_them_all(
    stack: dict,  # noqa: F811 - the fixture of tests/test_celery.py
    make_job: Any,
    tmp_path: Path,
) -> None:
    from djsync.backends import partitioned
    from djsync.display import progress_text, run_estimate
    from djsync.runs.monitor import cancel

    path = write(tmp_path / "cancel.csv", rows_for(3000))
    job = make_job("test_products_partition_gated", source={"path": rel(path)})
    hold = stack["gates"] / "S002600.hold"
    hold.touch()  # the second partition stops at this row; the first one finishes
    run = queue.queue_run(job, partitions=2)

    def first_done() -> SyncRun | None:
        current = SyncRun.objects.get(pk=run.pk)
        each = (current.progress or {}).get("partitions") or []
        return current if any(p["finished"] for p in each) else None

    current = wait_for(first_done, "the first partition to finish")
    text = progress_text(run_estimate(current))
    assert "partitions: #1 done" in text and "(1 of 2 done)" in text, text
    cancel(current)
    hold.unlink()
    done = follow(run.pk)
    assert done.status == SyncRun.Status.CANCELLED, done.error
    assert Product.objects.count() == 0
    assert run.pk not in partitioned.leftovers("default")  # its staging is gone

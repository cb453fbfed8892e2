"""Watch modes on a real Celery worker and django-celery-beat (``beat -S django``) on the
machine's Redis: each watched job's PeriodicTask polls it every ``watch`` seconds."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from djsync.models import SyncRun
from tests import (
    celery_helpers,  # noqa: F401 - the gated importer, as the worker has it
    test_celery,
)
from tests.httpserver import Reply, Request
from tests.test_celery import Process, hold, reached, release, skus, wait_for
from tests.test_celery import same_settings as same_settings  # noqa: F401 - autouse fixture
from tests.test_celery import stack as stack  # noqa: F401 - the worker, module-scoped

pytestmark = test_celery.pytestmark  # a real worker: PostgreSQL, transactions committed

INBOX = Path(tempfile.mkdtemp(prefix="djsync-watch-"))
#: The worker's settings on top of tests/test_celery.py's (its ``stack`` reads them).
WORKER_DJSYNC = {"DROP_ROOTS": {"inbox": str(INBOX)}, "WATCH_SETTLE": 0.2, "WATCH_MIN_INTERVAL": 1}
HEADER = "sku,name,price,qty,updated,active\n"


@pytest.fixture
def beat(stack: dict) -> Iterator[Process]:  # noqa: F811 - the fixture imported above
    process = Process(["beat", "-l", "info", "-S", "django"], stack["env"], stack["dir"] / "b.log")
    try:
        yield process
    finally:
        process.stop()


def test_beat_polls_an_incremental_api_and_empty_polls_leave_no_run(stack, make_job, beat):  # noqa: F811
    items: list[dict[str, Any]] = [
        {"sku": "W1", "name": "One", "price": "1", "qty": 1, "updated": "2026-01-01", "active": 1}
    ]

    def feed(request: Request) -> Reply:
        since = request.query.get("since", "")
        return Reply(body={"items": [i for i in items if i["updated"] > since]})

    api = stack["api"]
    api.route("/api/feed", feed)
    job = make_job(
        "test_products",
        name="watched-feed",
        watch=1,
        source={
            "kind": "http",
            "url": api.url("/api/feed"),
            "incremental": {"column": "updated", "param": "since"},
        },
    )
    wait_for(lambda: skus() == ["W1"], "the first poll", timeout=45)
    polls = len(api.hits("/api/feed"))
    wait_for(lambda: len(api.hits("/api/feed")) >= polls + 3, "three more polls", timeout=30)
    items.append({**items[0], "sku": "W2", "updated": "2026-01-02"})
    wait_for(lambda: skus() == ["W1", "W2"], "the new record", timeout=30)
    wait_for(
        lambda: api.hits("/api/feed")[-1].query == {"since": "2026-01-02"}, "the new cursor sent"
    )
    polls = len(api.hits("/api/feed"))
    wait_for(lambda: len(api.hits("/api/feed")) >= polls + 3, "three more polls", timeout=30)
    # The polls that found nothing left no run (one may be under way: it goes when it ends).
    runs = SyncRun.objects.filter(job=job).exclude(status__in=SyncRun.ACTIVE)
    assert set(runs.values_list("trigger", "status")) == {("watch", "succeeded")}
    wait_for(lambda: runs.count() == 2, "the two runs that changed something, only")


def test_beat_runs_dropped_files_and_skips_polls_while_one_is_applied(stack, make_job, beat):  # noqa: F811
    folder = INBOX / "orders"
    folder.mkdir(exist_ok=True)
    job = make_job(
        "test_products_gated",
        name="watched-folder",
        watch=1,
        delete=False,  # each file carries some rows, not the whole table
        source={"kind": "drop", "root": "inbox", "folder": "orders", "pattern": "*.csv"},
    )
    hold(stack, "D1")  # the first file's apply waits at the gate
    for number, sku in enumerate(("D1", "D2")):
        path = folder / f"{number}-{sku}.csv"
        path.write_text(HEADER + f"{sku},Dropped {sku},1,1,2026-01-01,1\n")
        then = time.time() - 10 + number
        os.utime(path, (then, then))
    reached(stack, "D1")
    time.sleep(3)  # beat sends polls meanwhile: skipped, not queued, no run
    assert SyncRun.objects.filter(job=job).count() == 1
    assert len(os.listdir(folder / "processing")) == 1 and (folder / "1-D2.csv").exists()
    release(stack, "D1")
    wait_for(lambda: len(os.listdir(folder / "processing")) == 0, "both files taken", timeout=45)
    failed = SyncRun.objects.filter(job=job, status="failed").values_list("error", flat=True)
    assert list(failed) == []
    wait_for(lambda: skus() == ["D1", "D2"], "both files applied", timeout=45)
    wait_for(lambda: len(os.listdir(folder / "done")) == 2, "both files in done/")
    runs = SyncRun.objects.filter(job=job).order_by("pk")
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert sorted(os.listdir(folder / "done")) == [
        f"{r.pk}-{i}-D{i + 1}.csv" for i, r in enumerate(runs)
    ]
    assert os.listdir(folder / "processing") == []

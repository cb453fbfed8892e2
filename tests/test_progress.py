"""Progress with a total and an estimate: what a run records as it reads and applies, the
status JSON and page the admin polls, and runsync's bar."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse

import djsync
from djsync.management.commands.runsync import _ProgressBar
from djsync.models import SyncRun
from djsync.runs.progress import Progress, estimate
from tests.testapp.models import Product

ROWS = 5000


@pytest.fixture
def big_csv(write_csv) -> Path:
    return write_csv(
        [
            {
                "sku": f"S{i:05}",
                "name": f"Product {i}",
                "price": "1.50",
                "qty": i,
                "updated": "",
                "active": "yes",
            }
            for i in range(ROWS)
        ],
        name="big.csv",
    )


@pytest.fixture
def generic(settings) -> None:
    """The generic path tells its progress every 1,000 rows (a staged one per batch).

    No heartbeat while the test's run works: its lock row is in the test's transaction,
    which the heartbeat thread's own connection cannot see (its renewal would find no lock
    and stop a run that a loaded machine keeps past HEARTBEAT_INTERVAL)."""
    settings.DJSYNC = {**settings.DJSYNC, "FAST_PATH": False, "HEARTBEAT_INTERVAL": 3600}


def status(client: Any, step: str = "preview") -> dict[str, Any]:
    run = SyncRun.objects.latest("pk")
    url = reverse("admin:djsync_syncrun_status", args=[run.pk])
    return client.get(url, {"step": step}).json()


def test_the_estimate_scales_the_time_spent_by_the_share_left():
    recorded = {
        "phase": "reading",
        "since": 100.0,
        "at": 110.0,
        "done": 250,
        "total": 1000,
        "unit": "bytes",
        "rows": 500,
    }
    found = estimate(recorded, now=112.0)
    assert found is not None
    assert (found.percent, found.rate, found.rate_unit) == (25.0, 50.0, "rows")
    assert found.remaining == 28.0  # 10 s for a quarter: 30 s more, 2 of them gone since
    unknown = estimate({**recorded, "total": None, "unit": "rows", "done": 500}, now=112.0)
    assert unknown is not None and (unknown.percent, unknown.remaining) == (None, None)
    assert unknown.rate == 50.0  # indeterminate, but with its rate
    assert estimate({}) is None


def test_reading_a_file_records_its_bytes_against_its_size(
    make_job, big_csv, generic, admin_client
):
    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def on_read(rows: int) -> None:
        seen.append((SyncRun.objects.latest("pk").progress, status(admin_client)))

    djsync.run(
        make_job("test_products", name="p"),
        file=big_csv,
        dry_run=True,
        progress=Progress(on_read=on_read),
    )
    size = big_csv.stat().st_size
    recorded, polled = seen[0]
    assert (recorded["phase"], recorded["unit"], recorded["total"]) == ("reading", "bytes", size)
    assert 0 < recorded["done"] < size and recorded["rows"] == 1000
    assert 0 < polled["progress"]["percent"] < 100 and polled["progress"]["total"] == size
    assert " of " in polled["progress_text"] and "1,000 rows" in polled["progress_text"]
    assert seen[-1][0]["done"] == size and seen[-1][0]["rows"] == ROWS


def test_the_apply_counts_changes_against_the_plan(make_job, big_csv, generic, admin_client):
    seen: list[dict[str, Any]] = []
    djsync.run(
        make_job("test_products", name="p"),
        file=big_csv,
        progress=Progress(on_apply=lambda done, total: seen.append(status(admin_client, "run"))),
    )
    assert Product.objects.count() == ROWS
    first = seen[0]["progress"]
    assert (first["phase"], first["unit"], first["total"]) == ("applying", "changes", ROWS)
    assert f"of {ROWS:,} changes" in seen[0]["progress_text"]


def test_the_progress_page_shows_the_estimate(make_job, big_csv, generic, admin_client):
    pages: list[str] = []

    def on_read(rows: int) -> None:
        if rows == 2000:
            run = SyncRun.objects.latest("pk")
            url = reverse("admin:djsync_syncrun_progress", args=[run.pk])
            pages.append(admin_client.get(url, {"step": "preview"}).content.decode())

    djsync.run(
        make_job("test_products", name="p"),
        file=big_csv,
        dry_run=True,
        progress=Progress(on_read=on_read),
    )
    assert 'max="100" value="' in pages[0] and "2,000 rows" in pages[0]


def test_runsync_bar_counts_the_file_bytes_with_the_rows_beside(make_job, big_csv, generic):
    out = io.StringIO()
    bar = _ProgressBar("p", enabled=True, file=out)
    try:
        djsync.run(
            make_job("test_products", name="p"), file=big_csv, dry_run=True, progress=bar.progress()
        )
    finally:
        bar.close()
    text = out.getvalue()
    assert "p: reading" in text and "%|" in text and "5,000 rows" in text
    assert bar.extent is not None and bar.extent.total == big_csv.stat().st_size


class _SlowProducts(djsync.Importer):
    """Products through a per-row hook that takes a while, and that checks, midway through
    the read, that another connection can lock the run's row at once: the heartbeat's
    write must never wait behind the run's own transaction."""

    locked: list[str] = []
    job_id: int | None = None

    class Meta:
        name = "test_slow_hooked_products"
        model = Product
        keys = ["sku"]
        fields = ["sku", "name", "price", "qty", "updated"]

    def normalize_source_row(self, values: dict[str, Any]) -> dict[str, Any]:
        import time

        time.sleep(0.002)
        if values["sku"] == "S01500":  # (the run's own connection is busy with a COPY)
            self.locked.append(_lock_from_elsewhere(self.job_id))
        return values


def _lock_from_elsewhere(job_id: int | None) -> str:
    """Try to lock the row of the job's run under way from a connection of its own, without
    waiting."""
    import psycopg
    from django.db import connection

    params = {k: v for k, v in connection.get_connection_params().items() if k != "context"}
    with psycopg.connect(**params, autocommit=True) as other:
        found = other.execute(
            "SELECT id FROM djsync_syncrun WHERE job_id = %s AND status = 'reading'", [job_id]
        ).fetchall()
        if len(found) != 1:
            return f"{len(found)} runs reading"
        try:
            other.execute(
                "SELECT 1 FROM djsync_syncrun WHERE id = %s FOR NO KEY UPDATE NOWAIT", found[0]
            )
        except psycopg.errors.LockNotAvailable:
            return "locked by the run's own transaction"
    return "free"


@pytest.mark.skipif(
    __import__("os").environ.get("DJSYNC_TEST_DB") == "sqlite",
    reason="a second connection's row lock: PostgreSQL",
)
@pytest.mark.django_db(transaction=True)
def test_a_long_staged_read_leaves_the_runs_row_free_for_the_heartbeat(
    make_job, write_csv, job_path, settings, monkeypatch
):
    """A staged read longer than LOCK_TTL kept its lock: before, the read's progress was
    written on the run's own connection, inside the staging transaction, so the heartbeat's
    write of the same row waited until the read ended, and a Redis lease ran out meanwhile
    (a 10,000,000-row hooked import lost its lock after 60 s)."""
    from djsync.backends import postgresql
    from djsync.mapping.registry import register, unregister

    monkeypatch.setattr(postgresql, "COPY_CHUNK", 300)  # progress every 300 rows
    settings.DJSYNC = {
        **settings.DJSYNC,
        "LOCK_TTL": 2,
        "HEARTBEAT_INTERVAL": 0.3,
        "LOCK_BACKEND": "redis",
        "LOCK_REDIS_URL": "redis://127.0.0.1:6379/9",
    }
    register(_SlowProducts)
    try:
        rows = [
            {"sku": f"S{i:05}", "name": f"n{i}", "price": "1.00", "qty": "1", "updated": ""}
            for i in range(2500)
        ]
        job = make_job("test_slow_hooked_products", source={"path": job_path(write_csv(rows))})
        _SlowProducts.job_id, _SlowProducts.locked = job.pk, []
        run = djsync.run(job)
    finally:
        unregister("test_slow_hooked_products")
    assert _SlowProducts.locked == ["free"]
    assert run.status == "succeeded", run.error
    assert run.created == 2500 and run.stats["testapp.Product"]["path"].startswith("staged")

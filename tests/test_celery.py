"""Runs on a real Celery worker and beat on the machine's Redis, started by this module.

The worker is a ``celery worker`` subprocess (prefork, two processes) on a queue of its
own, reading and writing the test run's PostgreSQL database; the tests use
``transaction=True`` so that it sees their data. Apply phases are held at a "gate" (see
tests/celery_helpers.py) so that tests can kill, cancel or race a run at a known point
without relying on timing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from djsync import queue
from djsync.conf import settings as djsync_settings
from djsync.models import SyncRun
from djsync.runs.monitor import cancel, follow
from djsync.runs.schedules import periodic_task
from tests.httpserver import ApiServer, Collection
from tests.testapp.models import Product

REDIS_URL = os.environ.get("DJSYNC_TEST_REDIS", "redis://127.0.0.1:6379/5")
ROOT = Path(__file__).resolve().parent.parent
API_TOKEN = "worker-api-token"

pytestmark = [
    pytest.mark.celery,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        os.environ.get("DJSYNC_TEST_DB") == "sqlite",
        reason="a worker process cannot share the in-memory SQLite test database; "
        "the real-worker tests run on PostgreSQL (DJSYNC_TEST_DB=postgres)",
    ),
]


class Process:
    """A ``celery`` subprocess (worker or beat) with its log in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.handle = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.celery_app", *args],
            cwd=ROOT,
            env=env,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
        )

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"celery never logged {text!r}:\n{self.tail()}")

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.handle.close()


@pytest.fixture(scope="module")
def stack(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[dict]:
    """Redis checked, the test process's Celery app pointed at it, and a worker running
    (with the DJSYNC settings of the module's ``WORKER_DJSYNC`` too, if it has one)."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=5).ping()
    except redis.RedisError as exc:  # never a skip: these tests need Redis
        pytest.fail(f"Redis at {REDIS_URL} does not answer: {exc}")
    from tests.celery_app import app

    base = tmp_path_factory.mktemp("celery")
    queue = f"djsync-test-{uuid.uuid4().hex[:10]}"
    # An API the worker writes to: a thread of this process, on a port known only now.
    api = ApiServer().__enter__()
    os.environ["DJSYNC_TEST_API_URL"] = api.url("/api/things/")
    djsync_settings = {
        "LOCK_TTL": 2,
        "HEARTBEAT_INTERVAL": 0.4,
        "STALE_AFTER": 2,
        "LOCK_WAIT": 0,
        "MAX_RETRIES": 2,
        "RETRY_BACKOFF": 0.2,
        "RETRY_BACKOFF_MAX": 1,
        "UPLOAD_ROOT": str(base / "uploads"),
        # the worker and the tests share one file root: every test's tmp_path is under it
        "FILE_ROOTS": {"tests": str(tmp_path_factory.getbasetemp())},
        "HTTP_BASE_URLS": [api.url("/api/")],
        "CREDENTIALS": {"things": API_TOKEN},
        **getattr(request.module, "WORKER_DJSYNC", {}),
    }
    (base / "gates").mkdir()
    os.environ["DJSYNC_TEST_GATE_DIR"] = str(base / "gates")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.celery_worker_settings",
        "DJSYNC_WORKER_DB": connection.settings_dict["NAME"],
        "DJSYNC_WORKER_BROKER": REDIS_URL,
        "DJSYNC_WORKER_QUEUE": queue,
        "DJSYNC_WORKER_DJSYNC": json.dumps(djsync_settings),
        "DJSYNC_TEST_GATE_DIR": str(base / "gates"),
        "DJSYNC_TEST_API_URL": api.url("/api/things/"),
    }
    saved = {
        key: app.conf[key]
        for key in ("broker_url", "result_backend", "task_always_eager", "task_default_queue")
    }
    _reconnect(
        app,
        broker_url=REDIS_URL,
        result_backend=REDIS_URL,
        task_always_eager=False,
        task_default_queue=queue,
    )
    worker = Process(
        [
            "worker",
            "-l",
            "info",
            "-P",
            "prefork",
            "-c",
            "2",
            "-Q",
            queue,
            "-n",
            f"{queue}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--prefetch-multiplier",
            "1",
        ],
        env,
        base / "worker.log",
    )
    try:
        worker.wait_for_log(" ready.")
        yield {
            "env": env,
            "dir": base,
            "gates": base / "gates",
            "settings": djsync_settings,
            "worker": worker,
            "api": api,
        }
    finally:
        for hold in (base / "gates").glob("*.hold"):
            hold.unlink()
        worker.stop()
        _reconnect(app, **saved)
        redis.Redis.from_url(REDIS_URL).delete(queue)
        api.__exit__(None, None, None)
        os.environ.pop("DJSYNC_TEST_API_URL", None)


def _reconnect(app: Any, **conf: Any) -> None:
    """Apply broker settings to an app that may have connected (or run eagerly) before."""
    app.close()
    app.conf.update(**conf)
    app._backend_cache = None
    app._local = threading.local()
    app.__dict__.pop("amqp", None)


@pytest.fixture(autouse=True)
def same_settings(stack: dict, settings: Any) -> None:
    settings.DJSYNC = stack["settings"]


# -- helpers -------------------------------------------------------------------------------
def rel(path: Any) -> str:
    """A file's path as a job gives it: relative to the shared "tests" file root."""
    return os.path.relpath(path, djsync_settings.FILE_ROOTS["tests"])


def product_rows(*skus: str, price: str = "1.00") -> list[dict[str, str]]:
    return [
        {"sku": s, "name": f"Product {s}", "price": price, "qty": "1", "updated": "", "active": "1"}
        for s in skus
    ]


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"gave up waiting for {what}")


def hold(stack: dict, sku: str) -> None:
    (stack["gates"] / f"{sku}.hold").touch()


def release(stack: dict, sku: str) -> None:
    (stack["gates"] / f"{sku}.hold").unlink(missing_ok=True)


def reached(stack: dict, sku: str) -> int:
    """Wait until a worker process waits at the gate of ``sku``; its process id."""
    path = stack["gates"] / f"{sku}.reached"
    wait_for(path.exists, f"a worker to reach the gate at {sku}")
    return int(wait_for(lambda: path.read_text().strip(), f"the pid at {sku}"))


def skus() -> list[str]:
    return sorted(Product.objects.values_list("sku", flat=True))


# -- queue → preview → apply ---------------------------------------------------------------
def test_queue_preview_then_apply_on_a_worker(stack, make_job, write_csv):
    from celery.result import AsyncResult

    from djsync.tasks import apply_run

    job = make_job("test_products", source={"path": rel(write_csv(product_rows("A1", "A2")))})
    run = follow(queue.queue_preview(job).pk)
    assert run.status == "previewed", run.error
    assert (run.created, run.trigger) == (2, "admin")
    assert skus() == []
    assert AsyncResult(run.task_id).get(timeout=30)["status"] == "previewed"

    result = apply_run.delay(run.pk).get(timeout=30)
    run.refresh_from_db()
    assert result["status"] == run.status == "succeeded"
    assert skus() == ["A1", "A2"]


def test_staleness_between_preview_and_apply_on_a_worker(stack, make_job, write_csv):
    from djsync.tasks import apply_run

    Product.objects.create(sku="S1", name="Product S1", price=1)
    job = make_job(
        "test_products", source={"path": rel(write_csv(product_rows("S1", "S2", price="2")))}
    )
    run = follow(queue.queue_run(job, dry_run=True).pk)
    assert (run.status, run.created, run.updated) == ("previewed", 1, 1)
    Product.objects.filter(sku="S1").update(price=Decimal("7"))

    apply_run.delay(run.pk).get(timeout=30, propagate=False)
    run.refresh_from_db()
    assert run.status == "failed"
    assert "S1 (changed)" in run.error and "preview again" in run.error
    assert skus() == ["S1"] and Product.objects.get().price == Decimal("7")


# -- one run per job -----------------------------------------------------------------------
def test_two_runs_of_one_job_exactly_one_applies(stack, make_job, write_csv):
    from celery.result import AsyncResult

    job = make_job("test_products_gated", source={"path": rel(write_csv(product_rows("G1", "G2")))})
    hold(stack, "G1")
    first = queue.queue_run(job, trigger="api")
    reached(stack, "G1")

    # Progress is committed outside the apply transaction: visible while it is open.
    first.refresh_from_db()
    assert (first.status, first.rows_read, first.created) == ("applying", 2, 2)
    beat = first.heartbeat_at
    wait_for(lambda: SyncRun.objects.get(pk=first.pk).heartbeat_at > beat, "a new heartbeat")
    state = wait_for(
        lambda: (r := AsyncResult(first.task_id)).state == "PROGRESS" and r.info, "task state"
    )
    assert state["run"] == first.pk and state["status"] == "applying"

    second = follow(queue.queue_run(job, trigger="api").pk)
    assert second.status == "failed"
    assert f"run #{first.pk} of this job is active" in second.error
    release(stack, "G1")
    first = follow(first.pk)
    assert first.status == "succeeded", first.error
    assert skus() == ["G1", "G2"]
    assert list(job.runs.filter(status="succeeded").values_list("pk", flat=True)) == [first.pk]


def test_a_worker_killed_while_applying(stack, make_job, write_csv):
    Product.objects.create(sku="K1", name="Product K1", price=1)
    rows = product_rows("K1", "K2", price="2")
    rows[0]["name"] = "K1-renamed"
    job = make_job("test_products_gated", source={"path": rel(write_csv(rows))})
    hold(stack, "K1-renamed")  # the update of K1 comes after the insert of K2
    run = queue.queue_run(job)
    os.kill(reached(stack, "K1-renamed"), signal.SIGKILL)

    dead = follow(run.pk)  # the heartbeat stops, the lock expires: marked failed
    assert dead.status == "failed"
    assert "the worker running it stopped during applying" in dead.error
    assert skus() == ["K1"] and Product.objects.get().price == Decimal("1")

    release(stack, "K1-renamed")
    again = follow(queue.queue_run(job).pk)
    assert again.status == "succeeded", again.error
    assert skus() == ["K1", "K2"] and Product.objects.get(sku="K1").price == Decimal("2")


# -- retries -------------------------------------------------------------------------------
def test_transient_source_errors_are_retried(stack, make_job, write_csv, tmp_path):
    counter = tmp_path / "reads"
    source = {
        "kind": "flaky",
        "path": rel(write_csv(product_rows("R1"))),
        "counter": rel(counter),
        "fail_times": 2,
    }
    run = follow(queue.queue_run(make_job("test_products", source=source)).pk)
    assert run.status == "succeeded", run.error
    assert run.attempts == 3 and counter.read_text() == "3"
    assert skus() == ["R1"]


def test_a_scheduled_run_retried_on_a_worker_succeeds_on_its_second_attempt(
    stack, make_job, write_csv, tmp_path
):
    """beat's task creates its run; Celery's retry (same task id) works on that same run."""
    from djsync.tasks import run_job

    source = {
        "kind": "flaky",
        "path": rel(write_csv(product_rows("R2"))),
        "counter": rel(tmp_path / "reads"),
        "fail_times": 1,
    }
    job = make_job("test_products", source=source)
    result = run_job.delay(job.pk).get(timeout=60)
    run = job.runs.get()
    assert result["run"] == run.pk and result["status"] == run.status == "succeeded"
    assert run.attempts == 2 and run.trigger == "schedule"
    assert skus() == ["R2"]


def test_retries_give_up_and_data_errors_are_never_retried(stack, make_job, write_csv, tmp_path):
    source = {
        "kind": "flaky",
        "path": rel(write_csv(product_rows("R1"))),
        "counter": rel(tmp_path / "reads"),
        "fail_times": 99,
    }
    busy = follow(queue.queue_run(make_job("test_products", source=source)).pk)
    assert busy.status == "failed" and busy.attempts == 3
    assert "the server is busy" in busy.error

    bad = write_csv([{"name": "no key column", "price": "1"}], name="bad.csv")
    job = make_job("test_products", name="bad", source={"path": rel(bad)})
    run = follow(queue.queue_run(job).pk)
    assert run.status == "failed" and run.attempts == 1
    assert "missing column" in run.error and "'sku'" in run.error
    assert skus() == []


# -- cancel --------------------------------------------------------------------------------
def test_cancel_a_running_run_writes_nothing(stack, make_job, write_csv):
    from celery.result import AsyncResult

    job = make_job("test_products_gated", source={"path": rel(write_csv(product_rows("C1", "C2")))})
    hold(stack, "C1")
    run = queue.queue_run(job)
    reached(stack, "C1")
    assert cancel(run).cancel_requested
    release(stack, "C1")
    run = follow(run.pk)
    assert run.status == "cancelled" and "cancelled" in run.error
    assert AsyncResult(run.task_id).get(timeout=30)["status"] == "cancelled"
    assert skus() == []


def test_cancel_a_queued_run(stack, make_job, write_csv):
    from djsync.tasks import execute_run

    job = make_job("test_products", source={"path": rel(write_csv(product_rows("Q1")))})
    run = SyncRun.objects.create(job=job, trigger="api", status="queued")
    assert cancel(run).status == "cancelled"
    result = execute_run.delay(run.pk).get(timeout=30)  # the message arrives anyway
    assert result == {"run": run.pk, "status": "cancelled", "skipped": True}
    assert skus() == []


# -- beat ----------------------------------------------------------------------------------
def test_a_due_schedule_fires_a_run(stack, make_job, write_csv):
    job = make_job(
        "test_products",
        source={"path": rel(write_csv(product_rows("B1")))},
        schedule="every 1 second",
    )
    assert periodic_task(job).enabled
    beat = Process(["beat", "-l", "info", "-S", "django"], stack["env"], stack["dir"] / "beat.log")
    try:
        run = wait_for(
            lambda: job.runs.filter(trigger="schedule", status="succeeded").first(),
            "beat to run the job",
            timeout=45,
        )
    finally:
        beat.stop()
    assert run.created == 1 and skus() == ["B1"]


# -- runsync --async / --wait --------------------------------------------------------------
def test_runsync_async_and_wait(stack, make_job, write_csv):
    job = make_job("test_products", source={"path": rel(write_csv(product_rows("W1")))})
    out = StringIO()
    call_command("runsync", job.name, "--async", stdout=out)
    run_id = int(re.fullmatch(r"test-products: queued run (\d+)\n", out.getvalue())[1])
    assert follow(run_id).status == "succeeded"

    out = StringIO()
    path = write_csv(product_rows("W1", "W2"), name="day2.csv")
    call_command("runsync", job.name, "--wait", "--file", str(path), stdout=out)
    assert "test-products: succeeded" in out.getvalue() and "1 created" in out.getvalue()
    assert skus() == ["W1", "W2"]

    missing = make_job("test_products", name="missing", source={"path": "nonexistent.csv"})
    with pytest.raises(CommandError, match="file not found"):
        call_command("runsync", missing.name, "--wait", stdout=StringIO())
    assert missing.runs.get().status == "failed"


# -- an HTTP API target --------------------------------------------------------------------
def test_a_worker_syncs_a_csv_into_an_http_api(stack, make_job, write_csv):
    """The worker process sends the requests to an API in this process: creates, an update,
    a delete; the item the API refuses is a row error with its answer."""
    import tests.celery_helpers  # noqa: F401 - registers "worker-things" here too

    api, collection = stack["api"], Collection(stack["api"])
    apple = collection.add(code="A", name="Apple")
    collection.add(code="D", name="Date")
    collection.add(code="Z", name="Zebra")
    rows = [
        {"code": "A", "name": "Apricot"},
        {"code": "B", "name": "Banana"},
        {"code": "C", "name": "refuse me"},
        {"code": "D", "name": "Date"},
    ]
    job = make_job("worker-things", source={"path": rel(write_csv(rows))}, on_row_error="skip")
    out = StringIO()
    call_command("runsync", job.name, "--async", stdout=out)
    run_id = int(re.fullmatch(r"worker-things: queued run (\d+)\n", out.getvalue())[1])
    run = follow(run_id)
    assert run.status == "succeeded", run.error
    assert (run.created, run.updated, run.deleted, run.unchanged, run.errors) == (1, 1, 1, 1, 1)
    stack["worker"].wait_for_log(f"[{run.task_id}] succeeded")  # the worker ran it
    assert sorted((item["code"], item["name"]) for item in collection.items.values()) == [
        ("A", "Apricot"),
        ("B", "Banana"),
        ("D", "Date"),
    ]
    patch = next(r for r in api.requests if r.method == "PATCH")
    assert patch.path == f"/api/things/{apple}/"
    assert patch.headers["authorization"] == f"Bearer {API_TOKEN}"
    error = run.row_errors.get()
    assert error.key == ["C"] and error.column == "name"
    assert "answered 400: name: this name is refused" in error.message

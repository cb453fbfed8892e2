"""Real-time sync, measured: ``python -m bench.realtime [--case latency throughput burst kill]``.

The test project's Listing (source) → Product (target) job with ``realtime = True`` on a
PostgreSQL database of its own (created and dropped here), one Celery worker (``-P solo``,
one process) with its beat polling every 0.5 s, Redis as broker and cache.

- **latency**: single-row ``save()`` commits at 10, 100 and 1,000 changes/s, each change its
  own committed transaction on its own row, sent on schedule by producer processes (one per
  ``--per-producer`` changes/s: one Python process cannot commit 1,000 ``save()`` a second
  on a small machine); the time from the commit (the producer's clock) to the row written
  on the target (a trigger on the target table notes ``clock_timestamp()``): p50, p95, max.
  ``--producer sql`` commits raw ``UPDATE`` statements instead (psycopg, autocommit): writes
  Django does not see, woken by the beat's poll rather than by the commit.
- **throughput**: an ``UPDATE`` of 1,000 rows per transaction, rows drawn at random from
  20,000 (so some coalesce), as fast as the producer goes for 20 s: changes captured per
  second of the whole time until drained.
- **burst**: 100,000 single-row ``UPDATE`` statements (100 transactions of 1,000), then the
  time until every change is applied; **kill**: the same, with the worker SIGKILLed in the
  middle and a new one started: the target must equal the source at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
POOL = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--case", nargs="*", default=["latency", "throughput", "burst", "kill"], metavar="CASE"
    )
    parser.add_argument("--rates", nargs="*", type=int, default=[10, 100, 1000])
    parser.add_argument("--seconds", type=float, default=10.0, help="per latency rate")
    parser.add_argument(
        "--per-producer", type=int, default=250, help="latency: changes/s per producer process"
    )
    parser.add_argument("--producer", choices=["save", "sql"], default="save")
    args = parser.parse_args()
    queue = f"djsync-bench-rt-{uuid.uuid4().hex[:8]}"
    os.environ["DJSYNC_BENCH_QUEUE"] = queue
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings_realtime")
    fresh_database()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    job = seed()
    worker = start_worker(queue)
    try:
        if "latency" in args.case:
            for rate in args.rates:
                latency(rate, args.seconds, per_producer=args.per_producer, how=args.producer)
        if "throughput" in args.case:
            throughput(20.0)
        if "burst" in args.case:
            burst(kill=False, worker=worker, queue=queue)
        if "kill" in args.case:
            worker = burst(kill=True, worker=worker, queue=queue)
        check_in_step()
        from djsync.realtime.history import throughput as figures

        runs = job.runs.filter(trigger="realtime")
        failed = runs.filter(status="failed").count()
        print(f"realtime runs recorded: {runs.count():,} (failed: {failed})")
        last = figures(job, 15)
        print(
            f"throughput over the last 15 min (admin): {last.changes:,} changes, "
            f"{last.changes_per_minute:,.0f}/min"
        )
    finally:
        stop(worker)


# -- set-up --------------------------------------------------------------------------------
def fresh_database() -> None:
    import psycopg

    name = os.environ.get("DJSYNC_BENCH_DB", "djsync_bench_rt")
    with psycopg.connect(
        host=os.environ.get("PGHOST", "127.0.0.1"),
        user=os.environ.get("PGUSER", "postgres"),
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    import redis

    from bench.settings_realtime import REDIS

    client = redis.Redis.from_url(REDIS)
    for key in client.scan_iter("*djsync:*"):  # locks and wake-ups of an earlier run
        client.delete(key)


def seed() -> Any:
    """POOL listings synced into products by a full run, then the job made real-time."""
    from decimal import Decimal

    from django.db import connection

    import djsync
    from djsync.models import SyncJob
    from tests.testapp.models import Listing

    Listing.objects.bulk_create(
        Listing(sku=f"L{i:07d}", name="a", price=Decimal("1.00"), qty=0) for i in range(POOL)
    )
    job = SyncJob.objects.create(name="listings", importer="test_realtime_products")
    run = djsync.run(job)
    assert run.created == POOL, run.error
    job.realtime = True
    job.save()  # installs the trigger (autocommit: at once)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_applied (name text, at double precision)")
        cursor.execute(
            """CREATE FUNCTION bench_applied() RETURNS trigger AS $$ BEGIN
               INSERT INTO bench_applied VALUES (NEW.name, extract(epoch FROM clock_timestamp()));
               RETURN NULL; END $$ LANGUAGE plpgsql"""
        )
        cursor.execute(
            "CREATE TRIGGER bench_applied AFTER UPDATE ON testapp_product FOR EACH ROW "
            "WHEN (NEW.name LIKE 'v%%') EXECUTE FUNCTION bench_applied()"
        )
    return job


def start_worker(queue: str) -> subprocess.Popen[bytes]:
    log = Path(f"/tmp/{queue}.log")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", "-B"]
    args += ["-s", f"/tmp/{queue}-beat", "-P", "solo", "-Q", queue, "-l", "warning"]
    args += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )
    time.sleep(4)  # the worker connects; the first changes wait for it in the queue anyway
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM: the worker stops its embedded beat too."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_drained(timeout: float = 600) -> float:
    """Seconds until no change is pending (parked ones do not count)."""
    from djsync.models import PendingChange

    start = time.monotonic()
    while PendingChange.objects.filter(parked_at__isnull=True).exists():
        if time.monotonic() - start > timeout:
            raise SystemExit("not drained in time")
        time.sleep(0.05)
    return time.monotonic() - start


# -- cases ---------------------------------------------------------------------------------
def latency(rate: int, seconds: float, *, per_producer: int = 250, how: str = "save") -> None:
    """``rate`` changes/s for ``seconds``, each change its own committed transaction, on
    schedule, from ``ceil(rate / per_producer)`` producer processes (started, connected and
    with their rows read before the clock starts)."""
    import multiprocessing

    from django.db import connection, connections

    from tests.testapp.models import Listing

    count = int(rate * seconds)
    pks = list(Listing.objects.order_by("?").values_list("pk", flat=True)[:count])
    every = 1 / rate
    producers = max(1, -(-rate // per_producer))
    connections.close_all()  # nothing shared with the producers
    context = multiprocessing.get_context("spawn")
    ready, go = context.Barrier(producers + 1), context.Barrier(producers + 1)
    start_at = context.Value("d", 0.0)
    results = context.Queue()
    procs = [
        context.Process(
            target=produce,
            args=(
                how,
                every,
                # Change j is committed at start + j * every, by producer j % producers.
                [(j, pks[j], f"v{rate}-{j}") for j in range(p, count, producers)],
                (ready, go, start_at, results),
            ),
        )
        for p in range(producers)
    ]
    for proc in procs:
        proc.start()
    ready.wait(timeout=120)
    start = start_at.value = time.time() + 0.2
    go.wait(timeout=120)
    committed: dict[str, float] = {}
    late = 0.0
    for _proc in procs:
        times, behind = results.get(timeout=seconds + 300)
        committed.update(times)
        late = max(late, behind)
    for proc in procs:
        proc.join()
    achieved = count / (max(committed.values()) - start + every)
    wait_drained()
    deadline = time.monotonic() + 60
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT name, at FROM bench_applied WHERE name LIKE %s", [f"v{rate}-%"])
            applied = dict(cursor.fetchall())
            if len(applied) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    lags = sorted(applied[name] - at for name, at in committed.items() if name in applied)
    p95 = lags[int(len(lags) * 0.95) - 1]
    print(
        f"latency at {rate:,}/s (achieved {achieved:,.0f} commits/s, {producers} producer "
        f"processes ({how}), at most {late * 1000:,.0f} ms behind schedule, {count:,} "
        f"changes, {len(lags):,} applied): p50 {statistics.median(lags) * 1000:,.0f} ms, "
        f"p95 {p95 * 1000:,.0f} ms, max {lags[-1] * 1000:,.0f} ms"
    )


def produce(how: str, every: float, changes: list[tuple[int, int, str]], sync: Any) -> None:
    """One producer process: each change committed alone at its time; puts when each
    committed, and how far behind its schedule the producer fell at most, on the queue."""
    ready, go, start_at, results = sync
    import django

    django.setup()
    from django.db import connection, transaction

    from tests.testapp.models import Listing

    rows = Listing.objects.in_bulk([pk for _j, pk, _name in changes])
    connection.ensure_connection()
    ready.wait()
    go.wait()
    start = start_at.value
    committed: dict[str, float] = {}
    behind = 0.0
    for j, pk, name in changes:
        if (pause := start + j * every - time.time()) > 0:
            time.sleep(pause)
        else:
            behind = max(behind, -pause)
        if how == "sql":  # Django's connection is in autocommit: one statement, one commit
            with connection.connection.cursor() as cursor:
                cursor.execute("UPDATE testapp_listing SET name = %s WHERE id = %s", [name, pk])
        else:
            row = rows[pk]
            with transaction.atomic():
                row.name = name
                row.save(update_fields=["name"])
        committed[name] = time.time()
    connection.close()
    results.put((committed, behind))


def throughput(seconds: float) -> None:
    from django.db import connection, transaction

    from tests.testapp.models import Listing

    pool = list(Listing.objects.order_by("pk").values_list("pk", flat=True)[:20_000])
    changes = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "UPDATE testapp_listing SET qty = qty + 1 WHERE id = ANY(%s)",
                [random.sample(pool, 1000)],
            )
        changes += 1000
    produced = time.monotonic() - start
    drained = wait_drained()
    total = produced + drained
    print(
        f"sustained: {changes:,} changes ({changes / produced:,.0f}/s produced for "
        f"{produced:.1f} s), drained {drained:.1f} s after: {changes / total:,.0f} changes/s"
    )


def burst(*, kill: bool, worker: subprocess.Popen[bytes], queue: str) -> subprocess.Popen[bytes]:
    from django.db import connection, transaction

    from djsync.models import PendingChange
    from tests.testapp.models import Listing

    ids = list(Listing.objects.order_by("pk").values_list("pk", flat=True)[:100_000])
    start = time.monotonic()
    for i in range(0, len(ids), 1000):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(
                "UPDATE testapp_listing SET qty = qty + 1 WHERE id = %s",
                [[pk] for pk in ids[i : i + 1000]],
            )
    produced = time.monotonic() - start
    if kill:  # in the middle of the drain, and of a batch's run
        from djsync.models import SyncRun

        left = PendingChange.objects.count()
        while PendingChange.objects.count() > left // 2 or not SyncRun.objects.running().exists():
            time.sleep(0.01)
        children = subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True, text=True)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        for child in children.stdout.split():  # its embedded beat, orphaned otherwise
            os.kill(int(child), signal.SIGTERM)
        print(f"  worker SIGKILLed with {PendingChange.objects.count():,} changes pending")
        worker = start_worker(queue)
    drained = wait_drained()
    what = "burst with the worker killed" if kill else "burst"
    print(
        f"{what}: {len(ids):,} single-row updates in {produced:.1f} s; drained "
        f"{drained:.1f} s later ({produced + drained:.1f} s from the first)"
    )
    check_in_step()
    return worker


def check_in_step() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT count(*) FROM testapp_listing l FULL JOIN testapp_product p
               ON p.sku = l.sku WHERE (l.name, l.price, l.qty, l.active)
               IS DISTINCT FROM (p.name, p.price, p.qty, p.active)"""
        )
        (differ,) = cursor.fetchone()
    print(f"  target equals source: {'yes' if differ == 0 else f'NO, {differ:,} rows differ'}")


if __name__ == "__main__":
    main()

"""``python -m bench.scale``: one run on one worker against the same run split across workers.

The same file — ``--rows`` products (bench/data.py) — is synced three times in a row
(initial load into an empty table, no change, then the 1% change file) by a run queued on
Celery workers started here (``celery worker --pool solo``, one process each, on a Redis
queue of their own):

- ``1 worker``: one worker, the run in one partition (what a single process does);
- ``N workers × P partitions``: N workers, the run split into P partitions.

Each case is timed from queueing to the run's end (``runsync --wait`` sees the same). The
workers' peak RSS comes from ``wait4`` when they stop; the PostgreSQL backends of the
bench database are sampled meanwhile (largest private memory of one backend, RssAnon, and
of all of them together). ``uptime`` is printed before and after: other work on the
machine shows there.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from bench.data import generate
from bench.run import DATABASE, ROOT, _env, _vacuum, connect, empty, ensure_database

HERE = Path(__file__).resolve().parent
CASES = [("initial load", "base"), ("no change", "base"), ("1% change", "change")]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process so far (/proc/<pid>/stat), or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CaseSampler:
    """Samples every backend of the bench database (/proc status) while a case runs, and
    the CPU the backends and the workers (``workers``: their pids) used meanwhile: how
    many of the machine's cores the case kept busy."""

    def __init__(self, workers: tuple[int, ...] = ()) -> None:
        self.one_kib = self.all_kib = 0
        self.workers = {pid: cpu_seconds(pid) or 0.0 for pid in workers}
        self.cpu: dict[int, tuple[float, float]] = {}  # backend pid: first, last seen
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def pids(self) -> list[int]:
        with connect() as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", [DATABASE]
            ).fetchall()
        return [row[0] for row in rows]

    def sample(self) -> None:
        while not self.done.is_set():
            total = 0
            for pid in self.pids():
                try:
                    text = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in text.splitlines():
                    if line.startswith("RssAnon:"):
                        kib = int(line.split()[1])
                        total += kib
                        self.one_kib = max(self.one_kib, kib)
                used = cpu_seconds(pid)
                if used is not None:
                    self.cpu[pid] = (self.cpu.get(pid, (used, used))[0], used)
            self.all_kib = max(self.all_kib, total)
            self.done.wait(0.2)

    def stop(self) -> tuple[float, float]:
        self.done.set()
        self.thread.join()
        return self.one_kib / 1024, self.all_kib / 1024

    def cpu_used(self) -> tuple[float, float]:
        """CPU seconds of the workers and of the PostgreSQL backends during the case."""
        workers = sum((cpu_seconds(pid) or 0.0) - first for pid, first in self.workers.items())
        return workers, sum(last - first for first, last in self.cpu.values())


def start_workers(count: int, queue: str, log: Path) -> list[subprocess.Popen]:
    env = {**_env(), "DJSYNC_BENCH_QUEUE": queue}
    workers = []
    for i in range(count):
        handle = open(log.with_suffix(f".{i}.log"), "wb")  # noqa: SIM115 - closed with the run
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "bench.celery_app",
                    "worker",
                    "--pool",
                    "solo",
                    "-Q",
                    queue,
                    "-n",
                    f"w{i}-{queue}@%h",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "--prefetch-multiplier",
                    "1",
                    "-l",
                    "warning",
                ],
                cwd=ROOT,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        )
    time.sleep(4)  # the workers connect to the broker
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> list[float]:
    """Stop the workers; each one's peak RSS in MB (wait4)."""
    peaks = []
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        _, _, usage = os.wait4(worker.pid, 0)
        peaks.append(usage.ru_maxrss / 1024)
    return peaks


def run_config(
    workers: int,
    partitions: int,
    files: dict[str, Path],
    log: Path,
    importer: str = "bench_products",
) -> dict:
    import django

    django.setup()
    import bench.celery_app  # noqa: F401 - the app the queue sends with
    from djsync import queue
    from djsync.models import SyncJob
    from djsync.runs.monitor import follow

    empty()
    queue_name = f"djsync-bench-scale-{uuid.uuid4().hex[:8]}"
    os.environ["DJSYNC_BENCH_QUEUE"] = queue_name
    bench.celery_app.app.conf.task_default_queue = queue_name
    procs = start_workers(workers, queue_name, log)
    results = {}
    try:
        for case, which in CASES:
            path = files[which]
            job, _ = SyncJob.objects.update_or_create(
                name="scale",
                defaults={
                    "importer": importer,
                    "allow_delete": True,
                    "source": {"path": os.path.relpath(path, HERE / "data")},
                },
            )
            memory = CaseSampler(tuple(proc.pid for proc in procs))
            started = time.perf_counter()
            run = follow(queue.queue_run(job, partitions=partitions).pk, poll=0.1)
            seconds = time.perf_counter() - started
            one, every = memory.stop()
            worker_cpu, server_cpu = memory.cpu_used()
            if run.status != "succeeded":
                raise SystemExit(f"{case}: {run.status} {run.error}")
            results[case] = {
                "seconds": seconds,
                "counts": run.counts,
                "pg_one_mb": one,
                "pg_all_mb": every,
                "partitions": run.partitions,
                "cores": (worker_cpu + server_cpu) / seconds,
            }
            print(
                f"  {case}: {seconds:.1f} s {run.counts} (PostgreSQL: one backend "
                f"{one:.0f} MB, all {every:.0f} MB; CPU: workers {worker_cpu:.1f} s, "
                f"PostgreSQL {server_cpu:.1f} s, {(worker_cpu + server_cpu) / seconds:.2f} "
                "cores busy)",
                flush=True,
            )
            _vacuum()
    finally:
        results["peaks"] = stop_workers(procs)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument(
        "--importer",
        default="bench_products",
        help="bench_products_hooked: every row through a Python hook, far from the COPY floor",
    )
    parser.add_argument(
        "--python-csv",
        action="store_true",
        help="read the file in Python (FAST_PATH_RAW_CSV off), not by PostgreSQL's CSV parser",
    )
    args = parser.parse_args()
    if args.python_csv:
        os.environ["DJSYNC_FAST_PATH_RAW_CSV"] = "0"  # the workers inherit it
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    sys.path.insert(0, str(ROOT))
    ensure_database()
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v0"], check=True, cwd=ROOT, env=_env()
    )
    base, change = generate(args.rows, HERE / "data")
    files = {"base": base, "change": change}
    print(
        "uptime before:",
        subprocess.run(["uptime"], capture_output=True, text=True).stdout,
        flush=True,
    )
    log = HERE / "data" / "scale-worker.log"
    configs = [(1, 1), (args.workers, args.partitions)]
    table = {}
    for workers, partitions in configs:
        label = f"{workers} worker{'s' if workers > 1 else ''} × {partitions} partition" + (
            "s" if partitions > 1 else ""
        )
        print(label, flush=True)
        table[label] = run_config(workers, partitions, files, log, args.importer)
    print(f"importer {args.importer}, raw CSV {'off' if args.python_csv else 'on'}")
    print("uptime after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout)
    labels = list(table)
    print(
        f"\n| {args.rows:,} rows | "
        + " | ".join(c for c, _ in CASES)
        + " | peak RSS per worker | PostgreSQL: one backend / all (max) | cores busy |"
    )
    print("|---|" + "---|" * (len(CASES) + 3))
    for label in labels:
        r = table[label]
        cells = [f"{r[c]['seconds']:.1f} s" for c, _ in CASES]
        peaks = ", ".join(f"{p:.0f} MB" for p in r["peaks"])
        pg = max(r[c]["pg_one_mb"] for c, _ in CASES), max(r[c]["pg_all_mb"] for c, _ in CASES)
        busy = " / ".join(f"{r[c]['cores']:.2f}" for c, _ in CASES)
        print(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {peaks} | {pg[0]:.0f} / {pg[1]:.0f} MB | {busy} |"
        )
    one, split = table[labels[0]], table[labels[1]]
    print(
        "| ratio | "
        + " | ".join(f"{split[c]['seconds'] / one[c]['seconds']:.2f}×" for c, _ in CASES)
        + " | | | |"
    )


if __name__ == "__main__":
    main()

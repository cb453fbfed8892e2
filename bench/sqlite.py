"""SQLite bench: djsync's staged path and generic path, wall time and peak RSS per case.

``python -m bench.sqlite --rows 100000 [--rows 1000000] [--path staged|generic]``: each
case runs in its own process (``bench/one.py``) under ``/usr/bin/time``; the database is
a file (``DJSYNC_BENCH_SQLITE``, default ``/tmp/djsync_bench.sqlite3``), recreated before
each path's initial load. Data files come from ``bench/data`` (``python -m bench.run``
writes them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DB = os.environ.get("DJSYNC_BENCH_SQLITE", "/tmp/djsync_bench.sqlite3")
CASES = [  # (case, file, dry run)
    ("initial load", "base", False),
    ("no change", "base", False),
    ("dry run of 1% change", "change", True),
    ("1% change", "change", False),
]
TOOLS = {"staged": "djsync", "generic": "djsync-generic"}


def env() -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings_sqlite",
        "DJSYNC_BENCH_SQLITE": DB,
        "PYTHONPATH": str(ROOT),
    }


def fresh_database() -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(DB + suffix).unlink(missing_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); "
            "from django.core.management import call_command; "
            "call_command('migrate', verbosity=0)",
        ],
        env=env(),
        check=True,
    )


def measure(tool: str, case: str, path: Path, dry_run: bool) -> dict:
    command = ["/usr/bin/time", "-f", "TIME %e %M", sys.executable, "-m", "bench.one"]
    command += [tool, case, str(path)] + (["--dry-run"] if dry_run else [])
    done = subprocess.run(command, env=env(), capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{tool} {case} failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    line = next(x for x in done.stderr.splitlines() if x.startswith("TIME "))
    _, elapsed, rss = line.split()
    result.update(process_seconds=float(elapsed), rss_mb=int(rss) / 1024)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, action="append")
    parser.add_argument("--path", choices=sorted(TOOLS), action="append")
    args = parser.parse_args()
    for rows in args.rows or [100_000]:
        for path in args.path or ["generic", "staged"]:
            fresh_database()
            for case, kind, dry_run in CASES:
                data = HERE / "data" / f"products-{rows}-42-{kind}.csv"
                r = measure(TOOLS[path], case, data, dry_run)
                print(
                    f"{rows:>9,} {path:8} {case:22} {r['seconds']:7.1f} s sync "
                    f"{r['process_seconds']:7.1f} s process {r['rss_mb']:7.0f} MB  {r['counts']}",
                    flush=True,
                )


if __name__ == "__main__":
    main()

"""``make bench``: djsync, django-import-export and the COPY floor on the same table and data.

Every case runs in its own process, so each peak RSS is that tool's own. Before a tool's
initial load the table is emptied; between cases it is vacuumed and analyzed (not timed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATABASE = os.environ.get("DJSYNC_BENCH_DB", "djsync_bench")
ROOT = HERE.parent
CASES = [  # (case, file, dry run)
    ("initial load", "base", False),
    ("no change", "base", False),
    ("dry run of 1% change", "change", True),
    ("1% change", "change", False),
]
LABELS = {
    "djsync": "djsync",
    "djsync-generic": "djsync, generic path (FAST_PATH off)",
    "import-export": "django-import-export, fastest configuration",
    "copy": "COPY floor (by hand)",
}


def connect(dbname: str | None = None):  # noqa: ANN201 - a psycopg connection
    import psycopg

    return psycopg.connect(
        dbname=dbname or DATABASE,
        user=os.environ.get("PGUSER", "postgres"),
        host=os.environ.get("PGHOST", "127.0.0.1"),
        port=os.environ.get("PGPORT", "5432"),
        autocommit=True,
    )


def ensure_database() -> None:
    """Create the bench's own database on first use."""
    with connect("postgres") as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
            conn.execute(f'CREATE DATABASE "{DATABASE}"')


def sql(statement: str) -> None:
    with connect() as conn:
        conn.execute(statement)


def _env() -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", "PYTHONPATH": str(ROOT)}


def measure(tool: str, case: str, path: Path, dry_run: bool) -> dict:
    command = [sys.executable, "-m", "bench.one", tool, case, str(path)]
    if dry_run:
        command.append("--dry-run")
    process = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.PIPE)
    out = process.stdout.read() if process.stdout else b""
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{tool} / {case} failed (status {status})")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    return result


def bench(rows: int, tools: list[str], seed: int) -> dict[str, dict[str, dict]]:
    from bench.data import generate

    base, change = generate(rows, HERE / "data", seed)
    files = {"base": base, "change": change}
    results: dict[str, dict[str, dict]] = {}
    for tool in tools:
        sql(
            "TRUNCATE benchapp_product, djsync_syncchange, djsync_syncrowerror, djsync_syncrun "
            "RESTART IDENTITY CASCADE"
        )
        results[tool] = {}
        for case, file, dry_run in CASES:
            sql("VACUUM ANALYZE benchapp_product")
            result = measure(tool, case, files[file], dry_run)
            results[tool][case] = result
            print(
                f"{rows:>9,} rows  {tool:<15} {case:<22} {result['seconds']:7.2f} s "
                f"{result['peak_rss_mb']:6.0f} MB  {result['counts']}",
                flush=True,
            )
    return results


def table(rows: int, results: dict[str, dict[str, dict]]) -> str:
    lines = [
        f"### {rows:,} rows",
        "",
        "| tool | " + " | ".join(c for c, _, _ in CASES) + " | peak RSS |",
        "|---|" + "---|" * (len(CASES) + 1),
    ]
    for tool, cases in results.items():
        cells = [f"{cases[c]['seconds']:.2f} s" for c, _, _ in CASES]
        rss = max(r["peak_rss_mb"] for r in cases.values())
        lines.append(f"| {LABELS[tool]} | " + " | ".join(cells) + f" | {rss:.0f} MB |")
    ratios = []
    if "djsync" in results and "copy" in results:
        ratios.append(("djsync / COPY floor", "djsync", "copy"))
    if "djsync" in results and "import-export" in results:
        ratios.append(("django-import-export / djsync", "import-export", "djsync"))
    for label, a, b in ratios:
        cells = [f"{results[a][c]['seconds'] / results[b][c]['seconds']:.1f}×" for c, _, _ in CASES]
        lines.append(f"| *{label}* | " + " | ".join(cells) + " | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--rows",
        type=int,
        default=0,
        help="one size for every tool (default: 100,000 for all, then "
        "1,000,000 for djsync and the COPY floor)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--generic", action="store_true", help="also measure djsync's generic path (FAST_PATH off)"
    )
    args = parser.parse_args()
    small = ["djsync", "import-export", "copy"] + (["djsync-generic"] if args.generic else [])
    plans = (
        [(args.rows, small)] if args.rows else [(100_000, small), (1_000_000, ["djsync", "copy"])]
    )
    ensure_database()
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v0"], check=True, cwd=ROOT, env=_env()
    )
    tables = []
    for rows, tools in plans:
        tables.append(table(rows, bench(rows, tools, args.seed)))
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("\n\n".join(tables))
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "last.md").write_text("\n\n".join(tables) + "\n")


if __name__ == "__main__":
    main()

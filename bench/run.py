"""``make bench``: djsync, django-import-export and the COPY floor on the same table and data.

Every measured run is its own process, so each peak RSS is that tool's own; the PostgreSQL
backend serving it is sampled meanwhile (its VmHWM and its private memory, RssAnon, from
``/proc``). Before a tool's initial load the table is emptied; between cases it is
vacuumed and analyzed (not timed). Groups of cases (``--case``, default all):

- ``direct``: initial load, no change, dry run of the 1% change, 1% change; djsync,
  django-import-export (its fastest setting per case) and the hand-written COPY floor.
- ``unsorted``: the initial load and the 1% change with the file's rows in key order and
  shuffled; djsync and the COPY floor.
- ``preview-apply``: a dry run then ``apply_previewed`` of it, for the initial load and
  the 1% change, next to the direct run of the same case.
- ``multimodel``: four nycflights13-like models (airlines, airports, planes, flights) as
  one multi-model job and as four separate runs, initial load then no change.
- ``fk``: the flights alone (initial load, then no change), their foreign keys found by
  natural key among parents already in the tables, ``--parents`` planes (200,000); with
  ``--before REV`` the same runs with djsync as of git revision REV, taking turns.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
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
GROUPS = ("direct", "unsorted", "preview-apply", "multimodel", "fk")
LABELS = {
    "djsync": "djsync",
    "djsync-generic": "djsync, generic path (FAST_PATH off)",
    "djsync-pycsv": "djsync, CSV read in Python (FAST_PATH_RAW_CSV off)",
    "import-export": "django-import-export, bulk + cached + skip_unchanged",
    "import-export-skip-diff": "django-import-export, bulk + cached + skip_diff",
    "copy": "COPY floor (by hand)",
}
IMPORT_EXPORT = ("import-export", "import-export-skip-diff")
RUN_TABLES = "djsync_syncchange, djsync_syncrowerror, djsync_syncrun"
FLIGHT_TABLES = "benchapp_flight, benchapp_airline, benchapp_airport, benchapp_plane"


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


def empty(tables: str = "benchapp_product") -> None:
    sql(f"TRUNCATE {tables}, {RUN_TABLES} RESTART IDENTITY CASCADE")


def load(path: Path) -> None:
    """The product table holding exactly ``path`` (by COPY, not timed): a case's start."""
    empty()
    with connect() as conn, conn.cursor() as cursor, open(path, "rb") as handle:
        columns = "sku, name, price, qty, category, updated"
        with cursor.copy(f"COPY benchapp_product ({columns}) FROM STDIN (FORMAT csv, HEADER)") as c:
            while block := handle.read(1 << 20):
                c.write(block)


def _env() -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", "PYTHONPATH": str(ROOT)}


class BackendMemory:
    """Samples a PostgreSQL backend's /proc status while a case runs: VmHWM (peak RSS,
    shared buffers it touched included) and the largest RssAnon (its private memory:
    work_mem sorts and hashes, caches)."""

    def __init__(self, pid: int) -> None:
        self.status = Path(f"/proc/{pid}/status")
        self.hwm_kib = 0
        self.anon_kib = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self) -> None:
        while not self.done.is_set():
            try:
                text = self.status.read_text()
            except OSError:  # gone (the case ended) or not ours to read
                return
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    self.hwm_kib = max(self.hwm_kib, int(line.split()[1]))
                elif line.startswith("RssAnon:"):
                    self.anon_kib = max(self.anon_kib, int(line.split()[1]))
            self.done.wait(0.05)

    def stop(self) -> dict[str, float | None]:
        self.done.set()
        self.thread.join()
        if not self.hwm_kib:
            return {"pg_hwm_mb": None, "pg_anon_mb": None}
        return {"pg_hwm_mb": self.hwm_kib / 1024, "pg_anon_mb": self.anon_kib / 1024}


def measure(
    tool: str, case: str, path: Path, dry_run: bool = False, code: Path | None = None
) -> dict:
    """Run one case in a child process: its sync seconds, counts, peak RSS, and its server
    backend's peak memory. ``code``: a folder whose ``djsync`` the case runs instead."""
    command = [sys.executable, "-m", "bench.one", tool, case, str(path)]
    if dry_run:
        command.append("--dry-run")
    # ``python -m`` puts its working directory first on sys.path: ``code``'s djsync then
    # comes before this checkout's (bench itself from PYTHONPATH).
    process = subprocess.Popen(command, cwd=code or ROOT, env=_env(), stdout=subprocess.PIPE)
    assert process.stdout is not None
    backend = None
    lines = []
    for raw in process.stdout:
        line = json.loads(raw)
        if "backend_pid" in line and backend is None:
            backend = BackendMemory(line["backend_pid"])
        else:
            lines.append(line)
    _, status, usage = os.wait4(process.pid, 0)
    server = backend.stop() if backend else {"pg_hwm_mb": None, "pg_anon_mb": None}
    if status != 0 or not lines:
        raise SystemExit(f"{tool} / {case} failed (status {status})")
    result = lines[-1]
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    result.update(server)
    print(
        f"  {tool:<28} {case:<30} {result['seconds']:7.2f} s {result['peak_rss_mb']:6.0f} MB"
        f"  server {_server(result)}  {result['counts']}"
        + (f"  {_phases(result)}" if result.get("phases") else ""),
        flush=True,
    )
    return result


def _server(result: dict) -> str:
    if result.get("pg_hwm_mb") is None:
        return "n/a"
    return f"{result['pg_hwm_mb']:.0f}/{result['pg_anon_mb']:.0f} MB"


def _phases(result: dict) -> str:
    return ", ".join(f"{k} {v:.2f} s" for k, v in result["phases"].items())


def _vacuum(tables: str = "benchapp_product") -> None:
    for table in tables.split(", "):
        sql(f"VACUUM ANALYZE {table}")


# -- the groups ------------------------------------------------------------------------------


def direct(
    rows: int, tools: list[str], files: dict[str, Path], ie_all: bool, repeat: int = 1
) -> str:
    if repeat > 1:
        return direct_table(rows, interleaved(tools, files, ie_all, repeat), repeat)
    results: dict[str, dict[str, dict]] = {}
    for tool in tools:
        empty()
        results[tool] = {}
        # skip_diff is import-export's fastest for the initial load only (BENCHMARKS.md):
        # its re-imports are measured with --ie-all.
        cases = CASES[:1] if tool == "import-export-skip-diff" and not ie_all else CASES
        for case, file, dry_run in cases:
            _vacuum()
            results[tool][case] = measure(tool, case, files[file], dry_run)
    return direct_table(rows, results)


def interleaved(
    tools: list[str], files: dict[str, Path], ie_all: bool, repeat: int
) -> dict[str, dict[str, dict]]:
    """Each case ``repeat`` times per tool, the tools taking turns, each run from the same
    prepared table (emptied, or holding the base file, vacuumed); the fastest run of each
    is kept. On a machine other work shares, the minimum is the run least disturbed, and
    taking turns puts the tools side by side in time."""
    results: dict[str, dict[str, dict]] = {tool: {} for tool in tools}
    for case, file, dry_run in CASES:
        for _ in range(repeat):
            for tool in tools:
                if tool == "import-export-skip-diff" and not ie_all and case != CASES[0][0]:
                    continue
                if case == CASES[0][0]:
                    empty()
                else:
                    load(files["base"])
                _vacuum()
                run = measure(tool, case, files[file], dry_run)
                best = results[tool].get(case)
                if best is None or run["seconds"] < best["seconds"]:
                    results[tool][case] = run
    return results


def direct_table(rows: int, results: dict[str, dict[str, dict]], repeat: int = 1) -> str:
    names = [c for c, _, _ in CASES]
    lines = [
        f"### {rows:,} rows: direct runs"
        + (f" (fastest of {repeat}, the tools taking turns)" if repeat > 1 else ""),
        "",
        "| tool | " + " | ".join(names) + " | peak RSS | PostgreSQL backend peak RSS / private |",
        "|---|" + "---|" * (len(names) + 2),
    ]
    for tool, cases in results.items():
        cells = [f"{cases[c]['seconds']:.2f} s" if c in cases else "—" for c in names]
        rss = max(r["peak_rss_mb"] for r in cases.values())
        lines.append(
            f"| {LABELS[tool]} | " + " | ".join(cells) + f" | {rss:.0f} MB | {_peak(cases)} |"
        )
    if "djsync" in results and "copy" in results:
        cells = [_ratio(results["djsync"][c], results["copy"][c]) for c in names]
        lines.append("| *djsync / COPY floor* | " + " | ".join(cells) + " | | |")
    if "djsync-pycsv" in results and "copy" in results:
        cells = [_ratio(results["djsync-pycsv"][c], results["copy"][c]) for c in names]
        label = "*djsync, CSV read in Python / COPY floor*"
        lines.append(f"| {label} | " + " | ".join(cells) + " | | |")
    measured = [t for t in IMPORT_EXPORT if t in results]
    if "djsync" in results and measured:
        cells = []
        for case in names:
            runs = [(results[t][case]["seconds"], t) for t in measured if case in results[t]]
            fastest, tool = min(runs)
            short = "skip_diff" if tool.endswith("skip-diff") else "skip_unchanged"
            cells.append(f"{fastest / results['djsync'][case]['seconds']:.1f}× ({short})")
        lines.append(
            "| *django-import-export, its fastest setting per case / djsync* | "
            + " | ".join(cells)
            + " | | |"
        )
    return "\n".join(lines)


def _ratio(a: dict, b: dict) -> str:
    return f"{a['seconds'] / b['seconds']:.2f}×"


def _peak(cases: dict[str, dict]) -> str:
    hwm = [r["pg_hwm_mb"] for r in cases.values() if r.get("pg_hwm_mb") is not None]
    anon = [r["pg_anon_mb"] for r in cases.values() if r.get("pg_anon_mb") is not None]
    return f"{max(hwm):.0f}/{max(anon):.0f} MB" if hwm else "n/a"


def shuffled(path: Path) -> Path:
    """``bench.data.shuffled`` in a process of its own: the parent must stay small, since
    Linux counts the RSS a process had when it forked in the child's ``ru_maxrss``."""
    code = "import sys; from pathlib import Path; from bench.data import shuffled; "
    code += "print(shuffled(Path(sys.argv[1])))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        cwd=ROOT,
        env=_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(done.stdout.strip())


def unsorted(rows: int, tools: list[str], files: dict[str, Path]) -> str:
    orders = {"in key order": files, "shuffled": {k: shuffled(p) for k, p in files.items()}}
    results: dict[str, dict[str, dict]] = {}
    for tool in tools:
        results[tool] = {}
        for order, paths in orders.items():
            empty()
            for case, file in (("initial load", "base"), ("1% change", "change")):
                _vacuum()
                results[tool][f"{case}, {order}"] = measure(tool, f"{case}, {order}", paths[file])
    names = [f"{c}, {o}" for c in ("initial load", "1% change") for o in orders]
    lines = [
        f"### {rows:,} rows: key order of the file",
        "",
        "| tool | " + " | ".join(names) + " | peak RSS | PostgreSQL backend peak RSS / private |",
        "|---|" + "---|" * (len(names) + 2),
    ]
    for tool, cases in results.items():
        cells = [f"{cases[c]['seconds']:.2f} s" for c in names]
        rss = max(r["peak_rss_mb"] for r in cases.values())
        lines.append(
            f"| {LABELS[tool]} | " + " | ".join(cells) + f" | {rss:.0f} MB | {_peak(cases)} |"
        )
    if "djsync" in results and "copy" in results:
        cells = [_ratio(results["djsync"][c], results["copy"][c]) for c in names]
        lines.append("| *djsync / COPY floor* | " + " | ".join(cells) + " | | |")
    if "djsync-pycsv" in results and "copy" in results:
        cells = [_ratio(results["djsync-pycsv"][c], results["copy"][c]) for c in names]
        label = "*djsync, CSV read in Python / COPY floor*"
        lines.append(f"| {label} | " + " | ".join(cells) + " | | |")
    return "\n".join(lines)


def preview_apply(rows: int, files: dict[str, Path], generic: bool) -> str:
    suffix = "-generic" if generic else ""
    direct_tool, flow_tool = f"djsync{suffix}", f"djsync-preview-apply{suffix}"
    results = {}
    empty()
    results["initial load", "direct"] = measure(direct_tool, "initial load", files["base"])
    empty()
    results["initial load", "flow"] = measure(flow_tool, "initial load", files["base"])
    _vacuum()  # the table now holds the base file, as before a direct 1% change
    results["1% change", "direct"] = measure(direct_tool, "1% change", files["change"])
    load(files["base"])
    _vacuum()
    results["1% change", "flow"] = measure(flow_tool, "1% change", files["change"])
    lines = [
        f"### {rows:,} rows: preview then apply{' (generic path)' if generic else ''}",
        "",
        "| case | direct run | preview | apply | *apply / direct* | *preview + apply / direct* "
        "| peak RSS: direct / preview + apply | PostgreSQL backend peak RSS / private: "
        "direct vs preview + apply |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in ("initial load", "1% change"):
        d, f = results[case, "direct"], results[case, "flow"]
        preview, apply = f["phases"]["preview"], f["phases"]["apply"]
        lines.append(
            f"| {case} | {d['seconds']:.2f} s | {preview:.2f} s | {apply:.2f} s "
            f"| {apply / d['seconds']:.2f}× | {f['seconds'] / d['seconds']:.2f}× "
            f"| {d['peak_rss_mb']:.0f} / {f['peak_rss_mb']:.0f} MB "
            f"| {_peak({1: d})} vs {_peak({1: f})} |"
        )
    return "\n".join(lines)


def multimodel(children: int, seed: int, generic: bool) -> str:
    from bench.data import generate_flights

    folder = generate_flights(children, HERE / "data", seed)
    suffix = "-generic" if generic else ""
    results: dict[tuple[str, str], dict] = {}
    for way in ("multimodel-job", "multimodel-separate"):
        empty(FLIGHT_TABLES)
        for case in ("initial load", "no change"):
            _vacuum(FLIGHT_TABLES)
            results[case, way] = measure(way + suffix, case, folder)
    lines = [
        f"### multi-model: {children:,} flights with airlines, airports and planes"
        + (" (generic path)" if generic else ""),
        "",
        "| case | one multi-model job | four separate runs | *one job / separate* "
        "| peak RSS: one job / separate | PostgreSQL backend peak RSS / private: "
        "one job vs separate |",
        "|---|---|---|---|---|---|",
    ]
    for case in ("initial load", "no change"):
        one, apart = results[case, "multimodel-job"], results[case, "multimodel-separate"]
        lines.append(
            f"| {case} | {one['seconds']:.2f} s | {apart['seconds']:.2f} s "
            f"| {_ratio(one, apart)} | {one['peak_rss_mb']:.0f} / {apart['peak_rss_mb']:.0f} MB "
            f"| {_peak({1: one})} vs {_peak({1: apart})} |"
        )
    return "\n".join(lines)


def checkout(revision: str) -> Path:
    """djsync as of git ``revision``, extracted into a folder of its own (bench/out)."""
    folder = HERE / "out" / f"djsync-{revision.replace('/', '-')}"
    if not (folder / "djsync").exists():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", revision, "djsync"], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def fk(children: int, parents: int, seed: int, before: str | None) -> str:
    from bench.data import generate_flights

    folder = generate_flights(children, HERE / "data", seed, planes=parents)
    empty(FLIGHT_TABLES)
    measure("fk-parents", "parents (setup)", folder)
    versions: list[tuple[str, Path | None]] = [("this checkout", None)]
    if before:
        versions.insert(0, (before, checkout(before)))
    results: dict[tuple[str, str], dict] = {}
    for case in ("initial load", "no change"):
        for name, code in versions:  # taking turns, each from the same table
            if case == "initial load":
                sql("TRUNCATE benchapp_flight RESTART IDENTITY")
            _vacuum(FLIGHT_TABLES)
            results[case, name] = measure("fk-children", case, folder, code=code)
    lines = [
        f"### foreign keys: {children:,} flights, parents already stored ({parents:,} planes)",
        "",
        "| case | djsync | sync | peak RSS | PostgreSQL backend peak RSS / private |",
        "|---|---|---|---|---|",
    ]
    for (case, name), result in results.items():
        lines.append(
            f"| {case} | {name} | {result['seconds']:.2f} s | {result['peak_rss_mb']:.0f} MB "
            f"| {_peak({1: result})} |"
        )
    return "\n".join(lines)


# -- the command -----------------------------------------------------------------------------


def bench(rows: int, groups: list[str], tools: list[str], args: argparse.Namespace) -> list[str]:
    from bench.data import generate

    base, change = generate(rows, HERE / "data", args.seed)
    files = {"base": base, "change": change}
    generic = "djsync-generic" in tools
    tables = []
    for group in groups:
        print(f"== {rows:,} rows: {group}", flush=True)
        if group == "direct":
            tables.append(direct(rows, tools, files, args.ie_all, args.repeat))
        elif group == "unsorted":
            tables.append(unsorted(rows, [t for t in tools if t in SYNCING], files))
        elif group == "preview-apply":
            tables.append(preview_apply(rows, files, False))
            if generic:
                tables.append(preview_apply(rows, files, True))
        elif group == "multimodel":
            children = args.children or rows * 3 // 10
            tables.append(multimodel(children, args.seed, False))
            if generic:
                tables.append(multimodel(children, args.seed, True))
        elif group == "fk":
            children = args.children or rows * 3 // 10
            tables.append(fk(children, args.parents, args.seed, args.before))
    return tables


SYNCING = ("djsync", "djsync-pycsv", "djsync-generic", "copy")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=0,
        help="one size for every tool (default: 100,000 for all, then "
        "1,000,000 for djsync and the COPY floor)",
    )
    parser.add_argument(
        "--case",
        action="append",
        choices=GROUPS,
        help="a group of cases to run (repeatable; default: all)",
    )
    parser.add_argument(
        "--children",
        type=int,
        default=0,
        help="flights in the multi-model case (default: 0.3 × --rows, so 300,000 at 1,000,000)",
    )
    parser.add_argument(
        "--parents", type=int, default=200_000, help="planes in the fk case (default 200,000)"
    )
    parser.add_argument(
        "--before",
        metavar="REV",
        help="fk case: also run djsync as of this git revision (before/after, taking turns)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="direct group: run each case this many times per tool, the tools taking turns "
        "from the same prepared table, and keep the fastest (for a machine that is not quiet)",
    )
    parser.add_argument(
        "--generic", action="store_true", help="also measure djsync's generic path (FAST_PATH off)"
    )
    parser.add_argument(
        "--python-csv",
        action="store_true",
        help="also measure djsync with the CSV file read in Python (FAST_PATH_RAW_CSV off), "
        "side by side",
    )
    parser.add_argument(
        "--ie-all",
        action="store_true",
        help="measure both django-import-export settings on every case (skip_diff's "
        "re-imports take minutes at 100,000 rows; by default only its initial load)",
    )
    parser.add_argument(
        "--no-import-export",
        action="store_true",
        help="leave django-import-export out (it takes ~1-2 minutes per 100,000 rows)",
    )
    args = parser.parse_args()
    groups = args.case or list(GROUPS)
    small = ["djsync", "import-export", "import-export-skip-diff", "copy"]
    if args.no_import_export:
        small = ["djsync", "copy"]
    if args.generic:
        small.append("djsync-generic")
    large = ["djsync", "copy"]
    if args.python_csv:
        small.insert(1, "djsync-pycsv")
        large.insert(1, "djsync-pycsv")
    plans = [(args.rows, small)] if args.rows else [(100_000, small), (1_000_000, large)]
    ensure_database()
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v0"], check=True, cwd=ROOT, env=_env()
    )
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    tables = []
    for rows, tools in plans:
        tables += bench(rows, groups, tools, args)
    loadavg = os.getloadavg()
    note = (
        f"Started {started}, command `python -m bench.run {' '.join(sys.argv[1:])}`; "
        "load average at the end: "
        f"{loadavg[0]:.2f} {loadavg[1]:.2f} {loadavg[2]:.2f}"
    )
    print(f"\n{note}\n")
    print("\n\n".join(tables))
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "last.md").write_text(note + "\n\n" + "\n\n".join(tables) + "\n")


if __name__ == "__main__":
    main()

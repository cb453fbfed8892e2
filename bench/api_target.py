"""``make bench-api``: djsync's HTTP API target against a hand-written httpx script, syncing a
CSV of accounts into the demo's directory API served on 127.0.0.1 by a real server process.

    .venv/bin/python -m bench.api_target [--rows 10000] [--mode batch --mode per-item]

The parent makes a temporary folder (under ``/dev/shm`` by default: in memory, so that
the server's 10,000 commits measure the API and not this machine's disk; ``--tmp`` to
choose) with the two SQLite databases of the demo project (djsync's runs, and the
directory's), migrates them, starts ``bench/api_server.py`` (the
demo's WSGI app under Django's threaded development server, as ``runserver --noreload``,
with ``DEBUG`` off and a middleware counting requests), and writes the accounts file and
its "1% change" (1% updated, 1% new, 1% removed). For each mode (the batch endpoint, 100
items per request; or one request per item) and tool (djsync; the script of
bench/api_baseline.py) it empties the directory's accounts, then runs the initial load,
no change and the 1% change, each in its own process (``--child``): wall time of the sync
(Django set up and imports done before the clock), its peak RSS and CPU seconds, the
seconds spent blocked on the API (every httpx request until its answer is read, timed in
httpx's transport, for both tools), and the requests the server answered, by kind.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-directory-token"
MODES = ("batch", "per-item")
TOOLS = ("djsync", "script")
CASES = (("initial load", "base"), ("no change", "base"), ("1% change", "change"))
FIRST = ["Ann", "Bob", "Cy", "Dee", "Eli", "Fay", "Gus", "Ida", "Jon", "Kim", "Lou", "Max"]
LAST = ["Lee", "Ray", "Twombly", "Ng", "Moss", "Okafor", "Silva", "Berg", "Kato", "Dumas"]
DEPARTMENTS = [f"dept-{i:02d}" for i in range(25)]


# -- data ------------------------------------------------------------------------------------
def _account(rng: random.Random, i: int) -> list[str]:
    return [
        f"user{i:06d}",
        f"user{i:06d}@example.com",
        f"{rng.choice(FIRST)} {rng.choice(LAST)} {i}",
        "yes" if rng.random() < 0.9 else "no",
        rng.choice(DEPARTMENTS),
    ]


def generate(rows: int, folder: Path, seed: int = 11) -> tuple[Path, Path]:
    """``accounts-base.csv`` and ``accounts-change.csv``: of the base's rows, 1% have a new
    name and department, 1% are gone, and 1% new ones follow."""
    rng = random.Random(seed)
    base, change = folder / "accounts-base.csv", folder / "accounts-change.csv"
    header = ["username", "email", "full_name", "active", "department"]
    with open(base, "w", newline="") as b, open(change, "w", newline="") as c:
        base_writer, change_writer = csv.writer(b), csv.writer(c)
        base_writer.writerow(header)
        change_writer.writerow(header)
        for i in range(rows):
            row = _account(rng, i)
            base_writer.writerow(row)
            if i % 100 == 1:
                continue  # removed
            if i % 100 == 2:
                row = [*row[:2], f"{rng.choice(FIRST)} {rng.choice(LAST)}-Moved {i}", row[3],
                       rng.choice(DEPARTMENTS)]  # fmt: skip
            change_writer.writerow(row)
        for i in range(rows, rows + rows // 100):
            change_writer.writerow(_account(rng, i))
    return base, change


# -- the child: one case of one tool ---------------------------------------------------------
class Blocked:
    """Seconds spent in httpx's transport (sending, waiting for and reading answers), by
    patching ``httpx.HTTPTransport`` in this process: djsync's transports derive from it."""

    seconds = 0.0
    requests = 0

    @classmethod
    def install(cls) -> None:
        import httpx

        original = httpx.HTTPTransport.handle_request

        class TimedStream(httpx.SyncByteStream):
            def __init__(self, stream: Any) -> None:
                self.stream = stream

            def __iter__(self) -> Any:
                chunks = iter(self.stream)
                while True:
                    started = time.perf_counter()
                    try:
                        chunk = next(chunks)
                    except StopIteration:
                        cls.seconds += time.perf_counter() - started
                        return
                    cls.seconds += time.perf_counter() - started
                    yield chunk

            def close(self) -> None:
                self.stream.close()

        def handle_request(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
            started = time.perf_counter()
            response = original(self, request)
            cls.seconds += time.perf_counter() - started
            cls.requests += 1
            response.stream = TimedStream(response.stream)
            return response

        httpx.HTTPTransport.handle_request = handle_request  # type: ignore[method-assign]


def djsync_importers() -> tuple[dict[str, str], Any]:
    """Register the bench's importers (one per mode); their names, and their targets' base
    class: the demo's DirectoryAccounts, keeping each instance and the HTTP sources it read
    through for the counts."""
    from typing import ClassVar

    import djsync
    from demo_project.demo.targets import DirectoryAccounts
    from djsync.sources.http import HttpSource

    class Accounts(DirectoryAccounts):
        made: ClassVar[list[Any]] = []
        sources: ClassVar[list[HttpSource]] = []

        def __init__(self) -> None:
            super().__init__()
            Accounts.made.append(self)

        def _source(self) -> HttpSource:
            source = super()._source()
            Accounts.sources.append(source)
            return source

    class AccountsPerItem(Accounts):
        batch_url = None
        # BENCH_API_CONCURRENCY=4: djsync's items four at a time (the script stays serial).
        concurrency = int(os.environ.get("BENCH_API_CONCURRENCY", "1"))

    names = {}
    for mode, target in (("batch", Accounts), ("per-item", AccountsPerItem)):
        meta = type(
            "Meta",
            (),
            {
                "name": f"bench-accounts-{mode}",
                "target": target,
                "keys": ["username"],
                "fields": ["username", "email", "full_name", "active", "department"],
                "delete": True,
            },
        )
        djsync.register(type(f"BenchAccounts{mode.title()}", (djsync.Importer,), {"Meta": meta}))
        names[mode] = f"bench-accounts-{mode}"
    return names, Accounts


class Clock:
    """Wall and CPU seconds of the sync itself; with ``BENCH_API_PROFILE`` set (a folder),
    a pyinstrument profile of it too, written there as text (profiled runs are slower)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.profiler: Any = None
        self.seconds = self.cpu = 0.0

    def __enter__(self) -> Clock:
        if os.environ.get("BENCH_API_PROFILE"):
            from pyinstrument import Profiler

            self.profiler = Profiler(interval=0.0005)
            self.profiler.start()
        self.started, self.cpu_started = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self.cpu = time.process_time() - self.cpu_started
        if self.profiler is not None:
            self.profiler.stop()
            folder = Path(os.environ["BENCH_API_PROFILE"])
            text = self.profiler.output_text(unicode=False, color=False, show_all=False)
            (folder / f"{self.name}.txt").write_text(text)


def run_djsync(mode: str, path: str, name: str) -> dict[str, Any]:
    import bench.one
    import djsync
    import djsync.targets.http  # noqa: F401 - imported before the clock
    from djsync.models import SyncJob

    names, accounts = djsync_importers()
    bench.one.warm_up("djsync")
    job, _ = SyncJob.objects.get_or_create(name=names[mode], defaults={"importer": names[mode]})
    with Clock(name) as clock:
        run = djsync.run(job, file=path, delete=True)
    if run.status != "succeeded":
        raise SystemExit(f"djsync: {run.status}: {run.error}")
    return {
        "seconds": clock.seconds,
        "cpu": clock.cpu,
        "counts": run.counts,
        "target_requests": sum(t.requests for t in accounts.made),
        "target_waited": sum(t.waited for t in accounts.made),
        "pages": sum(s.pages_read for s in accounts.sources),
    }


def run_script(mode: str, path: str, name: str) -> dict[str, Any]:
    from django.conf import settings

    from bench.api_baseline import sync

    url = f"{settings.DIRECTORY_API_URL.rstrip('/')}/accounts/"
    with Clock(name) as clock:
        counts = sync(path, url, TOKEN, batch=mode == "batch")
    return {"seconds": clock.seconds, "cpu": clock.cpu, "counts": counts}


def child(tool: str, mode: str, path: str, case: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
    import django

    django.setup()
    import httpx  # noqa: F401 - imported before the clock, for both tools

    Blocked.install()
    name = f"{tool}-{mode}-{case.replace(' ', '-').replace('%', '')}"
    out = (run_djsync if tool == "djsync" else run_script)(mode, path, name)
    out.update(blocked=Blocked.seconds, client_requests=Blocked.requests)
    print(json.dumps(out, default=str))


# -- the parent ------------------------------------------------------------------------------
class Server:
    """bench/api_server.py in its own process, for the whole bench."""

    def __init__(self, env: dict[str, str], log: Path, nagle: bool = False) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.api_server", str(self.port)]
            + (["--nagle"] if nagle else []),
            cwd=ROOT,
            env={**env, "DIRECTORY_API_URL": f"{self.url}/directory/api/"},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        for _ in range(200):
            try:
                self.counts()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise SystemExit(f"the API server did not start; see {log}") from None
                time.sleep(0.1)
        raise SystemExit(f"the API server did not answer; see {log}")

    def counts(self) -> dict[str, Any]:
        """The requests answered since the last call, by kind, and the app's seconds."""
        with urllib.request.urlopen(f"{self.url}/__bench__/counts", timeout=5) as answer:
            return json.load(answer)

    def cpu(self) -> float:
        """The server process's CPU seconds so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


def measure(
    env: dict[str, str], server: Server, tool: str, mode: str, case: str, path: Path
) -> dict[str, Any]:
    server.counts()  # from zero
    cpu = server.cpu()
    command = [sys.executable, "-m", "bench.api_target", "--child", tool, mode, str(path), case]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{tool} / {mode} / {path.name} failed ({process.returncode})")
    result = json.loads(output.decode().strip().splitlines()[-1])
    served = server.counts()
    result["server"] = served["counts"]
    result["server_busy"] = served["busy"]
    result["server_cpu"] = server.cpu() - cpu
    result["requests"] = sum(served["counts"].values())
    result["pages_served"] = served["counts"].get("GET list", 0)
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    return result


def prepare(folder: Path) -> dict[str, str]:
    """The environment of every process: the demo project on two SQLite files in
    ``folder``, migrated; DEBUG off (a server's setting; the client's too)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "demo_project.settings",
        "DJANGO_DEBUG": "0",
        "DEMO_SQLITE": str(folder / "djsync.sqlite3"),
        "DEMO_DIRECTORY_SQLITE": str(folder / "directory.sqlite3"),
        "DIRECTORY_API_TOKEN": TOKEN,
    }
    for database in ("default", "directory"):
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--database", database, "-v0"],
            cwd=ROOT,
            env=env,
            check=True,
        )
    return env


def empty_directory(folder: Path) -> None:
    """No accounts in the directory (not timed): each tool's initial load starts there."""
    with sqlite3.connect(folder / "directory.sqlite3") as db:
        db.execute("DELETE FROM directory_membership")
        db.execute("DELETE FROM directory_account")


def show(tool: str, mode: str, case: str, r: dict[str, Any]) -> None:
    counts = r["counts"] if isinstance(r["counts"], dict) else {}
    print(
        f"{tool:7} {mode:8} {case:13} {r['seconds']:7.2f} s  {r['requests']:6} requests "
        f"({_kinds(r)})  {r['requests'] / r['seconds']:6.0f}/s  blocked "
        f"{100 * r['blocked'] / r['seconds']:3.0f}%  cpu {r['cpu']:.2f} s  "
        f"server cpu {r['server_cpu']:.2f} s  rss {r['peak_rss_mb']:.0f} MB  "
        f"{ {k: v for k, v in counts.items() if v} }",
        flush=True,
    )


def _kinds(r: dict[str, Any]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(r["server"].items()))


def median(runs: list[dict[str, Any]], name: str) -> float:
    return statistics.median(r[name] for r in runs)


def table(runs: dict[tuple[str, str, str], list[dict[str, Any]]]) -> str:
    """The markdown table of bench/RESULTS.md: per mode and case, each tool's medians (and
    the range of its times), then djsync / script of the medians."""
    lines = [
        "| mode | case | tool | time: median (range) | requests (list pages + writes) "
        "| requests/s | waiting on the API | client CPU | peak RSS "
        "| *djsync / script*: time, CPU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        for case, _ in CASES:
            pair = {tool: runs.get((mode, case, tool)) for tool in TOOLS}
            for tool, done in pair.items():
                if not done:
                    continue
                seconds, cpu = median(done, "seconds"), median(done, "cpu")
                requests = done[0]["requests"]
                pages = done[0]["pages_served"]
                times = [r["seconds"] for r in done]
                ratio = ""
                other = pair["script"]
                if tool == "djsync" and other:
                    ratio = (
                        f"**{seconds / median(other, 'seconds'):.2f}×**, "
                        f"{cpu / median(other, 'cpu'):.1f}×"
                    )
                lines.append(
                    f"| {mode} | {case} | {tool} | {seconds:.2f} s ({min(times):.2f}–"
                    f"{max(times):.2f}) | {requests:,} ({pages} + {requests - pages:,}) "
                    f"| {requests / seconds:,.0f} "
                    f"| {100 * median(done, 'blocked') / seconds:.0f}% | {cpu:.2f} s "
                    f"| {max(r['peak_rss_mb'] for r in done):.0f} MB | {ratio} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--mode", action="append", choices=MODES, help="default: both")
    parser.add_argument("--tool", action="append", choices=TOOLS, help="default: both")
    parser.add_argument(
        "--tmp",
        default="/dev/shm" if os.path.isdir("/dev/shm") else None,
        help="where the SQLite files go (default /dev/shm: in memory)",
    )
    parser.add_argument(
        "--nagle",
        action="store_true",
        help="leave the server's sockets as runserver's (Nagle on: ~40 ms per small answer)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of every case; the table shows the median"
    )
    parser.add_argument("--profile", type=Path, help="write a pyinstrument profile per run here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", type=Path, help="write every result to this file")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="djsync-bench-api-", dir=args.tmp))
    env = prepare(folder)
    files = dict(zip(("base", "change"), generate(args.rows, folder), strict=True))
    server = Server(env, folder / "server.log", nagle=args.nagle)
    env["DIRECTORY_API_URL"] = f"{server.url}/directory/api/"
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        env["BENCH_API_PROFILE"] = str(args.profile.resolve())
    load = os.getloadavg()
    sockets = "Nagle on" if args.nagle else "TCP_NODELAY"
    print(
        f"{args.rows:,} accounts; API on {server.url} (Django's threaded server, DEBUG off, "
        f"{sockets}, SQLite in {folder}); load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        flush=True,
    )
    runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    tools = args.tool or list(TOOLS)
    try:
        for repeat in range(args.repeat):
            for mode in args.mode or MODES:
                for tool in tools if repeat % 2 == 0 else tools[::-1]:  # each goes first
                    empty_directory(folder)
                    for case, file in CASES:
                        result = measure(env, server, tool, mode, case, files[file])
                        runs.setdefault((mode, case, tool), []).append(result)
                        show(tool, mode, case, result)
    finally:
        server.stop()
    load = os.getloadavg()
    print(f"\nload average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print(table(runs))
    if args.json:
        every = [
            {"mode": m, "case": c, "tool": t, **r} for (m, c, t), rs in runs.items() for r in rs
        ]
        args.json.write_text(json.dumps(every, indent=1, default=str))
    if not args.keep:
        for path in sorted(folder.iterdir()):
            path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:6])
    else:
        main()

"""The demo flow of ``make demo`` — migrate, load the jobs, day 1, day 2 — as real processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = "demo_project/demo/data"
COUNTS = re.compile(
    r"^(?P<job>[\w-]+): (?P<status>\w+)(?: \(dry run\))?(?: in [\d.]+ s)? — "
    r"(?P<created>\d+) created, (?P<updated>\d+) updated, (?P<deleted>\d+) deleted, "
    r"(?P<unchanged>\d+) unchanged, (?P<errors>\d+) row errors?$",
    re.MULTILINE,
)


def summaries(output: str) -> dict[str, dict[str, str]]:
    return {m["job"]: m.groupdict() for m in COUNTS.finditer(output)}


def counts(summary: dict[str, str]) -> tuple[int, ...]:
    return tuple(int(summary[k]) for k in ("created", "updated", "deleted", "unchanged", "errors"))


@pytest.fixture
def demo(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo_project.settings",
        "DEMO_SQLITE": str(tmp_path / "demo.sqlite3"),
        "DEMO_DIRECTORY_SQLITE": str(tmp_path / "demo-directory.sqlite3"),
        "NO_COLOR": "1",
    }
    env.pop("DATABASE_URL", None)

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    return manage


def run_demo(manage) -> tuple[dict, dict, str]:
    manage("migrate", "-v0")
    manage("migrate", "--database", "directory", "-v0")
    assert "Installed 5 object(s)" in manage("loaddata", "demo_jobs")
    day1 = summaries(manage("runsync", "categories", "products", "departments", "employees"))
    day2_output = ""
    for job, name in [
        ("categories", "categories.csv"),
        ("products", "products.csv"),
        ("departments", "departments.xlsx"),
        ("employees", "employees.json"),
    ]:
        day2_output += manage("runsync", job, "--file", f"{DATA}/day2/{name}", "--diff")
    return day1, summaries(day2_output), day2_output


def test_demo_day_one_and_day_two(demo):
    day1, day2, day2_output = run_demo(demo)
    assert {job: s["status"] for job, s in day1.items()} == dict.fromkeys(
        ["categories", "products", "departments", "employees"], "succeeded"
    )
    assert counts(day1["categories"]) == (5, 0, 0, 0, 0)
    assert counts(day1["products"]) == (200, 0, 0, 0, 0)
    assert counts(day1["departments"]) == (4, 0, 0, 0, 0)
    assert counts(day1["employees"]) == (32, 0, 0, 0, 0)

    assert "4 created, 6 updated, 3 deleted" in day2_output
    assert counts(day2["products"]) == (4, 6, 3, 191, 0)
    assert counts(day2["categories"]) == (1, 0, 0, 5, 0)
    assert counts(day2["departments"]) == (0, 1, 0, 3, 0)
    assert counts(day2["employees"]) == (1, 2, 1, 29, 0)
    # The field-level diff of day 2.
    assert "~ update demo.Department [SAL] name: 'Sales' → 'Sales & Marketing'" in day2_output
    assert "~ update demo.Employee [ENG, 1] status: 'active' → 'left'" in day2_output
    assert "- delete demo.Employee [OPS, 8]" in day2_output
    assert day2_output.count("- delete demo.Product") == 3
    # Day 2 once more: the target already matches.
    again = summaries(demo("runsync", "products", "--file", f"{DATA}/day2/products.csv"))
    assert counts(again["products"]) == (0, 0, 0, 200 - 3 + 4, 0)


def test_demo_day_three_syncs_the_staff_into_the_directory_api(demo, tmp_path):
    """`make demo`'s last step: the directory's API served by runserver, the "directory"
    job run twice against it over HTTP."""
    import socket

    run_demo(demo)
    with socket.socket() as probe:  # a free port for this run's server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo_project.settings",
        "DEMO_SQLITE": str(tmp_path / "demo.sqlite3"),
        "DEMO_DIRECTORY_SQLITE": str(tmp_path / "demo-directory.sqlite3"),
        "DEMO_PORT": str(port),
        "PY": sys.executable,
        "NO_COLOR": "1",
    }
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        ["sh", "scripts/demo_directory.sh"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    first, second = list(COUNTS.finditer(done.stdout))
    # 32 staff of whom 1 left on day 2 and 1 joined (32 accounts), 4 departments (4
    # groups), one membership each (32).
    assert (first["status"], first["created"], first["errors"]) == ("succeeded", "68", "0")
    assert (second["created"], second["updated"], second["unchanged"]) == ("0", "0", "68")
    assert "→ POST http://127.0.0.1:" in done.stdout


def test_demo_from_scratch_gives_the_same_result(demo, tmp_path):
    first = run_demo(demo)[1]
    (tmp_path / "demo.sqlite3").unlink()
    second = run_demo(demo)[1]
    assert {j: counts(s) for j, s in first.items()} == {j: counts(s) for j, s in second.items()}


def test_the_directory_has_a_database_of_its_own(demo, tmp_path):
    """The demo's stand-in external system: its tables on its database, and nothing else."""
    import sqlite3

    def tables(name: str) -> set[str]:
        with sqlite3.connect(tmp_path / name) as db:
            rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {row[0] for row in rows} - {"django_migrations", "sqlite_sequence"}

    demo("migrate", "-v0")
    demo("migrate", "--database", "directory", "-v0")
    directory = {"directory_account", "directory_group", "directory_membership"}
    assert tables("demo-directory.sqlite3") == directory
    assert not tables("demo.sqlite3") & directory
    assert "djsync_syncjob" in tables("demo.sqlite3")


def test_the_demo_reads_database_url():
    """DATABASE_URL (parsed by dj-database-url) points the demo at PostgreSQL."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo_project.settings",
        "DATABASE_URL": "postgres://sync:p%40ss@db.example:5433/shop",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings as s; d = s.DATABASES['default']; "
            "print(d['ENGINE'], d['NAME'], d['USER'], d['PASSWORD'], d['HOST'], d['PORT'])",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "django.db.backends.postgresql", "shop", "sync", "p@ss", "db.example", "5433"
    ]  # fmt: skip

"""One measured case in its own process: ``python -m bench.one TOOL CASE FILE [--dry-run]``.

Prints a first JSON line with the PostgreSQL backend's pid (the parent samples that
process's memory while the case runs), then one JSON line: wall seconds of the sync itself
(Django set up before the clock starts), the counts, and for some tools the phases. The
parent reads this process's peak RSS from ``wait4``. For the multi-model tools FILE is the
folder of the four files (``bench/data.py``'s ``generate_flights``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def run_djsync(path: str, dry_run: bool) -> dict[str, Any]:
    import djsync
    from djsync.models import SyncJob

    job, _ = SyncJob.objects.get_or_create(name="bench", defaults={"importer": "bench_products"})
    run = djsync.run(job, file=path, dry_run=dry_run, delete=True)
    if run.error and not dry_run:
        raise SystemExit(run.error)
    return run.counts


def run_preview_apply(path: str, dry_run: bool) -> dict[str, Any]:
    """The admin's flow without the admin: a dry run, then ``apply_previewed`` of it."""
    import djsync
    from djsync.models import SyncJob
    from djsync.runs.orchestrator import apply_previewed

    job, _ = SyncJob.objects.get_or_create(name="bench", defaults={"importer": "bench_products"})
    started = time.perf_counter()
    preview = djsync.run(job, file=path, dry_run=True, delete=True)
    if preview.error:
        raise SystemExit(preview.error)
    previewed = time.perf_counter()
    run = apply_previewed(preview)
    if run.status != "succeeded":
        raise SystemExit(f"apply: {run.status} {run.error}")
    return {
        "counts": run.counts,
        "phases": {"preview": previewed - started, "apply": time.perf_counter() - previewed},
    }


MULTI = ("bench_airlines", "bench_airports", "bench_planes", "bench_flights")


def run_multimodel(folder: str, dry_run: bool) -> dict[str, Any]:
    """One job whose importer names the four importers (djsync/multimodel.py)."""
    import djsync
    from djsync.models import SyncJob

    relative = Path(folder).name
    sources = {n: {"path": f"{relative}/{n.removeprefix('bench_')}.csv"} for n in MULTI}
    job, _ = SyncJob.objects.update_or_create(
        name="bench-flights",
        defaults={"importer": ", ".join(MULTI), "source": {"sources": sources}},
    )
    run = djsync.run(job, dry_run=dry_run, delete=True)
    if run.error and not dry_run:
        raise SystemExit(run.error)
    return {"counts": run.counts, "stats": run.stats}


def run_separately(folder: str, dry_run: bool, names: tuple[str, ...] = MULTI) -> dict[str, Any]:
    """The same four importers as four jobs run one after the other (parents first)."""
    import djsync
    from djsync.models import SyncJob

    relative = Path(folder).name
    totals: dict[str, int] = {}
    phases = {}
    for name in names:
        job, _ = SyncJob.objects.update_or_create(
            name=name.replace("_", "-"),
            defaults={
                "importer": name,
                "source": {"path": f"{relative}/{name.removeprefix('bench_')}.csv"},
            },
        )
        started = time.perf_counter()
        run = djsync.run(job, dry_run=dry_run, delete=True)
        phases[name] = time.perf_counter() - started
        if run.error and not dry_run:
            raise SystemExit(run.error)
        for key, value in run.counts.items():
            totals[key] = totals.get(key, 0) + value
    return {"counts": totals, "phases": phases}


def run_fk_parents(folder: str, dry_run: bool) -> dict[str, Any]:
    """The ``fk`` case's setup: airlines, airports and planes, three runs (not compared)."""
    return run_separately(folder, dry_run, MULTI[:3])


def run_fk_children(folder: str, dry_run: bool) -> dict[str, Any]:
    """The ``fk`` case: flights alone, their four foreign keys found by natural key among
    parents already in the tables (none of them in the run)."""
    return run_separately(folder, dry_run, MULTI[3:])


def run_import_export(path: str, dry_run: bool, skip_diff: bool = False) -> dict[str, Any]:
    import tablib

    from bench.benchapp.resources import ProductResource, ProductSkipDiffResource

    with open(path, encoding="utf-8") as handle:
        dataset = tablib.Dataset().load(handle.read(), format="csv")
    resource = ProductSkipDiffResource() if skip_diff else ProductResource()
    result = resource.import_data(dataset, dry_run=dry_run, use_transactions=True)
    if result.has_errors() or result.has_validation_errors():
        raise SystemExit("django-import-export reported errors")
    totals = result.totals
    return {
        "created": totals.get("new", 0),
        "updated": totals.get("update", 0),
        "deleted": totals.get("delete", 0),
        "unchanged": totals.get("skip", 0),
    }


COPY_FLOOR = """
CREATE TEMP TABLE stage (sku varchar(32), name varchar(200), price numeric(10, 2),
                         qty integer, category varchar(100), updated date);
"""


def run_copy_floor(path: str, dry_run: bool) -> dict[str, Any]:
    """The hand-written sync: COPY into staging, then INSERT / UPDATE / DELETE in SQL."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(COPY_FLOOR)
        with (
            open(path, "rb") as handle,
            cursor.cursor.copy("COPY stage FROM STDIN (FORMAT csv, HEADER true)") as copy,
        ):
            while block := handle.read(1 << 20):
                copy.write(block)
        cursor.execute("ANALYZE stage")
        changed = (
            "(p.name, p.price, p.qty, p.category, p.updated) IS DISTINCT FROM "
            "(s.name, s.price, s.qty, s.category, s.updated)"
        )
        if dry_run:
            cursor.execute(
                "SELECT count(*) FILTER (WHERE p.id IS NULL), "
                f"count(*) FILTER (WHERE p.id IS NOT NULL AND s.sku IS NOT NULL AND {changed}), "
                "count(*) FILTER (WHERE s.sku IS NULL) "
                "FROM stage s FULL JOIN benchapp_product p ON p.sku = s.sku"
            )
            created, updated, deleted = cursor.fetchone()
        else:
            cursor.execute(
                "INSERT INTO benchapp_product (sku, name, price, qty, category, updated) "
                "SELECT s.* FROM stage s LEFT JOIN benchapp_product p ON p.sku = s.sku "
                "WHERE p.id IS NULL"
            )
            created = cursor.rowcount
            cursor.execute(
                "UPDATE benchapp_product p SET name = s.name, price = s.price, qty = s.qty, "
                "category = s.category, updated = s.updated FROM stage s "
                f"WHERE p.sku = s.sku AND {changed}"
            )
            updated = cursor.rowcount
            cursor.execute(
                "DELETE FROM benchapp_product p WHERE NOT EXISTS "
                "(SELECT 1 FROM stage s WHERE s.sku = p.sku)"
            )
            deleted = cursor.rowcount
        cursor.execute("DROP TABLE stage")
    return {"created": created, "updated": updated, "deleted": deleted}


#: Modules a djsync run imports on first use, where they exist (the layout moves).
DJSYNC_MODULES = (
    "djsync.runs.orchestrator",
    "djsync.runs.monitor",
    "djsync.runs.notifications",
    "djsync.multimodel",
    "djsync.sources.files",
    "djsync.backends.postgresql",
    "djsync.backends",
    "djsync.backends.postgresql",
    "djsync.runs.steps",
    "djsync.runs.lifecycle",
)


def warm_up(tool: str) -> None:
    """Imports and the database connection happen before the clock starts, for every tool."""
    import importlib

    from django.db import connection

    connection.ensure_connection()
    if tool.startswith(("djsync", "multimodel", "fk-")):
        import djsync

        package = Path(djsync.__file__).parent.parent
        for name in DJSYNC_MODULES:
            # Only this checkout's modules: an editable install would find others elsewhere.
            path = package.joinpath(*name.split("."))
            if path.with_suffix(".py").exists() or (path / "__init__.py").exists():
                importlib.import_module(name)
        # Which lock backend: the first answer imports Celery and loads its configuration
        # (about 0.1 s), once per process, as a worker has done long before a run.
        from djsync.runs import locks

        locks.backend()
    elif tool.startswith("import-export"):
        import tablib  # noqa: F401

        import bench.benchapp.resources  # noqa: F401


def backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


TOOLS = {
    "djsync": run_djsync,
    "djsync-preview-apply": run_preview_apply,
    "import-export": run_import_export,
    "import-export-skip-diff": lambda path, dry_run: run_import_export(path, dry_run, True),
    "copy": run_copy_floor,
    "multimodel-job": run_multimodel,
    "multimodel-separate": run_separately,
    "fk-parents": run_fk_parents,
    "fk-children": run_fk_children,
}


def main() -> None:
    tool, case, path = sys.argv[1:4]
    dry_run = "--dry-run" in sys.argv
    if tool.endswith("-generic"):  # djsync-generic, multimodel-separate-generic …
        os.environ["DJSYNC_FAST_PATH"] = "0"
        tool = tool.removesuffix("-generic")
    if tool.endswith("-pycsv"):  # the CSV file read in Python, not parsed by PostgreSQL
        os.environ["DJSYNC_FAST_PATH_RAW_CSV"] = "0"
        tool = tool.removesuffix("-pycsv")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    warm_up(tool)
    print(json.dumps({"backend_pid": backend_pid()}), flush=True)
    started = time.perf_counter()
    out = TOOLS[tool](path, dry_run)
    seconds = time.perf_counter() - started
    if "counts" not in out:
        out = {"counts": out}
    print(json.dumps({"case": case, "seconds": seconds, **out}, default=str))


if __name__ == "__main__":
    main()

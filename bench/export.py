"""Export jobs through the engine (a file target) against the plain streamed writer.

    DJSYNC_BENCH_DB=djsync_bench_export .venv/bin/python -m bench.export [--rows 50000]

One process, one table of ``--rows`` products (bench.benchapp), each case side by side
under tracemalloc (time and Python peak memory; the ratios are what to read):

- ``writer``: ``export_queryset`` (no comparison, no run): the admin's download, and the
  whole of an export job before file targets;
- ``job, first``: an export job into a new file (since issue 11 written whole: counts,
  no plan per row);
- ``job, no change``: the same again (the file read back and compared, nothing written;
  over ``EXPORT_COMPARE_MAX_ROWS`` — 100,000 — rewritten whole without comparing);
- ``job, 1% change``: after 1% of the rows changed (compared, then written whole; over
  the cap, rewritten whole without comparing).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Any


def measure(label: str, work: Any) -> dict[str, Any]:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        work()
        took = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {"case": label, "seconds": took, "peak_mib": peak / 1024**2}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from bench.benchapp.models import Product
    from djsync.exports.jobs import export_job, export_queryset
    from djsync.mapping.registry import bind, get_importer_class
    from djsync.models import SyncJob

    call_command("migrate", verbosity=0)
    if Product.objects.count() != args.rows:
        Product.objects.all().delete()
        Product.objects.bulk_create(
            [
                Product(
                    sku=f"SKU{n:08d}",
                    name=f"product {n}",
                    price=Decimal(n % 10_000) / 100,
                    qty=n % 97,
                    category=f"cat{n % 50}",
                    updated="2026-01-01",
                )
                for n in range(args.rows)
            ],
            batch_size=5_000,
        )
    job, _ = SyncJob.objects.get_or_create(name="bench-export", importer="bench_products")
    importer = bind(get_importer_class("bench_products"))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "products.csv"
        results = [
            measure(
                "writer (export_queryset)",
                lambda: export_queryset(
                    Product.objects.all(), Path(folder) / "plain.csv", importer=importer
                ),
            ),
            measure("job, first (new file)", lambda: export_job(job, path=path)),
            measure("job, no change", lambda: export_job(job, path=path)),
        ]
        Product.objects.filter(
            pk__in=Product.objects.order_by("pk").values_list("pk", flat=True)[
                : max(1, args.rows // 100)
            ]
        ).update(qty=1000)
        changed = Product.objects.filter(qty=1000).count()
        results.append(
            measure(f"job, 1% change ({changed} rows)", lambda: export_job(job, path=path))
        )
    base = results[0]["seconds"]
    print(f"\n{args.rows:,} rows, csv, under tracemalloc\n")
    print("| case | seconds | × writer | Python peak (MiB) |")
    print("|---|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['case']} | {r['seconds']:.2f} | {r['seconds'] / base:.1f} | "
            f"{r['peak_mib']:.1f} |"
        )


if __name__ == "__main__":
    main()

"""What ``batch_applied`` costs a run: ``python -m bench.signals [--rows N] [--db DB]``.

The test project's models on a database of its own (created and dropped here): the same
initial load and the same next-day file (10% updated, 1% new, 1% gone) synced with nobody
listening, with a receiver that does nothing, and with ``Meta.history`` writing
django-simple-history records (``test_books``). Prints one line per case (wall seconds of the
run, and the ratio to nobody listening).
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def write(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def files(folder: Path, rows: int, kind: str) -> tuple[Path, Path]:
    """(initial load, next day) for ``kind`` ("products" or "books")."""
    if kind == "products":
        header = ["sku", "name", "price", "qty", "updated", "active", "category_code"]

        def row(i: int, name: str) -> list[Any]:
            return [f"S{i:08d}", name, "1.50", 1, "", "yes", ""]
    else:
        header = ["code", "title", "copies"]

        def row(i: int, name: str) -> list[Any]:
            return [f"B{i:08d}", name, 1]

    first = [row(i, "a") for i in range(rows)]
    gone = rows // 100
    second = [row(i, "b" if i % 10 == 0 else "a") for i in range(gone, rows + gone)]
    return (
        write(folder / f"{kind}-1.csv", header, first),
        write(folder / f"{kind}-2.csv", header, second),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--db", default="postgres", choices=["postgres", "sqlite"])
    args = parser.parse_args()
    os.environ["DJSYNC_TEST_DB"] = args.db
    os.environ.setdefault("DJSYNC_PG_NAME", "bench_signals")
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django

    django.setup()
    from django.test.utils import setup_databases, teardown_databases

    import djsync
    from djsync.models import SyncJob
    from djsync.signals import batch_applied
    from tests.testapp.models import Book, Product

    def nothing(sender: type, **kwargs: Any) -> None:
        pass

    old = setup_databases(verbosity=0, interactive=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            from django.conf import settings

            settings.DJSYNC = {**settings.DJSYNC, "FILE_ROOTS": {"bench": tmp}}
            cases = [("nobody listens", "products"), ("a receiver", "products")]
            cases.append(("Meta.history", "books"))
            base: dict[str, float] = {}
            for mode, kind in cases:
                model = Product if kind == "products" else Book
                model.objects.all().delete()
                if kind == "books":
                    Book.history.all().delete()
                if mode == "a receiver":
                    batch_applied.connect(nothing, sender=Product, dispatch_uid="bench")
                importer = "test_products" if kind == "products" else "test_books"
                job, _ = SyncJob.objects.get_or_create(
                    name=f"bench-{kind}", defaults={"importer": importer, "delete_guard": 1}
                )
                for day, path in enumerate(files(folder, args.rows, kind), start=1):
                    started = time.perf_counter()
                    run = djsync.run(job, file=path)
                    took = time.perf_counter() - started
                    assert run.status == "succeeded", run.error
                    key = f"day {day}"
                    ratio = "" if mode == "nobody listens" else f"  ×{took / base[key]:.2f}"
                    base.setdefault(key, took)
                    path_taken = run.stats[model._meta.label]["path"]
                    print(
                        f"{mode:15} {key}  {took:6.2f} s{ratio:8}  {run.counts}  ({path_taken})",
                        flush=True,
                    )
                batch_applied.disconnect(sender=Product, dispatch_uid="bench")
    finally:
        teardown_databases(old, verbosity=0)


if __name__ == "__main__":
    main()

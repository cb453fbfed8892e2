"""What ``batch_applied`` costs a run: ``python -m bench.signals [--rows N] [--db DB]``.

The test project's models on a database of its own (created and dropped here): the same
initial load and the same next-day file (10% updated, 1% new, 1% gone) synced with nobody
listening, with a receiver that does nothing (``Product``), and ``Book`` without history, with
``Meta.history`` writing django-simple-history records in SQL (``test_books``,
djsync.history_sql), and with them written by ``bulk_history_create`` as before. Prints one
line per case (wall seconds of the run, and the ratio to the first case of its model).
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


def history(mode: str) -> None:
    """Book's history as ``mode`` says: off (its receivers gone), in SQL, or written by
    ``bulk_history_create`` (djsync.history told that no SQL writer exists)."""
    import djsync.history
    from djsync import history_sql
    from djsync.signals import batch_applied, batch_deleting
    from tests.testapp.models import Book
    from tests.testapp.sync import BookImporter

    uid = "djsync.history:testapp.Book"
    batch_applied.disconnect(sender=Book, dispatch_uid=uid)
    batch_deleting.disconnect(sender=Book, dispatch_uid=uid)
    if mode != "no history":
        djsync.history.connect(BookImporter)
    bulk = mode == "history: bulk"
    djsync.history.sql_history = (lambda m, v: "bench") if bulk else history_sql.sql_history  # type: ignore[assignment]


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
            cases += [("no history", "books"), ("history: SQL", "books")]
            cases.append(("history: bulk", "books"))
            base: dict[tuple[str, str], float] = {}
            for mode, kind in cases:
                history(mode)
                model = Product if kind == "products" else Book
                # in SQL: the ORM would write a "-" record per Book, one at a time
                model.objects.all()._raw_delete(model.objects.db)
                if kind == "books":
                    Book.history.all()._raw_delete(Book.objects.db)
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
                    first = (kind, key) not in base
                    ratio = "" if first else f"  ×{took / base[kind, key]:.2f}"
                    base.setdefault((kind, key), took)
                    path_taken = run.stats[model._meta.label]["path"]
                    print(
                        f"{mode:15} {key}  {took:6.2f} s{ratio:8}  {run.counts}  ({path_taken})",
                        flush=True,
                    )
                batch_applied.disconnect(sender=Product, dispatch_uid="bench")
    finally:
        history("")
        teardown_databases(old, verbosity=0)


if __name__ == "__main__":
    main()

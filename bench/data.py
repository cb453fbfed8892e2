"""Seeded product data: a base file and a "1% change" file (1% updated, 1% new, 1% removed)."""

from __future__ import annotations

import csv
import datetime as dt
import random
from pathlib import Path

HEADER = ["sku", "name", "price", "qty", "category", "updated"]
ADJECTIVES = ["red", "blue", "small", "large", "steel", "oak", "quiet", "fast", "soft", "bright"]
NOUNS = ["lamp", "kite", "chair", "table", "drill", "mug", "clock", "bag", "pen", "radio"]
CATEGORIES = [f"category {i:02d}" for i in range(40)]
START = dt.date(2024, 1, 1)


def _row(rng: random.Random, i: int) -> list[str]:
    name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {i}"
    if i % 50 == 0:
        name += ', "deluxe"'  # quoted cells, as real exports have
    cents = rng.randint(1, 999_999)
    return [
        f"SKU{i:08d}",
        name,
        f"{cents // 100}.{cents % 100:02d}",
        str(rng.randint(0, 1000)),
        rng.choice(CATEGORIES),
        (START + dt.timedelta(days=rng.randint(0, 730))).isoformat(),
    ]


def generate(rows: int, directory: Path, seed: int = 42) -> tuple[Path, Path]:
    """Write ``base.csv`` (``rows`` products) and ``change.csv``; reuse them if present."""
    directory.mkdir(parents=True, exist_ok=True)
    base = directory / f"products-{rows}-{seed}-base.csv"
    change = directory / f"products-{rows}-{seed}-change.csv"
    if base.exists() and change.exists():
        return base, change
    rng = random.Random(seed)
    with (
        open(base.with_suffix(".tmp"), "w", newline="") as b,
        open(change.with_suffix(".tmp"), "w", newline="") as c,
    ):
        base_writer, change_writer = csv.writer(b), csv.writer(c)
        base_writer.writerow(HEADER)
        change_writer.writerow(HEADER)
        for i in range(rows):
            row = _row(rng, i)
            base_writer.writerow(row)
            if i % 100 == 1:
                continue  # removed
            if i % 100 == 2:
                cents = rng.randint(1, 999_999)
                row = [
                    *row[:2],
                    f"{cents // 100}.{cents % 100:02d}",
                    str(rng.randint(0, 1000)),
                    *row[4:],
                ]
            change_writer.writerow(row)
        for i in range(rows, rows + rows // 100):
            change_writer.writerow(_row(rng, i))
    base.with_suffix(".tmp").rename(base)
    change.with_suffix(".tmp").rename(change)
    return base, change

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


def shuffled(path: Path, seed: int = 42) -> Path:
    """The same file with its rows (not the header) in a seeded random order."""
    out = path.with_name(path.stem + "-shuffled.csv")
    if out.exists():
        return out
    with open(path, newline="") as handle:
        header, *rows = handle.readlines()
    random.Random(seed).shuffle(rows)
    with open(out.with_suffix(".tmp"), "w", newline="") as handle:
        handle.write(header)
        handle.writelines(rows)
    out.with_suffix(".tmp").rename(out)
    return out


# -- the multi-model case: airlines, airports, planes and flights, like nycflights13 --------

FLIGHT_FILES = ("airlines", "airports", "planes", "flights")
AIRLINES = 16
AIRPORTS = 1_458
PLANES = 3_322
MANUFACTURERS = ["BOEING", "AIRBUS", "EMBRAER", "BOMBARDIER INC", "MCDONNELL DOUGLAS"]


def _code(i: int, letters: int) -> str:
    out = ""
    for _ in range(letters):
        i, rest = divmod(i, 26)
        out = chr(65 + rest) + out
    return out


def generate_flights(children: int, directory: Path, seed: int = 42, planes: int = PLANES) -> Path:
    """Write airlines, airports, ``planes`` planes and ``children`` flights as CSV files in
    a folder of their own (reused if present); the parents are nycflights13's sizes unless
    ``planes`` says otherwise (the ``fk`` case: a parent table of 100,000+ rows)."""
    more = "" if planes == PLANES else f"-{planes}-planes"
    folder = directory / f"flights-{children}-{seed}{more}"
    if (folder / "flights.csv").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    carriers = [_code(i * 7 + 3, 2) for i in range(AIRLINES)]
    airports = [_code(i * 11 + 5, 3) for i in range(AIRPORTS)]
    tailnums = [f"N{100 + i}{_code(i, 2)}" for i in range(planes)]
    with open(folder / "airlines.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["carrier", "name"])
        writer.writerows([c, f"{c} Air Lines Inc."] for c in carriers)
    with open(folder / "airports.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["faa", "name", "lat", "lon", "alt", "tz", "dst", "tzone"])
        for faa in airports:
            writer.writerow(
                [
                    faa,
                    f"{faa} Regional Airport",
                    f"{rng.uniform(19, 64):.6f}",
                    f"{rng.uniform(-160, -67):.6f}",
                    rng.randint(0, 9000),
                    rng.choice([-5, -6, -7, -8, -9, -10]),
                    rng.choice("AN"),
                    "America/New_York",
                ]
            )
    with open(folder / "planes.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["tailnum", "year", "type", "manufacturer", "model", "engines", "seats", "speed",
             "engine"]
        )  # fmt: skip
        for tailnum in tailnums:
            writer.writerow(
                [
                    tailnum,
                    "" if rng.random() < 0.02 else rng.randint(1960, 2013),
                    "Fixed wing multi engine",
                    rng.choice(MANUFACTURERS),
                    f"A{rng.randint(100, 999)}",
                    rng.choice([1, 2, 2, 2, 3, 4]),
                    rng.randint(2, 450),
                    "" if rng.random() < 0.95 else rng.randint(90, 430),
                    "Turbo-fan",
                ]
            )
    _write_flights(folder / "flights.csv", children, rng, carriers, airports, tailnums)
    return folder


def _write_flights(
    path: Path,
    children: int,
    rng: random.Random,
    carriers: list[str],
    airports: list[str],
    tailnums: list[str],
) -> None:
    """Flights by date then carrier and flight number: (date, carrier, flight) is unique, so
    the seven-column key (year, month, day, carrier, flight, origin, sched_dep_time) is."""
    per_day = AIRLINES * 5_000
    with open(path.with_suffix(".tmp"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time",
             "sched_arr_time", "arr_delay", "carrier", "flight", "tailnum", "origin", "dest",
             "air_time", "distance", "hour", "minute", "time_hour"]
        )  # fmt: skip
        for i in range(children):
            date = dt.date(2013, 1, 1) + dt.timedelta(days=i // per_day)
            hour, minute = rng.randint(5, 23), rng.choice(range(0, 60, 5))
            sched = hour * 100 + minute
            cancelled = rng.random() < 0.02
            delay = rng.randint(-15, 120)
            dep = (hour * 60 + minute + delay) % 1440
            arr = (dep + rng.randint(40, 400)) % 1440
            writer.writerow(
                [
                    date.year,
                    date.month,
                    date.day,
                    "" if cancelled else (dep // 60) * 100 + dep % 60,
                    sched,
                    "" if cancelled else delay,
                    "" if cancelled else (arr // 60) * 100 + arr % 60,
                    (arr // 60) * 100 + arr % 60,
                    "" if cancelled else rng.randint(-30, 150),
                    carriers[i % AIRLINES],
                    (i // AIRLINES) % 5_000 + 1,
                    "" if rng.random() < 0.01 else rng.choice(tailnums),
                    airports[rng.randrange(3)],  # three origins, as New York's
                    airports[rng.randrange(3, AIRPORTS)],
                    "" if cancelled else rng.randint(20, 600),
                    rng.randint(80, 4_983),
                    hour,
                    minute,
                    f"{date.isoformat()} {hour:02d}:00:00",
                ]
            )
    path.with_suffix(".tmp").rename(path)

"""The dry run of the 1% change alone, tools taking turns from the same target, N rounds.

``python -m bench.dry_ab ROUNDS TOOL[,TOOL…] [--load]``: each round runs every tool once
(``djsync``, ``copy``, or ``djsync@REV`` for djsync as of git revision REV, extracted as
``bench.run --before`` does), each in its own process (``bench.one``). A dry run leaves
the target as it was, so the rounds need no reload between them (``--load`` puts the
base file in first); only the run history is emptied before each run. Prints each
tool's times and its ratios to the floor: fastest against fastest, and per round (on a
shared machine the rounds' ratios show how much the load moved them).
"""

from __future__ import annotations

import os
import sys
import time

from bench import run as bench


def main() -> None:
    rounds, tools = int(sys.argv[1]), sys.argv[2].split(",")
    path = bench.HERE / "data" / "products-1000000-42-change.csv"
    if "--load" in sys.argv:
        bench.load(bench.HERE / "data" / "products-1000000-42-base.csv")
    bench._vacuum()
    print("start", time.strftime("%H:%M UTC", time.gmtime()), os.getloadavg(), flush=True)
    seconds: dict[str, list[float]] = {t: [] for t in tools}
    for _ in range(rounds):
        for name in tools:
            bench.sql(f"TRUNCATE {bench.RUN_TABLES} RESTART IDENTITY CASCADE")
            tool, _, revision = name.partition("@")
            code = bench.checkout(revision) if revision else None
            case = f"dry run of 1% change {name}"
            seconds[name].append(bench.measure(tool, case, path, True, code)["seconds"])
    print("end", time.strftime("%H:%M UTC", time.gmtime()), os.getloadavg())
    for name, times in seconds.items():
        print(name, sorted(round(s, 2) for s in times))
        if name != "copy" and "copy" in seconds:
            floor = seconds["copy"]
            pairs = sorted(round(a / b, 2) for a, b in zip(times, floor, strict=True))
            print(f"  / floor: fastest {min(times) / min(floor):.2f}×, per round {pairs}")


if __name__ == "__main__":
    main()

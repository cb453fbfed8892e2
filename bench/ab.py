"""A/B of two checkouts of djsync on the same data, interleaved: did a change cost speed?

``python bench/ab.py OLD_CHECKOUT NEW_CHECKOUT [ROUNDS]`` (after ``make bench ROWS=100000``
has made the data and the database): each round runs the initial load, no change and 1%
change cases with each checkout's own djsync, alternating, and prints the medians of the
sync's wall time and of the process's CPU time (Django set-up included).
"""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
DATA = str(HERE / "data" / "products-100000-42-base.csv")
CHANGE = str(HERE / "data" / "products-100000-42-change.csv")


def sql(q: str) -> None:
    with psycopg.connect(
        dbname="djsync_bench", user="postgres", host="127.0.0.1", autocommit=True
    ) as c:
        c.execute(q)


def one(repo: str, case: str, path: str) -> tuple[float, float]:
    """The sync's wall seconds and the whole process's CPU seconds, with ``repo``'s djsync."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", "PYTHONPATH": repo}
    cmd = [sys.executable, "-m", "bench.one", "djsync", case, path]
    p = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE)
    out = p.stdout.read()
    _, st, ru = os.wait4(p.pid, 0)
    assert st == 0, (repo, case)
    r = json.loads(out.decode().strip().splitlines()[-1])
    return r["seconds"], ru.ru_utime + ru.ru_stime


old, new = sys.argv[1], sys.argv[2]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
res = {}
for _ in range(rounds):
    for repo in (old, new):
        sql(
            "TRUNCATE benchapp_product, djsync_syncchange, djsync_syncrowerror, djsync_syncrun "
            "RESTART IDENTITY CASCADE"
        )
        cases = (("initial load", DATA), ("no change", DATA), ("1% change", CHANGE))
        for case, path in cases:
            sql("VACUUM ANALYZE benchapp_product")
            res.setdefault((repo, case), []).append(one(repo, case, path))
for (repo, case), vals in sorted(res.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    wall = statistics.median(v[0] for v in vals)
    cpu = statistics.median(v[1] for v in vals)
    print(f"{case:14} {repo:30} wall median {wall:5.2f} s  cpu median {cpu:5.2f} s")

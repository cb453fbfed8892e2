"""Bench settings on SQLite: the same apps and importer, a file database (not PostgreSQL)."""

import os

from bench.settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJSYNC_BENCH_SQLITE", "/tmp/djsync_bench.sqlite3"),
    }
}

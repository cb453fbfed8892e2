"""Django settings for the benchmarks: their own PostgreSQL database, the bench app, djsync."""

import os
from pathlib import Path

SECRET_KEY = "bench"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "import_export",
    "djsync",
    "bench.benchapp",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("DJSYNC_BENCH_DB", "djsync_bench"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
    }
}
DJSYNC = {
    "FAST_PATH": os.environ.get("DJSYNC_FAST_PATH", "1") == "1",
    "FAST_PATH_RAW_CSV": os.environ.get("DJSYNC_FAST_PATH_RAW_CSV", "1") == "1",
    # The multi-model case's jobs name their files under bench/data.
    "FILE_ROOTS": {"bench": str(Path(__file__).resolve().parent / "data")},
    # A shorter lease shows a run that cannot renew its lock in time sooner.
    "LOCK_TTL": float(os.environ.get("DJSYNC_BENCH_LOCK_TTL", "60")),
    "HEARTBEAT_INTERVAL": float(os.environ.get("DJSYNC_BENCH_HEARTBEAT", "5")),
}

"""Settings of bench/realtime.py: the test project's models (Listing → Product) on a
PostgreSQL database of its own, Celery and the cache on Redis (a cache shared by the
producer and the worker, as a deployment has)."""

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES as _DATABASES

DATABASES = {
    "default": {
        **_DATABASES["default"],
        "NAME": os.environ.get("DJSYNC_BENCH_DB", "djsync_bench_rt"),
    }
}
DATABASES["default"].pop("TEST", None)
DATABASE_ROUTERS: list[str] = []
REDIS = os.environ.get("DJSYNC_BENCH_REDIS", "redis://127.0.0.1:6379/6")
CELERY_BROKER_URL = REDIS
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("DJSYNC_BENCH_QUEUE", "djsync-bench-rt")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "celery.beat:PersistentScheduler"
CELERY_BEAT_SCHEDULE = {
    "djsync-realtime": {"task": "djsync.poll_changes", "schedule": 0.5},
}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS}}
DJSYNC = {
    "REALTIME_POLL": 0.5,
    "REALTIME_BATCH": int(os.environ.get("DJSYNC_BENCH_BATCH", "2000")),
    "REALTIME_CLAIM_TTL": 10,
    # A killed worker's lock is free again this soon (the seed's full run renews it).
    "LOCK_TTL": 15,
    "HEARTBEAT_INTERVAL": 3,
}

"""The Celery app of ``bench/scale.py``: bench settings, its own Redis queue (from the
environment), results in Redis (a chord needs them), tasks not eager."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

app = Celery("bench")
app.config_from_object("django.conf:settings", namespace="CELERY")
BROKER = os.environ.get("DJSYNC_BENCH_BROKER", "redis://127.0.0.1:6379/7")
app.conf.update(
    broker_url=BROKER,
    result_backend=BROKER,
    task_always_eager=False,
    task_default_queue=os.environ.get("DJSYNC_BENCH_QUEUE", "djsync-bench-scale"),
    worker_hijack_root_logger=False,
)
app.autodiscover_tasks()

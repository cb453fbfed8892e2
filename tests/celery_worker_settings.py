"""Settings of the Celery worker and beat that tests/test_celery.py starts as subprocesses.

The test settings, pointed at the test run's own database, Redis and queue, with the
short lock, heartbeat and retry times the test module chose (DJSYNC_WORKER_* variables).
"""

import copy
import json
import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES as _DATABASES

DATABASES = copy.deepcopy(_DATABASES)
DATABASES["default"]["NAME"] = os.environ["DJSYNC_WORKER_DB"]
CELERY_BROKER_URL = os.environ["DJSYNC_WORKER_BROKER"]
CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_DEFAULT_QUEUE = os.environ["DJSYNC_WORKER_QUEUE"]
CELERY_IMPORTS = ["tests.celery_helpers"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
DJSYNC = json.loads(os.environ.get("DJSYNC_WORKER_DJSYNC", "{}"))
if os.environ.get("DJSYNC_WORKER_POLL"):  # real-time tests: beat polls for pending changes
    CELERY_BEAT_SCHEDULER = "celery.beat:PersistentScheduler"
    CELERY_BEAT_SCHEDULE = {
        "djsync-realtime": {
            "task": "djsync.poll_changes",
            "schedule": float(os.environ["DJSYNC_WORKER_POLL"]),
        }
    }

"""``python -m bench.api_concurrency``: the HTTP target's ``concurrency`` against an API whose
answers take 20 ms each (latency-bound, as a remote API is): 200 creates one by one, 1 and 4
requests in flight. The server is tests/httpserver.py's on 127.0.0.1 (threaded)."""

from __future__ import annotations

import os
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("DJSYNC_TEST_DB", "sqlite")


def main() -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.db import models

    from djsync.conf import settings as djsync_settings
    from djsync.engine.diff import Create
    from djsync.targets import HttpApiTarget
    from tests.httpserver import ApiServer, Reply

    with ApiServer() as api:
        api.route("/api/things/", lambda request: Reply(201, {"id": 1}, delay=0.02))
        settings.DJSYNC = {**settings.DJSYNC, "HTTP_BASE_URLS": [api.url("/api/")]}
        djsync_settings.reset()
        for concurrency in (1, 4):
            target_class = type(
                "Things",
                (HttpApiTarget,),
                {
                    "label": "bench.things",
                    "url": api.url("/api/things/"),
                    "fields": {"code": models.CharField(max_length=10)},
                    "concurrency": concurrency,
                },
            )
            batch = [Create(key=(str(i),), values={"code": str(i)}) for i in range(200)]
            target = target_class()
            started = time.perf_counter()
            refused = target.create(batch)
            target.close()
            took = time.perf_counter() - started
            print(f"concurrency {concurrency}: {took:.2f} s, 200 creates, {len(refused)} refused")


if __name__ == "__main__":
    main()

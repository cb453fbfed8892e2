"""The directory's API for the API-target bench, with the requests counted on the server.

``python -m bench.api_server PORT [--nagle]`` serves the demo project's WSGI app the way
``manage.py runserver --noreload`` does (Django's threaded development server,
``django.core.servers.basehttp.run``, one thread per connection, HTTP/1.1 keep-alive),
wrapped in a middleware that counts each request by kind and adds up the seconds the app
spent on it.

One difference, unless ``--nagle``: the server's sockets are TCP_NODELAY, as nginx's
(``tcp_nodelay on``) and asyncio servers' (uvicorn) are. Django's development server
writes an answer's headers and its body in two sends; with Nagle's algorithm on, the body
waits for the client to acknowledge the headers, and a keep-alive client acknowledges
late (Linux's delayed ACK): every small answer then takes about 40 ms more (measured here:
a ``GET`` of one item 45 ms with Nagle, 1.8 ms without). That stall is the development
server's, not the client's, so it is left out of the bench.

``GET /__bench__/counts`` answers the counts and starts them again from zero; it is not
counted. Settings come from the environment (bench/api_target.py sets
``DEMO_DIRECTORY_SQLITE``, ``DIRECTORY_API_TOKEN``, ``DJANGO_DEBUG``).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

COUNTS_PATH = "/__bench__/counts"
#: ``<resource>/``, ``<resource>/batch/`` or ``<resource>/<id>/`` under the API.
ROUTE = re.compile(r"/directory/api/\w+/(?:(batch)/|(\d+)/)?$")

Start = Callable[..., Any]
App = Callable[[dict[str, Any], Start], Iterable[bytes]]


def kind(method: str, path: str) -> str:
    """What a request is, for the counts: ``GET list``, ``POST create``, ``POST batch``,
    ``PATCH item``, ``DELETE item``, …"""
    match = ROUTE.search(path)
    if match is None:
        return f"{method} other"
    if match.group(1):
        return f"{method} batch"
    if match.group(2):
        return f"{method} item"
    return f"{method} {'list' if method == 'GET' else 'create'}"


class Counting:
    """WSGI middleware: requests by kind, and the app's seconds (until its answer is read)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.busy = 0.0

    def __call__(self, environ: dict[str, Any], start_response: Start) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == COUNTS_PATH:
            return self.report(start_response)
        started = time.perf_counter()
        body = self.app(environ, start_response)
        return self.timed(body, kind(environ["REQUEST_METHOD"], path), started)

    def timed(self, body: Iterable[bytes], what: str, started: float) -> Iterator[bytes]:
        try:
            yield from body
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
            with self.lock:
                self.counts[what] += 1
                self.busy += time.perf_counter() - started

    def report(self, start_response: Start) -> list[bytes]:
        with self.lock:
            answer = {"counts": dict(self.counts), "busy": self.busy}
            self.counts = Counter()
            self.busy = 0.0
        data = json.dumps(answer).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        return [data]


def main(port: int, nagle: bool = False) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
    import django

    django.setup()
    from django.core.servers.basehttp import WSGIRequestHandler, run

    WSGIRequestHandler.disable_nagle_algorithm = not nagle
    from django.core.wsgi import get_wsgi_application

    run("127.0.0.1", port, Counting(get_wsgi_application()), threading=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), nagle="--nagle" in sys.argv[2:])

"""A real HTTP server on 127.0.0.1 for tests: routes answer with canned or computed replies,
or, for the hostile-input tests, with raw bytes written straight to the socket (a slow drip,
an endless body, a lying Content-Length, a gzip bomb)."""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes or str
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass
class Raw:
    """A reply its function writes to the socket itself, status line and headers included:
    for answers no well-behaved server gives. The connection closes after it."""

    write: Callable[[BinaryIO], None]


Route = Callable[[Request], Reply | Raw] | Reply | Raw | list[Reply]


class ApiServer:
    """``server.route("/items", handler)``; ``server.url("/items")``; ``server.requests``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query={k: v[-1] for k, v in parse_qs(parts.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                outer.requests.append(request)
                reply = outer._reply(request)
                if isinstance(reply, Raw):
                    self.close_connection = True
                    try:
                        reply.write(self.wfile)
                    except OSError:
                        pass  # the client hung up: what a hostile test expects
                    return
                if reply.delay:
                    time.sleep(reply.delay)
                data = reply.encoded()
                try:
                    self.send_response(reply.status)
                    headers = {"Content-Type": "application/json", **reply.headers}
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def _reply(self, request: Request) -> Reply | Raw:
        route = self.routes.get(request.path)
        if route is None:
            return Reply(404, {"detail": "not found"})
        if isinstance(route, Reply | Raw):
            return route
        if isinstance(route, list):
            return route.pop(0) if len(route) > 1 else route[0]
        return route(request)

    def route(self, path: str, handler: Route) -> None:
        self.routes[path] = handler

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def hits(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def __enter__(self) -> ApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Collection:
    """A REST collection on the test server: GET lists, POST creates, PATCH/DELETE by id;
    a POST whose name is "refuse me" is answered 400."""

    def __init__(self, server: ApiServer) -> None:
        self.items: dict[int, dict[str, Any]] = {}
        self.next_id = 1
        self.server = server
        server.route("/api/things/", self.collection)

    def collection(self, request: Request) -> Reply:
        if request.method == "GET":
            return Reply(200, {"results": list(self.items.values())})
        body = json.loads(request.body)
        if body.get("name") == "refuse me":
            return Reply(400, {"name": ["this name is refused"]})
        item = {"id": self.next_id, **body}
        self.items[self.next_id] = item
        self.next_id += 1
        return Reply(201, item)

    def add(self, **fields: Any) -> int:
        """An item already there, with its route: its id."""
        pk = self.next_id
        self.items[pk] = {"id": pk, **fields}
        self.next_id += 1
        self.item(pk)
        return pk

    def item(self, pk: int) -> None:
        def handle(request: Request) -> Reply:
            if pk not in self.items:
                return Reply(404, {"detail": "Not found."})
            if request.method == "DELETE":
                del self.items[pk]
                return Reply(204, b"")
            if request.method == "GET":
                return Reply(200, self.items[pk])
            if request.method == "PUT":
                self.items[pk] = {"id": pk, **json.loads(request.body)}
                return Reply(200, self.items[pk])
            self.items[pk].update(json.loads(request.body))
            return Reply(200, self.items[pk])

        self.server.route(f"/api/things/{pk}/", handle)


def serve() -> Iterator[ApiServer]:
    with ApiServer() as server:
        yield server


def allow(settings: Any, *urls: str, **djsync: Any) -> None:
    """Let HTTP sources fetch under ``urls`` (pytest-django's ``settings`` fixture), plus
    any other DJSYNC settings: ``allow(settings, api.url("/"), HTTP_MAX_BODY=1000)``."""
    settings.DJSYNC = {**settings.DJSYNC, "HTTP_BASE_URLS": list(urls), **djsync}


# -- hostile replies ------------------------------------------------------------------------

#: How long a hostile reply keeps going when the client does not hang up (a failing test
#: must not leave a thread writing for ever).
HOSTILE_FOR = 60.0


def _head(status: str = "200 OK", **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/json", "Connection: close"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def drip(every: float = 0.2, *, first: bytes = b"[", byte: bytes = b" ") -> Raw:
    """A 200 whose body comes one byte every ``every`` seconds, for ever: each read is
    quick, the response never ends."""

    def write(out: BinaryIO) -> None:
        out.write(_head() + first)  # no length: the body ends when the server says so
        ends = time.monotonic() + HOSTILE_FOR
        while time.monotonic() < ends:
            time.sleep(every)
            out.write(byte)

    return Raw(write)


def slow_headers(every: float = 0.2) -> Raw:
    """A status line, then a header one byte every ``every`` seconds: no body ever starts."""

    def write(out: BinaryIO) -> None:
        out.write(b"HTTP/1.1 200 OK\r\nX-Pad: ")
        ends = time.monotonic() + HOSTILE_FOR
        while time.monotonic() < ends:
            time.sleep(every)
            out.write(b"a")

    return Raw(write)


def endless(
    piece: bytes = b'{"sku": "E", "name": "endless"},', *, chunked: bool = True, first: bytes = b"["
) -> Raw:
    """``first``, then ``piece`` for ever (a JSON list that never closes), sent as fast as
    the client reads: chunked, or with no length at all (the body ends with the connection)."""
    block = piece * max(1, 65536 // len(piece))

    def write(out: BinaryIO) -> None:
        headers = {"Transfer_Encoding": "chunked"} if chunked else {}
        out.write(_head(**headers))
        ends = time.monotonic() + HOSTILE_FOR
        start = first
        while time.monotonic() < ends:
            data = start + block
            start = b""
            out.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)

    return Raw(write)


def declared(length: int, body: bytes) -> Raw:
    """A body whose Content-Length lies: ``length`` announced, ``body`` sent, then the
    connection closed."""

    def write(out: BinaryIO) -> None:
        out.write(_head(Content_Length=str(length)) + body)

    return Raw(write)


def compressed(body: bytes, *encodings: str) -> Raw:
    """``body`` sent with ``Content-Encoding: encodings`` (applied in order), e.g. a gzip
    bomb: compressed(gzip_zeros(10**9), "gzip")."""
    data = body
    for encoding in encodings:
        data = gzip.compress(data, 1) if encoding == "gzip" else zlib.compress(data, 1)

    def write(out: BinaryIO) -> None:
        out.write(
            _head(Content_Encoding=", ".join(encodings), Content_Length=str(len(data))) + data
        )

    return Raw(write)


def spaces_gzip(size: int) -> bytes:
    """A gzip bomb: ``[`` + ``size`` spaces + ``]`` as gzip members of 1 MiB of spaces each,
    about a thousandth of ``size`` on the wire, built in no time."""
    member = gzip.compress(b" " * (1 << 20), 9)
    return gzip.compress(b"[") + member * max(1, size >> 20) + gzip.compress(b"]")


def deflate_bomb(size: int) -> bytes:
    """A deflate (zlib) bomb: one stream of ``[``, ``size`` spaces, ``]``."""
    packer = zlib.compressobj(9)
    piece = b" " * (1 << 20)
    parts = [packer.compress(b"[")] + [packer.compress(piece) for _ in range(size >> 20)]
    return b"".join([*parts, packer.compress(b"]"), packer.flush()])


def raw_bytes(data: bytes, **headers: str) -> Raw:
    """Exactly ``data`` after the headers (already compressed, say), Content-Length true."""

    def write(out: BinaryIO) -> None:
        out.write(_head(Content_Length=str(len(data)), **headers) + data)

    return Raw(write)

"""httpx's transport on sockets that never wait past a :class:`Clock`'s deadlines, and the one
TLS context of the process: imported when an HTTP source or target makes a request (httpx is
the ``djsync[http]`` extra)."""

from __future__ import annotations

import functools
import ssl
from typing import Any, Protocol

import httpcore
import httpx


class Clock(Protocol):
    """What the transport asks of djsync.sources.http_limits.Clock: the time a wait may
    take, and a check that raises once a deadline has passed."""

    def cap(self, timeout: float | None) -> float: ...

    def check(self) -> None: ...


__all__ = ["DeadlineTransport", "ssl_context"]


class _Stream(httpcore.NetworkStream):
    """A socket stream whose every wait ends by the clock's nearer deadline."""

    def __init__(self, inner: httpcore.NetworkStream, clock: Clock) -> None:
        self._inner = inner
        self._clock = clock

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return self._inner.read(max_bytes, self._clock.cap(timeout))
        except httpcore.TimeoutException:
            self._clock.check()
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            self._inner.write(buffer, self._clock.cap(timeout))
        except httpcore.TimeoutException:
            self._clock.check()
            raise

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        try:
            inner = self._inner.start_tls(ssl_context, server_hostname, self._clock.cap(timeout))
        except httpcore.TimeoutException:
            self._clock.check()
            raise
        return _Stream(inner, self._clock)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, clock: Clock) -> None:
        self._inner = httpcore.SyncBackend()
        self._clock = clock

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        try:
            stream = self._inner.connect_tcp(
                host, port, self._clock.cap(timeout), local_address, socket_options
            )
        except httpcore.TimeoutException:
            self._clock.check()
            raise
        return _Stream(stream, self._clock)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One TLS context (the system's trusted roots) for every request this process makes:
    building one costs ~15 ms, and a run makes several clients."""
    return httpx.create_ssl_context(trust_env=False)


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's own transport on sockets that never wait past the clock's deadlines.

    httpx takes no network backend, so the connection pool is rebuilt with one; no
    environment proxy or ``.netrc`` is read (``trust_env=False``)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(verify=ssl_context(), trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context(),
            max_connections=10,
            network_backend=_Backend(clock),
        )

"""What the directory checks before it looks at a request: rate, injected failures, token."""

from __future__ import annotations

import hmac
import threading
import time
from typing import Any

from django.http import HttpRequest, JsonResponse

from .conf import setting


class TokenBucket:
    """Allows ``rate`` requests per second on average, in bursts of up to one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True


class Counter:
    """A thread-safe request counter, for "every Nth request fails"."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def next(self) -> int:
        with self.lock:
            self.count += 1
            return self.count


_bucket: TokenBucket | None = None
_requests = Counter()
_state_lock = threading.Lock()


def reset_guards(**kwargs: Any) -> None:
    """A fresh bucket and counter (on setting_changed, so each test starts clean)."""
    global _bucket, _requests
    with _state_lock:
        _bucket = None
        _requests = Counter()


def _bucket_for(rate: float) -> TokenBucket:
    global _bucket
    with _state_lock:
        if _bucket is None or _bucket.rate != rate:
            _bucket = TokenBucket(rate)
        return _bucket


def detail(status: int, message: str, headers: dict[str, str] | None = None) -> JsonResponse:
    """An error answer in the shape DRF gives: ``{"detail": message}``."""
    return JsonResponse({"detail": message}, status=status, headers=headers)


def refusal(request: HttpRequest) -> JsonResponse | None:
    """The answer that stops this request before it is read, or None to go on."""
    rate = setting("DIRECTORY_API_RATE")
    if rate is not None and not _bucket_for(float(rate)).take():
        return detail(429, "Request was throttled.", {"Retry-After": "1"})
    every = setting("DIRECTORY_API_FAIL_EVERY")
    if every and _requests.next() % int(every) == 0:
        unavailable = "The directory is unavailable (DIRECTORY_API_FAIL_EVERY)."
        return detail(503, unavailable, {"Retry-After": "0"})
    return _unauthenticated(request)


CHALLENGE = {"WWW-Authenticate": "Token"}


def _unauthenticated(request: HttpRequest) -> JsonResponse | None:
    header = request.headers.get("Authorization", "")
    if not header:
        return detail(401, "Authentication credentials were not provided.", CHALLENGE)
    scheme, _, token = header.partition(" ")
    expected = setting("DIRECTORY_API_TOKEN")
    if (
        scheme.lower() != "token"
        or not expected
        or not hmac.compare_digest(token.strip().encode(), str(expected).encode())
    ):
        return detail(401, "Invalid token.", CHALLENGE)
    return None

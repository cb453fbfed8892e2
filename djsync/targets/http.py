"""The HTTP JSON API target: a REST collection read by listing it, written item by item or
in batches.

What it may reach is the site's, as for the HTTP source: every request stays under
``DJSYNC["HTTP_BASE_URLS"]`` and credentials come from ``DJSYNC["CREDENTIALS"]`` by name.
Reading the collection is the HTTP source's job (same pagination styles, same limits).
Writing is bounded too: retries with backoff on 429 and 5xx honouring ``Retry-After``, a
rate limit, a deadline for the whole apply, a cap on each answer's size. An item the API
refuses (a 4xx) is a row error naming its key and the API's answer; the others are
written. A create that gets no answer is never sent twice: the next run reads the
collection and finds it by key if it was made, so runs converge.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import date, datetime
from datetime import time as dt_time
from decimal import Decimal
from itertools import islice
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote
from uuid import UUID

from django.utils.translation import gettext, ngettext

from djsync.conf import settings
from djsync.engine.diff import Create, Delete, Key, Update
from djsync.exceptions import ConfigurationError, SourceError, TargetError, TargetUnavailable
from djsync.extras import lazy
from djsync.sources.http import HttpSource
from djsync.sources.http_fetch import _retry_after
from djsync.sources.http_limits import ssl_context
from djsync.sources.http_trust import check_url, redact, shown
from djsync.targets.base import Refused, Target, WriteResult

if TYPE_CHECKING:
    import httpx
else:
    httpx = lazy("httpx", "an HTTP target")

__all__ = ["HttpApiTarget"]

#: Answers that say "not now, try again": nothing was done, so even a create is resent.
RETRY_ANY = frozenset({429, 503})
#: Answers after which only a request that can be repeated safely is resent.
RETRY_IDEMPOTENT = frozenset({408, 425, 500, 502, 504})
#: Most bytes of an answer to a write that are read (its message, a batch's results).
MAX_ANSWER = 10 * 1024 * 1024
#: Characters of an answer quoted in a row error.
QUOTED = 300


class HttpApiTarget(Target):
    """A collection of a JSON API: ``GET url`` lists it (paginated as the HTTP source's
    ``pagination`` and ``records`` say), ``POST url`` creates, ``PATCH`` (or ``PUT``) and
    ``DELETE`` on ``item_url`` change one record; with ``batch_url``, one request carries a
    batch (see :meth:`batch_body` and :meth:`batch_refusals`).

    Subclass it in code, with ``label`` and ``fields`` as for any target::

        class Accounts(HttpApiTarget):
            label = "directory.accounts"
            url = "https://directory.example.com/api/accounts/"
            auth = {"type": "bearer", "scheme": "Token", "token": "directory"}
            pagination = {"style": "next", "path": "next"}
            records = "results"
            fields = {"username": models.CharField(max_length=150), ...}
    """

    #: The collection's URL (override :meth:`get_url` to read it from settings).
    url: ClassVar[str] = ""
    #: One record's URL: ``{url}`` the collection's, ``{id}`` its identifier.
    item_url: ClassVar[str] = "{url}{id}/"
    #: The field of a listed record that identifies it in ``item_url``.
    id_field: ClassVar[str] = "id"
    #: As the HTTP source's options: list query, auth, extra headers, records, pagination.
    params: ClassVar[dict[str, Any]] = {}
    auth: ClassVar[dict[str, Any] | None] = None
    headers: ClassVar[dict[str, Any]] = {}
    records: ClassVar[str | None] = None
    pagination: ClassVar[dict[str, Any] | None] = None
    #: ``PATCH`` sends the changed fields; ``PUT`` the whole record (read first, then sent).
    update_method: ClassVar[str] = "PATCH"
    #: A batch endpoint (``POST``) taking many items in one request, or None.
    batch_url: ClassVar[str | None] = None
    #: Most requests per second (None: as fast as the API answers).
    rate: ClassVar[float | None] = None
    #: Requests in flight at once when items go one by one (no ``batch_url``): an API that
    #: answers each in a few milliseconds is mostly waited on; a few at once hide that.
    concurrency: ClassVar[int] = 1
    #: Seconds per request, attempts after the first, first backoff (None: HTTP_* settings).
    timeout: ClassVar[float | None] = None
    retries: ClassVar[int | None] = None
    backoff: ClassVar[float | None] = None
    #: Seconds the whole write may take (None: ``DJSYNC["HTTP_DEADLINE"]``).
    deadline: ClassVar[float | None] = None
    #: A test's transport (httpx); None: the network.
    transport: ClassVar[httpx.BaseTransport | None] = None

    def __init__(self) -> None:
        super().__init__()
        if self.update_method not in ("PATCH", "PUT"):
            raise ConfigurationError(
                gettext("%(self)s: update_method is PATCH or PUT") % {"self": self}
            )
        if "{url}{id}" in self.item_url and not self.get_url().endswith("/"):
            # "…/things" + "1/" would name "…/things1/": a 404 that reads "already gone".
            raise ConfigurationError(
                gettext(
                    "%(self)s: the url %(get_url)r does not end with '/', so the item_url "
                    "%(item_url)r cannot name a record; end the url with '/' or set item_url = "
                    '"{url}/{id}"'
                )
                % {"self": self, "get_url": shown(self.get_url()), "item_url": self.item_url}
            )
        self._client: httpx.Client | None = None
        self._last_request = 0.0
        self._started: float | None = None
        self.requests = 0
        #: Seconds spent waiting on the API (answers, retries, the rate limit), summed over
        #: the requests in flight.
        self.waited = 0.0
        self._lock = threading.Lock()  # counters and the rate limit, across requests in flight

    # -- where -----------------------------------------------------------------------------
    def get_url(self) -> str:
        return self.url

    def item_location(self, pk: Any) -> str:
        return self.item_url.format(url=self.get_url(), id=quote(str(pk), safe=""))

    def describe(self, action: str, key: Key, pk: Any) -> str:
        shown_key = key[0] if len(key) == 1 else key
        if self.batch_url:
            return f"POST {self._batch_location()} ({action} {shown_key!r})"
        if action == "create":
            return f"POST {self.get_url()}"
        method = "DELETE" if action == "delete" else self.update_method
        return f"{method} {self.item_location(pk)}"

    def _batch_location(self) -> str:
        return str(httpx.URL(self.get_url()).join(self.batch_url or ""))

    def restore_pk(self, text: str) -> Any:
        """An id stored as text: a whole number when it was one (``"17"``), else as it was
        (``"007"`` stays text: it names another record than 7)."""
        if text.isdigit() and str(int(text)) == text:
            return int(text)
        return text

    def _source(self) -> HttpSource:
        """The collection as an HTTP source: reading it, and the request parts (base URLs,
        credentials, headers) every write shares."""
        return HttpSource(
            self.get_url(),
            params=dict(self.params),
            headers=dict(self.headers),
            auth=dict(self.auth) if self.auth else None,
            records=self.records,
            pagination=dict(self.pagination) if self.pagination else None,
            timeout=self.timeout,
            retries=self.retries,
            backoff=self.backoff,
            name=self.label or self.get_url(),
            transport=self.transport,
        )

    # -- reading ---------------------------------------------------------------------------
    def read(self) -> Iterator[tuple[Any, dict[str, Any]]]:
        """Every record, listed page by page (never one request per record)."""
        try:
            for number, record in enumerate(self._source().read(), start=1):
                if not isinstance(record, dict) or self.id_field not in record:
                    raise TargetError(
                        gettext(
                            "%(self)s: listed record %(number)s has no %(id_field)r (the id_field "
                            "that identifies a record)"
                        )
                        % {"self": self, "number": number, "id_field": self.id_field}
                    )
                yield record[self.id_field], record
        except SourceError as exc:
            raise TargetUnavailable(
                gettext("reading the target failed: %(exc)s") % {"exc": exc}
            ) from exc

    # -- writing ---------------------------------------------------------------------------
    def to_remote(self, values: dict[str, Any]) -> dict[str, Any]:
        """Field values as the API takes them in JSON: dates and times in ISO 8601,
        decimals and UUIDs as text. Override for an API with other ideas."""
        return {name: _json_value(value) for name, value in values.items()}

    def create(self, batch: list[Create]) -> list[Refused]:
        if self.batch_url:
            return self._batch("create", batch)
        return self._each(
            batch, lambda a: self._send(a, "POST", self.get_url(), self.to_remote(a.values))
        )

    def update(self, batch: list[Update]) -> list[Refused]:
        if self.batch_url:
            return self._batch("update", batch)
        return self._each(batch, self._update_one)

    def _each(self, batch: Sequence[Any], send_one: Any) -> list[Refused]:
        """Items one by one, ``concurrency`` requests in flight at a time. A TargetError
        stops the batch: no new request goes out, those in flight finish and count."""
        if self.concurrency <= 1 or len(batch) < 2:
            return self.send_each(batch, send_one)
        self._http()  # one client, built before the threads share it
        refused: list[Refused] = []
        written = 0
        stop: TargetError | None = None
        pending = iter(batch)
        with ThreadPoolExecutor(max_workers=int(self.concurrency)) as pool:
            running = {pool.submit(send_one, a): a for a in islice(pending, self.concurrency)}
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    running.pop(future)
                    try:
                        answer = future.result()
                    except TargetError as exc:
                        stop = stop or exc
                        continue
                    if answer is None:
                        written += 1
                    else:
                        refused.append(answer)
                    if stop is None:
                        for nxt in islice(pending, 1):
                            running[pool.submit(send_one, nxt)] = nxt
        if stop is not None:
            stop.partial = (written, refused)  # type: ignore[attr-defined]
            raise stop
        return refused

    def _update_one(self, action: Update) -> Refused | None:
        location = self.item_location(action.pk)
        body = self.to_remote(action.new)
        if self.update_method == "PUT":
            current, problem = self._get(action, location)
            if problem:
                return problem
            body = {**{k: v for k, v in current.items() if k != self.id_field}, **body}
        return self._send(action, self.update_method, location, body)

    def delete(self, batch: list[Delete]) -> list[Refused]:
        if self.batch_url:
            return self._batch("delete", batch)
        return self._each(batch, lambda a: self._send(a, "DELETE", self.item_location(a.pk), None))

    def batch_body(self, action: str, batch: Sequence[Create | Update | Delete]) -> Any:
        """The batch request's JSON: ``{"create": [record, …]}``, ``{"update": [{"id": …,
        changed fields …}, …]}`` or ``{"delete": [id, …]}``."""
        if action == "create":
            return {"create": [self.to_remote(a.values) for a in batch]}  # type: ignore[union-attr]
        if action == "update":
            return {
                "update": [
                    {self.id_field: a.pk, **self.to_remote(a.new)}  # type: ignore[union-attr]
                    for a in batch
                ]
            }
        return {"delete": [a.pk for a in batch]}  # type: ignore[union-attr]

    def batch_refusals(
        self, action: str, batch: Sequence[Create | Update | Delete], answer: Any
    ) -> list[Refused]:
        """The items a batch answer refuses: ``{"<action>": [{"status": 201}, {"status":
        400, "errors": {...}}, …]}``, one result per item in order. A delete answered 404
        is already gone: done."""
        results = answer.get(action) if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(batch):
            raise TargetError(
                gettext("%(self)s: the batch answer has no list of %(batch)s %(action)r results")
                % {"self": self, "batch": len(batch), "action": action}
            )
        refused = []
        for item, result in zip(batch, results, strict=True):
            status = result.get("status") if isinstance(result, dict) else None
            if not isinstance(status, int):
                raise TargetError(
                    gettext("%(self)s: a batch result has no status: %(result)s")
                    % {"self": self, "result": _quote(result)}
                )
            if status >= 400 and not (action == "delete" and status == 404):
                refused.append(self._refusal(item, status, result))
        return refused

    def _batch(self, action: str, batch: Sequence[Create | Update | Delete]) -> list[Refused]:
        url = self._batch_location()
        response, body, problem = self._request("POST", url, self.batch_body(action, batch), True)
        if problem is not None:
            return [Refused(item, problem) for item in batch]
        assert response is not None
        if response.status_code >= 400:
            self._stop_on(response.status_code, "POST", url, body)
            return [self._refusal(item, response.status_code, body) for item in batch]
        return self.batch_refusals(action, batch, body)

    def _get(self, action: Update, location: str) -> tuple[dict[str, Any], Refused | None]:
        response, body, problem = self._request("GET", location, None, True)
        if problem is not None:
            return {}, Refused(action, problem)
        assert response is not None
        if response.status_code >= 400 or not isinstance(body, dict):
            return {}, self._refusal(action, response.status_code, body)
        return body, None

    def _send(
        self, action: Create | Update | Delete, method: str, url: str, body: Any
    ) -> Refused | None:
        """One item's request; its refusal, or None when done (a delete answered 404 is
        already gone: done)."""
        response, answer, problem = self._request(method, url, body, method != "POST")
        if problem is not None:
            return Refused(action, problem)
        assert response is not None
        status = response.status_code
        if status < 400 or (method == "DELETE" and status == 404):
            return None
        self._stop_on(status, method, url, answer)
        return self._refusal(action, status, answer)

    def _stop_on(self, status: int, method: str, url: str, answer: Any) -> None:
        """Answers that are about the target, not the item: the credentials (401, 403), a
        collection that is not there (404 on a POST), a method it does not take (405). The
        run stops at the first one instead of sending every item to be refused alike."""
        if status in (401, 403, 405) or (status == 404 and method == "POST"):
            raise TargetUnavailable(
                self._clean(
                    gettext(
                        "%(self)s: %(method)s %(url)s answered %(status)s: %(value)s; stopped "
                        "(this answer is about the target or its credentials, not about one "
                        "record)"
                    )
                    % {
                        "self": self,
                        "method": method,
                        "url": shown(httpx.URL(url)),
                        "status": status,
                        "value": _quote(answer if answer is not None else ""),
                    }
                )
            )

    def _refusal(self, action: Create | Update | Delete, status: int, answer: Any) -> Refused:
        """The API's answer as a row error: its per-field messages, or its detail."""
        field = None
        if isinstance(answer, dict):
            answer = answer.get("errors", answer)
        if isinstance(answer, dict) and answer:
            known = [name for name in answer if name in self._fields]
            field = known[0] if known else None
            parts = []
            for name, messages in list(answer.items())[:5]:
                if isinstance(messages, list):
                    messages = " ".join(str(m) for m in messages)
                prefix = "" if name in ("detail", "message", "error", "status") else f"{name}: "
                if name != "status":
                    parts.append(f"{prefix}{messages}")
            text = "; ".join(parts)
        else:
            text = "" if answer is None else str(answer)
        return Refused(action, self._clean(f"answered {status}: {_quote(text)}"), field)

    # -- one request, retried, rate-limited, bounded -------------------------------------------
    def _http(self) -> httpx.Client:
        if self._client is None:
            source = self._source()
            self._bases = source._allowed_start()
            headers, query, self._secrets = source._request_parts(source._credentials())
            self._query = query
            self._client = httpx.Client(
                headers={**headers, "Content-Type": "application/json"},
                timeout=source.timeout,
                transport=self.transport,
                follow_redirects=False,
                trust_env=False,
                verify=ssl_context(),
            )
            self._retries = source.retries
            self._backoff = source.backoff
            self._started = time.monotonic()
        return self._client

    def _request(
        self, method: str, url: str, body: Any, repeatable: bool
    ) -> tuple[httpx.Response | None, Any, str | None]:
        """Send one request; retry what may be retried. Returns the final response and its
        JSON (or text), or a problem that refuses the item without stopping the run."""
        client = self._http()
        target = httpx.URL(url)
        problem = check_url(target, self._bases)
        if problem:
            raise TargetError(
                self._clean(
                    gettext("%(self)s: %(method)s %(target)s: the URL %(problem)s")
                    % {"self": self, "method": method, "target": shown(target), "problem": problem}
                )
            )
        content = None if body is None else json.dumps(body, default=str).encode()
        attempt = 0
        while True:
            self._wait_turn()
            started = time.monotonic()
            try:
                request = client.build_request(method, target, params=self._query, content=content)
                response = client.send(request, stream=True)
                try:
                    data = _read_capped(response)
                finally:
                    response.close()
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nothing sent: resend
                self._add_wait(time.monotonic() - started)
                if attempt < self._retries:
                    attempt = self._pause(attempt, None, method, url, str(exc))
                    continue
                raise self._gave_up(method, target, exc, attempt) from exc
            except (httpx.TransportError, ValueError) as exc:
                self._add_wait(time.monotonic() - started)
                if repeatable and attempt < self._retries:
                    attempt = self._pause(attempt, None, method, url, str(exc))
                    continue
                if not repeatable:  # sent, maybe done: never sent twice
                    return (
                        None,
                        None,
                        self._clean(
                            gettext(
                                "%(method)s got no answer (%(one_line)s); a new run finds the "
                                "record by its key if it was made"
                            )
                            % {"method": method, "one_line": _one_line(exc)}
                        ),
                    )
                raise self._gave_up(method, target, exc, attempt) from exc
            self._add_wait(time.monotonic() - started, request=True)
            status = response.status_code
            retry = status in RETRY_ANY or (repeatable and status in RETRY_IDEMPOTENT)
            if retry and attempt < self._retries:
                attempt = self._pause(attempt, _retry_after(response), method, url, str(status))
                continue
            if 300 <= status < 400:
                raise TargetError(
                    gettext(
                        "%(self)s: %(method)s %(target)s answered %(status)s (a redirect); a "
                        "target's URLs must name the API itself, redirects are not followed"
                    )
                    % {"self": self, "method": method, "target": shown(target), "status": status}
                )
            if status >= 500 or status in RETRY_ANY:
                raise TargetUnavailable(
                    self._clean(
                        ngettext(
                            "%(self)s: %(method)s %(target)s answered %(status)s after "
                            "%(attempts)s attempt: %(answer)s",
                            "%(self)s: %(method)s %(target)s answered %(status)s after "
                            "%(attempts)s attempts: %(answer)s",
                            attempt + 1,
                        )
                        % {
                            "self": self,
                            "method": method,
                            "target": shown(target),
                            "status": status,
                            "attempts": attempt + 1,
                            "answer": _quote(_text(data)),
                        }
                    )
                )
            return response, _decoded(data), None

    def _gave_up(self, method: str, url: httpx.URL, exc: Exception, attempt: int) -> TargetError:
        return TargetUnavailable(
            self._clean(
                ngettext(
                    "%(self)s: %(method)s %(url)s: %(problem)s (gave up after %(attempts)s "
                    "attempt)",
                    "%(self)s: %(method)s %(url)s: %(problem)s (gave up after %(attempts)s "
                    "attempts)",
                    attempt + 1,
                )
                % {
                    "self": self,
                    "method": method,
                    "url": shown(url),
                    "problem": _one_line(exc),
                    "attempts": attempt + 1,
                }
            )
        )

    def _pause(
        self, attempt: int, retry_after: float | None, method: str, url: str, why: str
    ) -> int:
        delay = retry_after if retry_after is not None else self._backoff * 2**attempt
        delay = min(delay, float(settings.HTTP_MAX_BACKOFF))
        self._check_deadline(method, url, delay, why)
        time.sleep(delay)
        self._add_wait(delay)
        return attempt + 1

    def _add_wait(self, seconds: float, *, request: bool = False) -> None:
        with self._lock:
            self.waited += seconds
            self.requests += int(request)

    def _wait_turn(self) -> None:
        """Hold to ``rate`` requests per second (whatever is in flight), and to the deadline."""
        self._check_deadline("", "", 0.0, "")
        if not self.rate:
            return
        with self._lock:  # each request takes the next slot: slots are 1/rate apart
            slot = max(time.monotonic(), self._last_request + 1.0 / float(self.rate))
            self._last_request = slot
        gap = slot - time.monotonic()
        if gap > 0:
            time.sleep(gap)
            self._add_wait(gap)

    def _check_deadline(self, method: str, url: str, delay: float, why: str) -> None:
        limit = float(self.deadline if self.deadline is not None else settings.HTTP_DEADLINE)
        spent = time.monotonic() - (self._started or time.monotonic())
        if spent + delay > limit:
            after = f" (last: {method} {url}: {why})" if method else ""
            raise TargetUnavailable(
                gettext(
                    "%(self)s: the write passed its deadline of %(limit)s s (deadline, "
                    'DJSYNC["HTTP_DEADLINE"])%(after)s'
                )
                % {"self": self, "limit": format(limit, ".0f"), "after": after}
            )

    def _clean(self, text: str) -> str:
        return redact(text, getattr(self, "_secrets", ()))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def write(self, *args: Any, **kwargs: Any) -> WriteResult:
        """The base class's batches, on one connection closed at the end."""
        try:
            return super().write(*args, **kwargs)
        finally:
            self.close()


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date | dt_time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    return value


def _read_capped(response: httpx.Response) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_ANSWER:
            raise ValueError(
                gettext("the answer is larger than %(max_answer)s MB")
                % {"max_answer": MAX_ANSWER // (1024 * 1024)}
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _decoded(data: bytes) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return _text(data)


def _text(data: bytes) -> str:
    return " ".join(data[: QUOTED * 4].decode("utf-8", "replace").split())


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text[:QUOTED] + ("…" if len(text) > QUOTED else "")


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__

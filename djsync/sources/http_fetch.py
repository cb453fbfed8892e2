"""One read of an HTTP source, request by request: each one checked against the base URLs
and credential bindings, redirects followed by hand, failures retried, and each page's
bytes streamed into records within the limits of djsync.sources.http_limits."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from djsync.conf import settings
from djsync.exceptions import ConfigurationError, SourceError, TransientSourceError
from djsync.extras import lazy
from djsync.sources.http_limits import (
    BadEncoding,
    BodyTooLarge,
    Clock,
    DeadlineExceeded,
    NotJSON,
    PageDecoder,
    PageProblem,
    StreamedList,
    body_chunks,
)
from djsync.sources.http_trust import BaseUrl, Credential, check_url, redact, shown

if TYPE_CHECKING:
    import httpx
else:
    httpx = lazy("httpx", "an HTTP source")


class Request(Protocol):
    """What a fetch needs of its source (an HttpSource): how to ask, and how patiently."""

    name: str
    method: str
    body: Any
    records_path: Any
    timeout: float
    retries: int
    backoff: float


#: Statuses worth another attempt: rate limiting and server-side failures.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: A credential this long or longer found in a response refuses the page (shorter ones
#: would match ordinary data by chance); every length is kept out of messages.
ECHO_MIN_LENGTH = 6
#: Characters of a response shown in a message.
SNIPPET = 200


class _Retry(Exception):
    """A failure worth another attempt (timeout, dropped connection, 429/5xx)."""

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retry_after = retry_after


@dataclass
class Page:
    """What is left of a page once its records are handed out."""

    url: httpx.URL
    links: dict[str | None, dict[str, str]]
    document: Any
    records: StreamedList | None
    digest: bytes


class Fetcher:
    """One read's requests: each one under the base URLs, retried, and bounded in time,
    size, redirects and nesting."""

    def __init__(
        self,
        source: Request,
        client: httpx.Client,
        clock: Clock,
        bases: list[BaseUrl],
        credentials: list[Credential],
        query: dict[str, str],
        secrets: list[str],
    ) -> None:
        self.source = source
        self.client = client
        self.clock = clock
        self.bases = bases
        self.credentials = credentials
        self.query = query
        self.secrets = [s for s in secrets if s]
        self.echo = [s.encode() for s in self.secrets if len(s) >= ECHO_MIN_LENGTH]
        self.max_body = int(settings.HTTP_MAX_BODY)
        self.max_redirects = int(settings.HTTP_MAX_REDIRECTS)
        self.max_depth = int(settings.JSON_MAX_DEPTH)

    def error(self, message: str, cls: type[SourceError] = SourceError) -> SourceError:
        """A source error whose message holds no credential."""
        return cls(redact(message, self.secrets), source=self.source.name)

    def refusal(self, url: httpx.URL) -> str | None:
        """Why ``url`` may not be requested with this read's credentials, or None."""
        problem = check_url(url, self.bases)
        if problem:
            return problem
        for item in self.credentials:
            problem = item.refusal(url)
            if problem:
                return problem
        return None

    # -- one page, retried ---------------------------------------------------------------
    def page(
        self, url: str, params: dict[str, Any], number: int
    ) -> Generator[list[dict[str, Any]], None, Page]:
        """Yield the records of one page in pieces as they arrive; return what is left of
        it. A failure before its first record is retried; after, the run fails (its
        records were already handed out) with a TransientSourceError."""
        source = self.source
        attempt = 0
        while True:
            handed_out = False
            response: httpx.Response | None = None
            try:
                response = self._open(url, {**params, **self.query}, number)
                try:
                    decoder = PageDecoder(
                        source.records_path, max_depth=self.max_depth, page=number
                    )
                    digest = hashlib.sha256()
                    for batch in self._batches(response, decoder, digest, number):
                        handed_out = True
                        yield batch
                    return Page(
                        response.url,
                        response.links,
                        decoder.document,
                        decoder.records,
                        digest.digest(),
                    )
                finally:
                    response.close()
                    self.clock.end_response()
            except DeadlineExceeded as exc:
                if exc.setting == "HTTP_DEADLINE":
                    raise self.error(
                        _(
                            "stopped at page %(number)s: reading took longer than "
                            'DJSYNC["HTTP_DEADLINE"] (%(seconds)s s)'
                        )
                        % {"number": number, "seconds": format(exc.seconds, "g")}
                    ) from None
                retry = _Retry(_("no complete answer within %(exc)s") % {"exc": exc})
            except httpx.TimeoutException:
                retry = _Retry(
                    _("no answer within %(timeout)s s (timeout)")
                    % {"timeout": format(source.timeout, "g")}
                )
            except httpx.TransportError as exc:
                what = _("cannot connect") if response is None else _("the answer broke off")
                retry = _Retry(f"{what}: {_one_line(exc)}")
            except _Retry as exc:
                retry = exc
            if handed_out:
                raise self.error(
                    _("%(problem)s (page %(number)s, after some of its records: not retried)")
                    % {"problem": retry.problem, "number": number},
                    TransientSourceError,
                )
            if attempt >= source.retries:
                tries = ngettext("%(attempts)s attempt", "%(attempts)s attempts", attempt + 1) % {
                    "attempts": attempt + 1
                }
                raise self.error(
                    _("%(problem)s (page %(number)s, gave up after %(tries)s)")
                    % {"problem": retry.problem, "number": number, "tries": tries},
                    TransientSourceError,
                )
            pause = source.backoff * (2 ** min(attempt, 30))  # no float overflow
            if retry.retry_after is not None:
                pause = max(pause, retry.retry_after)
            pause = min(pause, float(settings.HTTP_MAX_BACKOFF))
            if pause >= self.clock.run_left():
                raise self.error(
                    _(
                        "%(problem)s (page %(number)s); another attempt in %(pause)s s would pass "
                        'DJSYNC["HTTP_DEADLINE"] (%(total)s s)'
                    )
                    % {
                        "problem": retry.problem,
                        "number": number,
                        "pause": format(pause, "g"),
                        "total": format(self.clock.total, "g"),
                    },
                    TransientSourceError,
                )
            time.sleep(pause)
            attempt += 1

    def _batches(
        self, response: httpx.Response, decoder: PageDecoder, digest: Any, number: int
    ) -> Iterator[list[dict[str, Any]]]:
        head = b""
        tail = b""
        longest = max((len(s) for s in self.echo), default=0)
        try:
            for chunk in body_chunks(response, limit=self.max_body, clock=self.clock):
                if len(head) < SNIPPET:
                    head += chunk[:SNIPPET]
                if self.echo:
                    window = tail + chunk
                    if any(secret in window for secret in self.echo):
                        raise self.error(
                            _(
                                "page %(number)s contains a credential that was sent with the "
                                "request; refused so that it is not stored (does the API echo its "
                                "requests?)"
                            )
                            % {"number": number}
                        )
                    tail = window[-(longest - 1) :] if longest > 1 else b""
                digest.update(chunk)
                batch = decoder.feed(chunk)
                if batch:
                    yield batch
            batch = decoder.finish()
            if batch:
                yield batch
        except BodyTooLarge as exc:
            raise self.error(
                _(
                    'page %(number)s is larger than DJSYNC["HTTP_MAX_BODY"] (%(max_body)s bytes): '
                    "%(exc)s"
                )
                % {"number": number, "max_body": format(self.max_body, ","), "exc": exc}
            ) from None
        except BadEncoding as exc:
            raise self.error(
                _("page %(number)s cannot be read: %(exc)s") % {"number": number, "exc": exc}
            ) from None
        except PageProblem as exc:
            raise self.error(str(exc)) from None
        except NotJSON as exc:
            kind = response.headers.get("content-type", _("no content type"))
            raise self.error(
                _("page %(number)s is not valid JSON (%(exc)s) (%(kind)s)%(snippet)s")
                % {"number": number, "exc": exc, "kind": kind[:80], "snippet": _snippet(head)}
            ) from None

    # -- one request, its redirects followed ---------------------------------------------
    def _open(self, url: str, params: dict[str, Any], number: int) -> httpx.Response:
        """The response of a request (streamed, not read yet), redirects followed within
        the base URLs; a 429/5xx is a :class:`_Retry`, any other error a SourceError."""
        source = self.source
        try:
            request = self.client.build_request(
                source.method,
                url,
                params=params or None,
                json=source.body if source.method == "POST" else None,
            )
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise ConfigurationError(
                redact(
                    _("%(name)s: cannot build the request: %(one_line)s")
                    % {"name": source.name, "one_line": _one_line(exc)},
                    self.secrets,
                )
            ) from None
        hops = [request.url]
        while True:
            problem = self.refusal(request.url)
            if problem and len(hops) == 1:
                # The source's own URL (checked when it was built, and again here on what
                # is sent: its query parameters added).
                raise ConfigurationError(redact(f"{source.name}: {problem}", self.secrets))
            if problem:
                raise self.error(
                    _("page %(number)s redirects: %(problem)s")
                    % {"number": number, "problem": problem}
                )
            self.clock.begin_response()
            response = self.client.send(request, stream=True)
            status = response.status_code
            if status in REDIRECT_STATUSES and "location" in response.headers:
                response.close()
                request = self._redirect(request, response, hops, number)
                continue
            if 200 <= status < 300:
                return response
            try:
                detail = _snippet(b"".join(body_chunks(response, limit=4 * SNIPPET, truncate=True)))
            except (BadEncoding, httpx.HTTPError):
                detail = ""
            finally:
                response.close()
                self.clock.end_response()
            problem = redact(f"HTTP {status} {response.reason_phrase}", self.secrets)
            if status in RETRY_STATUSES:
                raise _Retry(redact(problem + detail, self.secrets), _retry_after(response))
            raise self.error(f"{problem} from {shown(response.url)}{detail}")

    def _redirect(
        self,
        request: httpx.Request,
        response: httpx.Response,
        hops: list[httpx.URL],
        number: int,
    ) -> httpx.Request:
        location = response.headers["location"]
        try:
            target = response.url.join(location)
        except httpx.InvalidURL:
            raise self.error(
                _("page %(number)s redirects to %(location)r, which is not a URL")
                % {"number": number, "location": shown(location)}
            ) from None
        if any(str(target) == str(hop) for hop in hops):
            chain = " → ".join(shown(u) for u in [*hops, target])
            raise self.error(
                _("page %(number)s: a redirect loop (%(chain)s)")
                % {"number": number, "chain": chain}
            )
        if len(hops) > self.max_redirects:
            raise self.error(
                _(
                    'page %(number)s: more than DJSYNC["HTTP_MAX_REDIRECTS"] (%(max_redirects)s) '
                    "redirects (%(hops)s → … → %(target)s)"
                )
                % {
                    "number": number,
                    "max_redirects": self.max_redirects,
                    "hops": shown(hops[0]),
                    "target": shown(target),
                }
            )
        hops.append(target)
        keep_body = response.status_code in (307, 308)
        method = request.method if keep_body or request.method == "GET" else "GET"
        return self.client.build_request(
            method, target, json=self.source.body if keep_body and method == "POST" else None
        )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _snippet(data: bytes) -> str:
    """The start of a response, on one line, for a message."""
    # No control characters: a NUL (a UTF-16 body) cannot be stored in PostgreSQL text.
    text = data[: SNIPPET * 4].decode("utf-8", "replace")
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if not text:
        return ""
    return f": {text[:SNIPPET]}{'…' if len(text) > SNIPPET else ''}"


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]

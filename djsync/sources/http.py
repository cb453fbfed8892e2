"""HTTP JSON source: records from a web API, fetched page by page with retries.

Each page is decoded while it streams in (ijson) and its records are handed out as they
arrive, so a large API never sits in memory whole. What the source may reach is the
site's: every request stays under ``DJSYNC["HTTP_BASE_URLS"]`` (djsync.sources.http_trust),
and the credentials a job names are read from ``DJSYNC["CREDENTIALS"]`` only, at run time,
never stored. What a read may cost is bounded by deadlines, a body size, a redirect count
and a JSON nesting depth (djsync.sources.http_limits).
"""

from __future__ import annotations

import base64
import hashlib
import json as _json
import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext

from djsync.conf import settings
from djsync.exceptions import ConfigurationError, SourceError
from djsync.extras import lazy
from djsync.runs.progress import Extent
from djsync.sources.base import Source
from djsync.sources.http_fetch import Fetcher, Page
from djsync.sources.http_limits import (
    Clock,
    deadline_transport,
)
from djsync.sources.http_pages import check_pagination, declared_total, dig
from djsync.sources.http_trust import (
    BaseUrl,
    Credential,
    base_urls,
    check_url,
    credential,
    get_credential,
    shown,
)

if TYPE_CHECKING:
    import httpx
else:
    httpx = lazy("httpx", "an HTTP source")

__all__ = ["HttpSource", "dig", "get_credential"]

#: Headers djsync sets itself: a job setting them could reroute the request (Host), smuggle
#: a second one (framing headers) or ask for an encoding that is not inflated in bounds.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "accept-encoding",
    }
)
#: Most headers and query parameters a source may set, and the longest header value and
#: JSON body (characters): a request stays a request, not megabytes a server must swallow.
#: Header names whose value is a secret: they must name a credential, not hold one.
SECRET_HEADER_WORDS = ("authorization", "token", "secret", "key", "password", "cookie")


def _too_long(value: Any, most: int) -> bool:
    """Whether ``value`` as JSON is longer than ``most`` characters (or cannot be JSON)."""
    try:
        return len(_json.dumps(value, default=str)) > most
    except (ValueError, RecursionError):
        return True


class HttpSource(Source):
    """Reads JSON records from an HTTP API.

    Options (all but ``url`` optional):

    - ``url`` (under one of ``DJSYNC["HTTP_BASE_URLS"]``), ``method`` (GET or POST),
      ``params`` (query string), ``json`` (POST body), ``headers`` (a value may be
      ``{"credential": "NAME"}``).
    - ``auth``: ``{"type": "bearer", "token": "NAME"}`` (``"scheme": "Token"`` for
      ``Authorization: Token …``), ``{"type": "basic", "username":
      "NAME", "password": "NAME"}``, ``{"type": "header", "header": "X-Api-Key", "token":
      "NAME"}`` or ``{"type": "query", "param": "api_key", "token": "NAME"}``, where each
      NAME is a credential of ``DJSYNC["CREDENTIALS"]``.
    - ``records``: dotted path to the list of records in each response (``"data.items"``);
      by default the response itself, or the one list inside it.
    - ``pagination``: ``{"style": "page", "param": "page", "start": 1, "size_param":
      "per_page", "size": 100}``; ``{"style": "offset", "offset_param": "offset",
      "limit_param": "limit", "limit": 100}``; ``{"style": "cursor", "param": "cursor",
      "path": "meta.next_cursor"}``; ``{"style": "next", "path": "links.next"}`` (or no
      path: the ``Link: <…>; rel="next"`` header). Any style may add ``"total"``, the dotted
      path to the number of records the API declares (``"count"``, ``"meta.total"``), or
      ``"total_pages"``, to the number of pages: the run's progress then has a total.
    - ``timeout``, ``retries``, ``backoff``, ``max_pages``: defaults from the HTTP_* settings.
      Whatever they say, a read ends by ``HTTP_DEADLINE`` and each response by
      ``HTTP_RESPONSE_DEADLINE``; those, ``HTTP_MAX_BODY``, ``HTTP_MAX_REDIRECTS`` and
      ``JSON_MAX_DEPTH`` are settings only.
    - ``incremental``: ``{"column": "updated_at", "param": "since", "deleted": "is_deleted"}``
      sends the saved cursor as ``param`` and notes the largest ``column`` value read.
    """

    first_row = 1
    #: ``(first page, pages)`` this source reads (a partition of a split run, whose pages
    #: are numbers or offsets as its pagination says; pages None: to the last).
    page_span: tuple[int, int | None] | None = None

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, Any] | None = None,
        auth: dict[str, Any] | None = None,
        records: str | None = None,
        pagination: dict[str, Any] | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        backoff: float | None = None,
        max_pages: int | None = None,
        incremental: dict[str, Any] | None = None,
        name: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            raise ConfigurationError(
                gettext("an HTTP source needs an http(s) URL, not %(url)r") % {"url": shown(url)}
            )
        self.url = url
        self.name = name or shown(url)
        if not isinstance(method, str) or method.upper() not in ("GET", "POST"):
            raise ConfigurationError(
                gettext("%(name)s: method must be GET or POST") % {"name": self.name}
            )
        self.method = method.upper()
        for option, value in (
            ("params", params),
            ("headers", headers),
            ("auth", auth),
            ("pagination", pagination),
        ):
            if value is not None and not isinstance(value, dict):
                raise ConfigurationError(
                    gettext("%(name)s: %(option)s must be an object")
                    % {"name": self.name, "option": option}
                )
        for option, value in (("params", params), ("headers", headers)):
            if value is not None and len(value) > settings.HTTP_MAX_OPTION_ITEMS:
                raise ConfigurationError(
                    gettext(
                        "%(name)s: %(option)s has %(value)s entries, more than "
                        '%(http_max_option_items)s (DJSYNC["HTTP_MAX_OPTION_ITEMS"])'
                    )
                    % {
                        "name": self.name,
                        "option": option,
                        "value": format(len(value), ","),
                        "http_max_option_items": settings.HTTP_MAX_OPTION_ITEMS,
                    }
                )
        if json is not None and _too_long(json, settings.HTTP_MAX_JSON_BODY):
            raise ConfigurationError(
                gettext(
                    "%(name)s: the json body is longer than %(http_max_json_body)s characters "
                    '(DJSYNC["HTTP_MAX_JSON_BODY"])'
                )
                % {
                    "name": self.name,
                    "http_max_json_body": format(settings.HTTP_MAX_JSON_BODY, ","),
                }
            )
        self.params = dict(params or {})
        self.body = json
        self.header_options = dict(headers or {})
        self.auth_options = dict(auth or {})
        if records is not None and not isinstance(records, str):
            raise ConfigurationError(
                gettext("%(name)s: records is a dotted path such as data.items")
                % {"name": self.name}
            )
        if records and any(not s or s.startswith("-") for s in records.split(".")):
            raise ConfigurationError(
                gettext(
                    "%(name)s: records path %(records)r: its steps are keys, or list positions "
                    "from 0"
                )
                % {"name": self.name, "records": records}
            )
        self.records_path = records
        self.pagination = dict(pagination or {})
        check_pagination(self.name, self.pagination)
        self.timeout = self._number("timeout", timeout, settings.HTTP_TIMEOUT)
        self.retries = int(self._number("retries", retries, settings.HTTP_RETRIES))
        self.backoff = self._number("backoff", backoff, settings.HTTP_BACKOFF)
        self.max_pages = int(self._number("max_pages", max_pages, settings.HTTP_MAX_PAGES))
        if transport is not None and not isinstance(transport, httpx.BaseTransport):
            raise ConfigurationError(
                gettext("%(name)s: transport must be an httpx transport") % {"name": self.name}
            )
        self.transport = transport
        self.columns = None
        self.pages_read = 0
        #: Records handed out so far, and the totals the API declares (for :meth:`extent`).
        self.records_read = 0
        self.declared: tuple[int, str] | None = None
        self.setup_incremental(incremental)
        for header, value in self.header_options.items():
            lowered = str(header).lower()
            if lowered in RESERVED_HEADERS or lowered.startswith("proxy-"):
                raise ConfigurationError(
                    gettext("%(name)s: header %(header)r is set by djsync, not by a source")
                    % {"name": self.name, "header": str(header)[:60]}
                )
            if not isinstance(value, str | dict) or any(
                c in str(header) + (value if isinstance(value, str) else "") for c in "\r\n\0"
            ):
                raise ConfigurationError(
                    gettext(
                        '%(name)s: header %(header)r must be a one-line text or {"credential": '
                        '"NAME"}'
                    )
                    % {"name": self.name, "header": str(header)[:60]}
                )
            if isinstance(value, str) and len(value) > settings.HTTP_MAX_HEADER_VALUE:
                raise ConfigurationError(
                    gettext(
                        "%(name)s: header %(header)r is longer than %(http_max_header_value)s "
                        'characters (DJSYNC["HTTP_MAX_HEADER_VALUE"])'
                    )
                    % {
                        "name": self.name,
                        "header": str(header)[:60],
                        "http_max_header_value": format(settings.HTTP_MAX_HEADER_VALUE, ","),
                    }
                )
            if isinstance(value, str) and any(w in lowered for w in SECRET_HEADER_WORDS):
                raise ConfigurationError(
                    gettext(
                        '%(name)s: header %(header)r holds a secret; give {"credential": "NAME"} '
                        'and put the value in DJSYNC["CREDENTIALS"]'
                    )
                    % {"name": self.name, "header": header}
                )
        # Refuse early (a job saved in the admin, get_source()): the URL and the credential
        # names. Both are checked again when the source runs, on what is actually sent.
        self._allowed_start()
        for _, item in self._credentials():
            problem = item.refusal(httpx.URL(self.url))
            if problem:
                raise ConfigurationError(f"{self.name}: {problem}")

    def _number(self, option: str, value: Any, default: Any) -> float:
        value = default if value is None else value
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not 0 <= value < math.inf:
            raise ConfigurationError(
                gettext("%(name)s: %(option)s must be a number ≥ 0, not %(value)r")
                % {"name": self.name, "option": option, "value": value}
            )
        return float(value)

    # -- what the source may reach ---------------------------------------------------------
    def _allowed_start(self) -> list[BaseUrl]:
        """The base URLs, once the source's own URL is known to be under one of them."""
        bases = base_urls()
        if not bases:
            raise ConfigurationError(
                gettext(
                    '%(name)s: HTTP sources are off until DJSYNC["HTTP_BASE_URLS"] lists the URL '
                    'prefixes they may fetch, e.g. ["https://api.example.com/v1/"]'
                )
                % {"name": self.name}
            )
        try:
            url = httpx.URL(self.url)
        except httpx.InvalidURL as exc:
            raise ConfigurationError(
                gettext("%(name)s: not a URL (%(exc)s)") % {"name": self.name, "exc": exc}
            ) from None
        problem = check_url(url, bases)
        if problem:
            raise ConfigurationError(
                gettext("%(name)s: the URL %(problem)s") % {"name": self.name, "problem": problem}
            )
        return bases

    def _credentials(self) -> list[tuple[str, Credential]]:
        """``(where it goes, credential)`` for every credential the options name."""
        found = []
        for header, value in self.header_options.items():
            if isinstance(value, dict):
                if set(value) != {"credential"}:
                    raise ConfigurationError(
                        gettext('%(name)s: header %(header)r is a text or {"credential": "NAME"}')
                        % {"name": self.name, "header": header}
                    )
                item = credential(value["credential"], source=self.name)
                found.append((f"header:{header}", item))
        options = self.auth_options
        if options:
            kind = options.get("type", "bearer")
            secrets = {
                "bearer": ("token",),
                "basic": ("username", "password"),
                "header": ("token",),
                "query": ("token",),
            }.get(kind)
            if secrets is None:
                raise ConfigurationError(
                    gettext(
                        "%(name)s: auth type must be bearer, basic, header or query, not %(kind)r"
                    )
                    % {"name": self.name, "kind": str(kind)[:40]}
                )
            scheme = options.get("scheme", "Bearer")
            if not isinstance(scheme, str) or not scheme.isalnum() or len(scheme) > 30:
                raise ConfigurationError(
                    gettext("%(name)s: auth scheme is one word such as Bearer or Token")
                    % {"name": self.name}
                )
            for option in secrets:
                name = options.get(option)
                if not name:
                    raise ConfigurationError(
                        gettext("%(name)s: auth needs %(option)r: a credential name")
                        % {"name": self.name, "option": option}
                    )
                found.append((f"auth:{option}", credential(name, source=self.name)))
        return found

    def _request_parts(
        self, credentials: list[tuple[str, Credential]]
    ) -> tuple[dict[str, str], dict[str, str], list[str]]:
        """Headers and query parameters every request carries, and every secret string
        that goes out with them (kept out of messages and refused in responses)."""
        # gzip and deflate only: those are inflated in bounded pieces (http_limits).
        headers = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate"}
        query: dict[str, str] = {}
        secrets: list[str] = []
        values = {where: c.value for where, c in credentials}
        for header, value in self.header_options.items():
            headers[header] = values.get(f"header:{header}", str(value))
        kind = self.auth_options.get("type", "bearer") if self.auth_options else None
        if kind == "bearer":
            scheme = self.auth_options.get("scheme", "Bearer")
            headers["Authorization"] = f"{scheme} {values['auth:token']}"
        elif kind == "basic":
            pair = f"{values['auth:username']}:{values['auth:password']}".encode()
            token = base64.b64encode(pair).decode()
            headers["Authorization"] = f"Basic {token}"
            secrets.append(token)
        elif kind == "header":
            headers[str(self.auth_options.get("header", "X-Api-Key"))] = values["auth:token"]
        elif kind == "query":
            query[str(self.auth_options.get("param", "api_key"))] = values["auth:token"]
        secrets.extend(values.values())
        return headers, query, secrets

    # -- reading -------------------------------------------------------------------------
    def extent(self) -> Extent | None:
        """Records read of the total the API declares, or pages of its page count (the
        ``total`` and ``total_pages`` pagination options); else pages fetched so far, of a
        number not known before the last."""
        if self.declared is not None:
            total, unit = self.declared
            done = self.records_read if unit == "records" else self.pages_read
            return Extent(done=min(done, total), total=total, unit=unit)
        return Extent(done=self.pages_read, total=None, unit="pages") if self.pages_read else None

    def read(self) -> Iterator[dict[str, Any]]:
        bases = self._allowed_start()
        credentials = self._credentials()
        headers, query, secrets = self._request_parts(credentials)
        params = dict(self.params)
        if self.incremental and self.cursor not in (None, ""):
            params[self.incremental.get("param", "since")] = self.cursor
        clock = Clock(settings.HTTP_DEADLINE, settings.HTTP_RESPONSE_DEADLINE)
        with httpx.Client(
            headers=headers,
            timeout=self.timeout,
            transport=self.transport or deadline_transport(clock),
            follow_redirects=False,
            trust_env=False,
        ) as client:
            fetcher = Fetcher(
                self, client, clock, bases, [c for _, c in credentials], query, secrets
            )
            yield from self.track(self._records(fetcher, params))

    def _records(self, fetcher: Fetcher, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        style = self.pagination.get("style")
        p = self.pagination
        url: str | None = self.url
        page_no = int(p.get("start", 1 if style == "page" else 0))
        page_no, last_page = self.page_span or (page_no, None)
        seen_links: set[str] = set()
        seen_pages: dict[bytes, int] = {}
        seen_cursors: set[str] = set()
        previous: tuple[Any, ...] | None = None
        columns: dict[str, None] = {}
        while url is not None:
            if self.pages_read >= self.max_pages:
                raise SourceError(
                    gettext(
                        'stopped after %(max_pages)s pages (max_pages, DJSYNC["HTTP_MAX_PAGES"]); '
                        "is the pagination set up right?"
                    )
                    % {"max_pages": format(self.max_pages, ".0f")},
                    source=self.name,
                )
            page_params = dict(params) if url == self.url else {}
            if style == "page":
                page_params[p.get("param", "page")] = page_no
                if p.get("size_param") and p.get("size"):
                    page_params[p["size_param"]] = p["size"]
            elif style == "offset":
                page_params[p.get("offset_param", "offset")] = page_no
                page_params[p.get("limit_param", "limit")] = int(p.get("limit", 100))
            pages = fetcher.page(url, page_params, self.pages_read + 1)
            while True:
                try:
                    batch = next(pages)
                except StopIteration as done:
                    page: Page = done.value
                    break
                for record in batch:
                    columns.update(dict.fromkeys(record))
                if self.columns is None or len(columns) > len(self.columns):
                    self.columns = list(columns)
                started = time.monotonic()
                for record in batch:
                    self.records_read += 1
                    yield record
                # The time the run spent on these records is not the server's.
                fetcher.clock.extend(time.monotonic() - started)
            self.pages_read += 1
            if self.pages_read == 1:
                self.declared = declared_total(self.pagination, page.document)
            records = page.records
            count = records.count if records is not None else 0
            url = self._next_url(style, page, count, seen_links, seen_cursors, fetcher)
            if last_page is not None and self.pages_read >= last_page:
                url = None  # the end of this partition's pages
            if url is not None:
                # A server that ignores the pagination sends the same page again and again.
                earlier = seen_pages.get(page.digest)
                if earlier is not None:
                    raise SourceError(
                        gettext(
                            "page %(pages_read)s is the same as page %(earlier)s (identical "
                            "content): the API ignores the pagination; stopped"
                        )
                        % {"pages_read": self.pages_read, "earlier": earlier},
                        source=self.name,
                    )
                seen_pages[page.digest] = self.pages_read
                current = (
                    (count, records.first, records.last) if records is not None and count else None
                )
                if current is not None and current == previous:
                    raise SourceError(
                        gettext(
                            "page %(pages_read)s repeats the records of page %(pages_read2)s: the "
                            "API ignores the pagination; stopped"
                        )
                        % {"pages_read": self.pages_read, "pages_read2": self.pages_read - 1},
                        source=self.name,
                    )
                previous = current
            if style == "page":
                page_no += 1
            elif style == "offset":
                page_no += count
            if style == "cursor" and url is not None:
                params = {**params, p.get("param", "cursor"): self._cursor_value}
        if self.columns is None:
            self.columns = []

    def _next_url(
        self,
        style: str | None,
        page: Page,
        count: int,
        seen: set[str],
        seen_cursors: set[str],
        fetcher: Fetcher,
    ) -> str | None:
        p = self.pagination
        if style is None:
            return None
        if style == "page":
            size = p.get("size")
            if not count or (size and count < int(size)):
                return None
            return self.url
        if style == "offset":
            if count < int(p.get("limit", 100)):
                return None
            return self.url
        if style == "cursor":
            try:
                value = dig(page.document, p.get("path", "next_cursor"))
            except (KeyError, IndexError, TypeError):
                value = None
            if value in (None, "") or not count:
                return None
            if isinstance(value, dict | list):
                raise SourceError(
                    gettext("page %(pages_read)s: the next cursor is a %(name)s, not a value")
                    % {"pages_read": self.pages_read, "name": type(value).__name__},
                    source=self.name,
                )
            marker = hashlib.sha256(repr(value).encode()).hexdigest()
            if marker in seen_cursors:
                raise SourceError(
                    gettext("page %(pages_read)s: the next cursor repeats: a pagination loop")
                    % {"pages_read": self.pages_read},
                    source=self.name,
                )
            seen_cursors.add(marker)
            self._cursor_value = value
            return self.url
        # style == "next"
        if p.get("path"):
            try:
                link = dig(page.document, p["path"])
            except (KeyError, IndexError, TypeError):
                link = None
        else:
            link = page.links.get("next", {}).get("url")
        if not link:
            return None
        if not isinstance(link, str):
            raise SourceError(
                gettext("page %(pages_read)s: the next link is a %(name)s, not a URL")
                % {"pages_read": self.pages_read, "name": type(link).__name__},
                source=self.name,
            )
        try:
            target = page.url.join(link)
        except httpx.InvalidURL:
            raise SourceError(
                gettext("page %(pages_read)s: the next link %(link)r is not a URL")
                % {"pages_read": self.pages_read, "link": shown(link)},
                source=self.name,
            ) from None
        problem = fetcher.refusal(target)
        if problem:
            raise fetcher.error(
                gettext("page %(pages_read)s's next link: %(problem)s")
                % {"pages_read": self.pages_read, "problem": problem}
            )
        text = str(target)
        if text in seen:
            raise SourceError(
                gettext("the next link %(target)s repeats: a pagination loop")
                % {"target": shown(target)},
                source=self.name,
            )
        seen.add(text)
        return text

"""HTTP JSON source: records from a web API, fetched page by page with retries.

Each page is requested, decoded and yielded before the next one is fetched, so a large API
never sits in memory whole. Credentials are named in the job (``"token": "PARTNER_TOKEN"``)
and read from ``DJSYNC["CREDENTIALS"]`` or the environment at run time, never stored.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import httpx

from ..conf import settings
from ..exceptions import ConfigurationError, SourceError, TransientSourceError
from .base import Source

#: Statuses worth another attempt: rate limiting and server-side failures.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
PAGINATION_STYLES = ("page", "offset", "cursor", "next")
#: Header names whose value is a secret: they must name a credential, not hold one.
SECRET_HEADER_WORDS = ("authorization", "token", "secret", "key", "password", "cookie")


def get_credential(name: str, *, source: str = "") -> str:
    """The secret stored under ``name``: ``DJSYNC["CREDENTIALS"][name]``, else ``$name``."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{source}: a credential is given by name (a string)")
    credentials = settings.CREDENTIALS or {}
    value = credentials.get(name)
    if value is None:
        value = os.environ.get(name)
    if value is None or value == "":
        raise ConfigurationError(
            f"{source}: credential {name!r} is not set: add it to DJSYNC['CREDENTIALS'] "
            "or to the environment"
        )
    return str(value)


def dig(data: Any, path: str | None) -> Any:
    """``dig({"a": {"b": [1]}}, "a.b")`` → ``[1]``; a missing step raises KeyError."""
    if not path:
        return data
    for step in path.split("."):
        if isinstance(data, dict):
            data = data[step]
        elif isinstance(data, list) and step.lstrip("-").isdigit():
            data = data[int(step)]
        else:
            raise KeyError(step)
    return data


class HttpSource(Source):
    """Reads JSON records from an HTTP API.

    Options (all but ``url`` optional):

    - ``url``, ``method`` (GET or POST), ``params`` (query string), ``json`` (POST body),
      ``headers`` (a value may be ``{"credential": "NAME"}``).
    - ``auth``: ``{"type": "bearer", "token": "NAME"}``, ``{"type": "basic", "username":
      "NAME", "password": "NAME"}``, ``{"type": "header", "header": "X-Api-Key", "token":
      "NAME"}`` or ``{"type": "query", "param": "api_key", "token": "NAME"}``, where each
      NAME is a credential name (see :func:`get_credential`).
    - ``records``: dotted path to the list of records in each response (``"data.items"``);
      by default the response itself, or the one list inside it.
    - ``pagination``: ``{"style": "page", "param": "page", "start": 1, "size_param":
      "per_page", "size": 100}``; ``{"style": "offset", "offset_param": "offset",
      "limit_param": "limit", "limit": 100}``; ``{"style": "cursor", "param": "cursor",
      "path": "meta.next_cursor"}``; ``{"style": "next", "path": "links.next"}`` (or no
      path: the ``Link: <…>; rel="next"`` header).
    - ``timeout``, ``retries``, ``backoff``, ``max_pages``: defaults from the HTTP_* settings.
    - ``incremental``: ``{"column": "updated_at", "param": "since", "deleted": "is_deleted"}``
      sends the saved cursor as ``param`` and notes the largest ``column`` value read.
    """

    first_row = 1

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
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"an HTTP source needs an http(s) URL, not {url!r}")
        self.url = url
        self.name = name or url
        self.method = method.upper()
        if self.method not in ("GET", "POST"):
            raise ConfigurationError(f"{self.name}: method must be GET or POST")
        self.params = dict(params or {})
        self.body = json
        self.header_options = dict(headers or {})
        self.auth_options = dict(auth or {})
        self.records_path = records
        self.pagination = dict(pagination or {})
        style = self.pagination.get("style")
        if self.pagination and style not in PAGINATION_STYLES:
            raise ConfigurationError(
                f"{self.name}: pagination style must be one of {', '.join(PAGINATION_STYLES)}"
            )
        self.timeout = float(timeout if timeout is not None else settings.HTTP_TIMEOUT)
        self.retries = int(retries if retries is not None else settings.HTTP_RETRIES)
        self.backoff = float(backoff if backoff is not None else settings.HTTP_BACKOFF)
        self.max_pages = int(max_pages if max_pages is not None else settings.HTTP_MAX_PAGES)
        self.transport = transport
        self.columns = None
        self.pages_read = 0
        self.setup_incremental(incremental)
        # Check credential *names* early; their values are read when the source runs.
        for header, value in self.header_options.items():
            if isinstance(value, str) and any(w in header.lower() for w in SECRET_HEADER_WORDS):
                raise ConfigurationError(
                    f"{self.name}: header {header!r} holds a secret; give "
                    f'{{"credential": "NAME"}} and put the value in DJSYNC["CREDENTIALS"] '
                    "or the environment"
                )

    # -- request building ----------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        for header, value in self.header_options.items():
            if isinstance(value, dict) and "credential" in value:
                headers[header] = get_credential(value["credential"], source=self.name)
            else:
                headers[header] = str(value)
        return headers

    def _auth(self, headers: dict[str, str], params: dict[str, Any]) -> httpx.Auth | None:
        options = self.auth_options
        if not options:
            return None
        kind = options.get("type", "bearer")
        if kind == "bearer":
            headers["Authorization"] = f"Bearer {self._secret('token')}"
        elif kind == "basic":
            return httpx.BasicAuth(self._secret("username"), self._secret("password"))
        elif kind == "header":
            headers[options.get("header", "X-Api-Key")] = self._secret("token")
        elif kind == "query":
            params[options.get("param", "api_key")] = self._secret("token")
        else:
            raise ConfigurationError(
                f"{self.name}: auth type must be bearer, basic, header or query, not {kind!r}"
            )
        return None

    def _secret(self, option: str) -> str:
        name = self.auth_options.get(option)
        if not name:
            raise ConfigurationError(f"{self.name}: auth needs {option!r}: a credential name")
        return get_credential(name, source=self.name)

    # -- reading -------------------------------------------------------------------------
    def read(self) -> Iterator[dict[str, Any]]:
        headers = self._headers()
        params = dict(self.params)
        auth = self._auth(headers, params)
        if self.incremental and self.cursor not in (None, ""):
            params[self.incremental.get("param", "since")] = self.cursor
        with httpx.Client(
            headers=headers,
            auth=auth,
            timeout=self.timeout,
            transport=self.transport,
            follow_redirects=True,
        ) as client:
            yield from self.track(self._records(client, params))

    def _records(self, client: httpx.Client, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        style = self.pagination.get("style")
        p = self.pagination
        url: str | None = self.url
        page_no = int(p.get("start", 1 if style == "page" else 0))
        seen_urls: set[str] = set()
        row = 1
        columns: dict[str, None] = {}
        while url is not None:
            if self.pages_read >= self.max_pages:
                raise SourceError(
                    f"stopped after {self.max_pages} pages (max_pages); is the pagination "
                    "set up right?",
                    source=self.name,
                )
            page_params = dict(params)
            if style == "page":
                page_params[p.get("param", "page")] = page_no
                if p.get("size_param") and p.get("size"):
                    page_params[p["size_param"]] = p["size"]
            elif style == "offset":
                page_params[p.get("offset_param", "offset")] = page_no
                page_params[p.get("limit_param", "limit")] = int(p.get("limit", 100))
            response = self._fetch(client, url, page_params if url == self.url else {})
            data = self._decode(response)
            records = self._page_records(data)
            self.pages_read += 1
            for record in records:
                columns.update(dict.fromkeys(record))
            if self.columns is None or len(columns) > len(self.columns):
                self.columns = list(columns)
            for record in records:
                yield record
                row += 1
            url = self._next_url(style, url, response, data, records, seen_urls)
            if style == "page":
                page_no += 1
            elif style == "offset":
                page_no += len(records)
            if style == "cursor" and url is not None:
                params = {**params, p.get("param", "cursor"): self._cursor_value}
        if self.columns is None:
            self.columns = []

    def _next_url(
        self,
        style: str | None,
        url: str,
        response: httpx.Response,
        data: Any,
        records: list[dict[str, Any]],
        seen: set[str],
    ) -> str | None:
        p = self.pagination
        if style is None:
            return None
        if style == "page":
            size = p.get("size")
            if not records or (size and len(records) < int(size)):
                return None
            return self.url
        if style == "offset":
            if len(records) < int(p.get("limit", 100)):
                return None
            return self.url
        if style == "cursor":
            try:
                value = dig(data, p.get("path", "next_cursor"))
            except (KeyError, IndexError, TypeError):
                value = None
            if value in (None, "") or not records:
                return None
            self._cursor_value = value
            return self.url
        # style == "next"
        if p.get("path"):
            try:
                link = dig(data, p["path"])
            except (KeyError, IndexError, TypeError):
                link = None
        else:
            link = response.links.get("next", {}).get("url")
        if not link:
            return None
        link = urljoin(str(response.url), str(link))
        if link in seen:
            raise SourceError(f"the next link {link} repeats: a pagination loop", source=self.name)
        seen.add(link)
        return link

    def _fetch(self, client: httpx.Client, url: str, params: dict[str, Any]) -> httpx.Response:
        """One request, retried with exponential backoff on 429, 5xx, timeouts and drops."""
        attempt = 0
        while True:
            problem: str
            retry_after: float | None = None
            try:
                response = client.request(
                    self.method,
                    url,
                    params=params or None,
                    json=self.body if self.method == "POST" else None,
                )
            except httpx.TimeoutException:
                problem = f"no answer within {self.timeout:g} s (timeout)"
            except httpx.TransportError as exc:
                problem = f"cannot connect: {exc}"
            else:
                if response.status_code < 400:
                    return response
                problem = f"HTTP {response.status_code} {response.reason_phrase}"
                detail = _snippet(response)
                if response.status_code not in RETRY_STATUSES:
                    raise SourceError(
                        f"{problem} from {_clean(response.url)}{detail}", source=self.name
                    )
                retry_after = _retry_after(response)
                problem += detail
            if attempt >= self.retries:
                tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
                raise TransientSourceError(
                    f"{problem} (page {self.pages_read + 1}, gave up after {tries})",
                    source=self.name,
                )
            pause = self.backoff * (2**attempt)
            if retry_after is not None:
                pause = max(pause, retry_after)
            time.sleep(min(pause, float(settings.HTTP_MAX_BACKOFF)))
            attempt += 1

    def _decode(self, response: httpx.Response) -> Any:
        try:
            return json.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = (
                f" at line {exc.lineno}, character {exc.colno}"
                if isinstance(exc, json.JSONDecodeError)
                else ""
            )
            kind = response.headers.get("content-type", "no content type")
            raise SourceError(
                f"page {self.pages_read + 1} is not valid JSON{where} ({kind}){_snippet(response)}",
                source=self.name,
            ) from None

    def _page_records(self, data: Any) -> list[dict[str, Any]]:
        page = self.pages_read + 1
        if self.records_path:
            try:
                data = dig(data, self.records_path)
            except (KeyError, IndexError, TypeError):
                raise SourceError(
                    f"page {page} has no {self.records_path!r} (the records path)",
                    source=self.name,
                ) from None
        elif isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise SourceError(
                    f"page {page}: expected a list of objects; set the source's records "
                    f"path (keys here: {', '.join(map(str, data)) or 'none'})",
                    source=self.name,
                )
            data = lists[0]
        if data is None:
            return []
        if not isinstance(data, list):
            raise SourceError(
                f"page {page}: expected a list of objects, got {type(data).__name__}",
                source=self.name,
            )
        for i, record in enumerate(data, start=1):
            if not isinstance(record, dict):
                raise SourceError(
                    f"page {page}, record {i}: expected an object, got {type(record).__name__}",
                    source=self.name,
                )
        return data


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _snippet(response: httpx.Response, size: int = 200) -> str:
    try:
        text = response.text.strip()
    except UnicodeDecodeError:
        return ""
    if not text:
        return ""
    return f": {text[:size]}{'…' if len(text) > size else ''}"


def _clean(url: httpx.URL) -> str:
    """The URL without its query string, which may hold an API key."""
    return str(url.copy_with(query=None))

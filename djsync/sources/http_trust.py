"""Where an HTTP source may go and what it may send: ``HTTP_BASE_URLS`` and ``CREDENTIALS``.

A job names a URL and credential *names*; the site's settings say which URL prefixes may be
fetched and which secrets exist (and, optionally, where each may be sent). Every request an
HTTP source makes — its first page, each next link, each redirect — is checked here on the
parsed URL httpx is about to send, never on the text the job typed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from django.utils.translation import gettext

from djsync.conf import settings
from djsync.exceptions import ConfigurationError
from djsync.extras import lazy

if TYPE_CHECKING:
    import httpx
else:
    httpx = lazy("httpx", "an HTTP source or target")

DEFAULT_PORTS = {"http": 80, "https": 443}
#: A host as httpx hands it over (IDNA-encoded, lowercased): names, IPv4 or IPv6 only.
_HOST = re.compile(r"^[a-z0-9.\-:\[\]]+$")
_USERINFO = re.compile(r"(//)[^/?#@]*@")


class Refused(ValueError):
    """A URL that no base URL may cover (user name in it, dot segments, odd host)."""


@dataclass(frozen=True)
class BaseUrl:
    """One prefix of ``DJSYNC["HTTP_BASE_URLS"]`` (or of a credential's ``base_urls``)."""

    scheme: str
    host: str
    port: int
    #: Always ends with "/": ``https://api.example.com/v1`` covers ``/v1`` and ``/v1/…``,
    #: never ``/v10``.
    path: str
    text: str

    def covers(self, url: httpx.URL) -> bool:
        try:
            scheme, host, port, raw, decoded = url_parts(url)
        except Refused:
            return False
        if (scheme, host, port) != (self.scheme, self.host, self.port):
            return False
        # The path must be under the prefix both as sent and percent-decoded, so neither
        # a server that decodes %2F nor one that does not can be led outside it.
        return all(p == self.path[:-1] or p.startswith(self.path) for p in (raw, decoded))


def url_parts(url: httpx.URL) -> tuple[str, str, int, str, str]:
    """``(scheme, host, port, raw path, decoded path)`` of a URL a source may send, or
    :class:`Refused` saying why no base URL can cover it."""
    scheme = url.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise Refused(gettext("is not an http(s) URL"))
    if url.userinfo:
        raise Refused(gettext("has a user name or password in it (give credentials with auth)"))
    host = url.raw_host.decode("ascii", "replace").lower()
    if not host or not _HOST.match(host):
        raise Refused(gettext("has no host, or an unusual one"))
    raw = url.raw_path.decode("ascii", "replace").split("?", 1)[0] or "/"
    decoded = unquote_to_bytes(raw).decode("utf-8", "replace")
    if "\\" in decoded or "\x00" in decoded:
        raise Refused(gettext("has a backslash or a NUL character in its path"))
    if any(segment.split(";", 1)[0] in (".", "..") for segment in decoded.split("/")):
        raise Refused(gettext("has . or .. in its path (also percent-encoded)"))
    return scheme, host, url.port or DEFAULT_PORTS[scheme], raw, decoded


def shown(url: Any) -> str:
    """A URL fit for a message: no query string (it may hold a key), no user name."""
    text = str(url).split("#", 1)[0].split("?", 1)[0]
    text = _USERINFO.sub(r"\1", text, count=1)
    return text if len(text) <= 200 else text[:200] + "…"


def parse_base(text: Any, *, setting: str) -> BaseUrl:
    """A base URL from the settings; a malformed one is a ConfigurationError naming it."""
    problem = None
    if not isinstance(text, str):
        problem = gettext("is not a text")
    else:
        try:
            url = httpx.URL(text)
            scheme, host, port, raw, _ = url_parts(url)
        except (httpx.InvalidURL, Refused) as exc:
            problem = str(exc) or gettext("is not a URL")
        else:
            if url.query or url.fragment:
                problem = gettext(
                    "has a query string or fragment (give scheme, host, port and path)"
                )
            elif "%" in raw:
                problem = gettext("has percent-encoding in its path (write the path plainly)")
    if problem:
        raise ConfigurationError(f"{setting}: {text!r:.100} {problem}")
    return BaseUrl(scheme, host, port, raw.rstrip("/") + "/", text)


def base_urls() -> list[BaseUrl]:
    """``DJSYNC["HTTP_BASE_URLS"]``, parsed; empty means HTTP sources are off."""
    values = settings.HTTP_BASE_URLS or []
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ConfigurationError(
            gettext(
                'DJSYNC["HTTP_BASE_URLS"] is a list of URL prefixes, e.g. ["https://api.example.com/v1/"]'
            )
        )
    return [parse_base(v, setting='DJSYNC["HTTP_BASE_URLS"]') for v in values]


def listed(bases: Iterable[BaseUrl], most: int = 5) -> str:
    bases = list(bases)
    text = ", ".join(b.text for b in bases[:most])
    return text + (
        gettext(" and %(bases)s more") % {"bases": len(bases) - most} if len(bases) > most else ""
    )


def check_url(url: httpx.URL, bases: list[BaseUrl]) -> str | None:
    """Why ``url`` may not be fetched under ``bases``, or None when one covers it."""
    try:
        url_parts(url)
    except Refused as exc:
        return f"{shown(url)} {exc}"
    if any(base.covers(url) for base in bases):
        return None
    return gettext('%(url)s is not under DJSYNC["HTTP_BASE_URLS"] (allowed: %(listed)s)') % {
        "url": shown(url),
        "listed": listed(bases),
    }


@dataclass(frozen=True)
class Credential:
    """A secret of ``DJSYNC["CREDENTIALS"]``, and where it may be sent (None: under any
    base URL of ``DJSYNC["HTTP_BASE_URLS"]``)."""

    name: str
    value: str = ""
    base_urls: tuple[BaseUrl, ...] | None = None

    def __repr__(self) -> str:  # never the value, whoever prints it
        return f"<Credential {self.name!r}>"

    def refusal(self, url: httpx.URL) -> str | None:
        """Why this credential may not go to ``url``, or None."""
        if self.base_urls is None or any(b.covers(url) for b in self.base_urls):
            return None
        return gettext(
            "credential %(name)r may not be sent to %(url)s (its base_urls in "
            'DJSYNC["CREDENTIALS"]: %(listed)s)'
        ) % {"name": self.name, "url": shown(url), "listed": listed(self.base_urls)}


def credential(name: Any, *, source: str = "") -> Credential:
    """The credential a job names. Only ``DJSYNC["CREDENTIALS"]`` holds them: a name that
    is not there is refused, whatever the environment holds."""
    where = f"{source}: " if source else ""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(
            gettext("%(where)sa credential is given by name (a string)") % {"where": where}
        )
    credentials = settings.CREDENTIALS or {}
    if not isinstance(credentials, dict):
        raise ConfigurationError(gettext('DJSYNC["CREDENTIALS"] maps names to secrets'))
    if name not in credentials:
        raise ConfigurationError(
            gettext(
                '%(where)scredential %(name)r is not in DJSYNC["CREDENTIALS"]; a job may only '
                "name the credentials the site's settings declare"
            )
            % {"where": where, "name": name[:100]}
        )
    entry = credentials[name]
    setting = f'DJSYNC["CREDENTIALS"][{name!r}]'
    bases: tuple[BaseUrl, ...] | None = None
    if isinstance(entry, dict):
        unknown = set(entry) - {"value", "base_urls"}
        if unknown:
            raise ConfigurationError(
                gettext('%(setting)s: unknown keys %(sorted)s (it takes "value" and "base_urls")')
                % {"setting": setting, "sorted": ", ".join(sorted(map(str, unknown)))}
            )
        if "base_urls" in entry:
            urls = entry["base_urls"]
            if isinstance(urls, str) or not isinstance(urls, list | tuple) or not urls:
                raise ConfigurationError(
                    gettext('%(setting)s["base_urls"] is a non-empty list of URLs')
                    % {"setting": setting}
                )
            bases = tuple(parse_base(u, setting=f'{setting}["base_urls"]') for u in urls)
        entry = entry.get("value")
    if entry is None or entry == "":
        raise ConfigurationError(
            gettext(
                '%(where)scredential %(name)r is declared in DJSYNC["CREDENTIALS"] but empty (is '
                "the environment variable your settings read it from set?)"
            )
            % {"where": where, "name": name}
        )
    if not isinstance(entry, str):
        raise ConfigurationError(
            gettext("%(setting)s is a text (or {'value': text, 'base_urls': [...]})")
            % {"setting": setting}
        )
    return Credential(name, entry, bases)


def get_credential(name: str, *, source: str = "") -> str:
    """The secret stored under ``name`` in ``DJSYNC["CREDENTIALS"]`` (never the environment)."""
    return credential(name, source=source).value


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced: messages and stored errors never hold one."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, "[credential]")
    return text

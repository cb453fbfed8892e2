"""Hostile HTTP sources (issue 9): where a job may send a request and a credential, and what
a hostile or broken server may cost. Each case runs a real job against a real local server
and checks the one-line message (naming the setting), that the run failed and that nothing
was written; the expensive ones run in a capped child process for time and peak memory."""

from __future__ import annotations

import gzip
import itertools
import json
import time

import httpx
import pytest
from django.core import serializers

import djsync
from djsync.exceptions import ConfigurationError, DjsyncError, TransientSourceError
from djsync.models import SyncRun
from djsync.sources import HttpSource
from djsync.sources.http_trust import check_url, parse_base
from tests.hostile import run_isolated
from tests.httpserver import (
    ApiServer,
    Reply,
    Request,
    allow,
    compressed,
    declared,
    deflate_bomb,
    drip,
    endless,
    raw_bytes,
    serve,
    slow_headers,
    spaces_gzip,
)
from tests.testapp.models import Product

pytestmark = pytest.mark.django_db

#: Small limits so that every case ends in a second or two.
LIMITS = {
    "HTTP_RESPONSE_DEADLINE": 1,
    "HTTP_DEADLINE": 4,
    "HTTP_MAX_BODY": 1_000_000,
    "HTTP_MAX_REDIRECTS": 3,
    "JSON_MAX_DEPTH": 20,
}
SECRET = "tok-9f8e7d6c5b4a"
#: A whole record, repeated for ever by the endless bodies (the importer accepts it).
_names = itertools.count(1)


def item(n: int) -> dict:
    return {
        "sku": f"H{n:03d}",
        "name": f"Item {n}",
        "price": "1.00",
        "qty": n,
        "updated": "2026-01-01",
        "active": True,
    }


RECORD = json.dumps({**item(1), "sku": "E1"}).encode() + b","


@pytest.fixture
def api(settings):
    """The test server, its whole URL space allowed, with small limits."""
    for server in serve():
        allow(settings, server.url("/"), **LIMITS)
        yield server


@pytest.fixture
def other():
    """A second server on another port: not allowed."""
    yield from serve()


@pytest.fixture
def kept(db):
    """A row that a failed run must leave as it is (a sync that ran would delete it)."""
    return Product.objects.create(sku="KEEP", name="kept", price=1, qty=1)


def failed(make_job, url: str, *, error: type[DjsyncError] = DjsyncError, **options) -> SyncRun:
    """Run a job on ``url``; assert it failed fast, wrote nothing, and said one line."""
    job = make_job(
        "test_products",
        name=f"hostile-{next(_names)}",
        source={"kind": "http", "url": url, "retries": 0, "backoff": 0, **options},
    )
    started = time.monotonic()
    with pytest.raises(error) as info:
        djsync.run(job)
    seconds = time.monotonic() - started
    run = info.value.run
    run.refresh_from_db()
    assert run.status == "failed"
    assert seconds < 10, f"took {seconds:.1f} s"
    assert "\n" not in run.error and "Traceback" not in run.error
    assert list(Product.objects.values_list("sku", "name")) == [("KEEP", "kept")]
    assert not run.changes.exists()
    return run


# == trust: where a request may go ==========================================================

BASE = "https://api.example.com/v1/"


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com.evil.com/v1/items",
        "https://api.example.com@evil.com/v1/items",
        "https://api.example.com\\@evil.com/v1/items",
        "https://user:pw@api.example.com/v1/items",
        "https://api.example.com:8443/v1/items",
        "http://api.example.com/v1/items",
        "https://api.example.com/v1/../admin",
        "https://api.example.com/v1/%2e%2e/admin",
        "https://api.example.com/v1/%2E%2E%2Fadmin",
        "https://api.example.com/v1/..%2fadmin",
        "https://api.example.com/v1%2f..%2fadmin",
        "https://api.example.com/v1/..;/admin",
        "https://api.example.com/v1/a%5c..%5c..%5cadmin",
        "https://api.example.com/v10/items",
        "https://api.example.com/V1/items",
        "https://api.example.com/%76%31/items",
        "https://api.example.com%2eevil.com/v1/",
        "https://api.example.com./v1/items",
        "file:///etc/passwd",
    ],
)
def test_a_url_outside_the_base_is_refused(url):
    problem = check_url(httpx.URL(url), [parse_base(BASE, setting="test")])
    assert problem is not None
    assert "pw" not in problem  # a password in the URL is not repeated


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com/v1/items?page=2",
        "https://API.Example.COM:443/v1/items",
        "https://api.example.com/v1",
        "https://api.example.com/v1/a/../items",  # normalized before it is sent
        "https://api.example.com/v1/a%20b",
    ],
)
def test_a_url_under_the_base_is_allowed(url):
    assert check_url(httpx.URL(url), [parse_base(BASE, setting="test")]) is None


@pytest.mark.parametrize(
    "base",
    ["api.example.com", "https://u:p@api.example.com/", "https://api.example.com/?k=1", 42],
)
def test_a_malformed_base_url_setting_is_refused(settings, base):
    settings.DJSYNC = {**settings.DJSYNC, "HTTP_BASE_URLS": [base]}
    with pytest.raises(ConfigurationError, match=r'^DJSYNC\["HTTP_BASE_URLS"\]: '):
        HttpSource("https://api.example.com/v1/")


def test_no_base_urls_no_http_source(settings, make_job, kept):
    settings.DJSYNC = {**settings.DJSYNC, "HTTP_BASE_URLS": []}
    run = failed(make_job, "http://127.0.0.1:9/items", error=ConfigurationError)
    assert run.error.endswith(
        'HTTP sources are off until DJSYNC["HTTP_BASE_URLS"] lists the URL prefixes they '
        'may fetch, e.g. ["https://api.example.com/v1/"]'
    )


def test_a_job_url_on_another_port_is_refused_before_any_request(
    settings, api, other, make_job, kept
):
    allow(settings, api.url("/api/"), **LIMITS)
    other.route("/api/items", Reply(body=[item(1)]))
    for url in (other.url("/api/items"), api.url("/apix/items"), api.url("/api/%2e%2e/x")):
        run = failed(make_job, url, error=ConfigurationError)
        assert 'DJSYNC["HTTP_BASE_URLS"]' in run.error or ". or .." in run.error
    assert other.requests == [] and api.requests == []


def test_a_next_link_to_another_server_is_refused(api, other, make_job, kept):
    api.route("/items", Reply(body={"results": [item(1)], "next": other.url("/steal?k=1")}))
    run = failed(
        make_job,
        api.url("/items"),
        records="results",
        pagination={"style": "next", "path": "next"},
    )
    assert run.error == (
        f"{api.url('/items')}: page 1's next link: {other.url('/steal')} is not under "
        f'DJSYNC["HTTP_BASE_URLS"] (allowed: {api.url("/")})'
    )
    assert other.requests == []


@pytest.mark.parametrize(
    "location",
    ["other", "other-host", "file:///etc/passwd", "userinfo", "ftp://127.0.0.1/x"],
)
def test_a_redirect_out_of_the_base_urls_is_refused(api, other, make_job, kept, location):
    with ApiServer("127.0.0.2") as elsewhere:
        target = {
            "other": other.url("/items"),
            "other-host": elsewhere.url("/items"),
            "userinfo": api.url("/items").replace("//", "//user:pw@"),
        }.get(location, location)
        api.route("/start", Reply(302, headers={"Location": target}))
        run = failed(make_job, api.url("/start"))
        assert run.error.startswith(f"{api.url('/start')}: page 1 redirects: ")
        assert "pw" not in run.error
        assert other.requests == [] and elsewhere.requests == []


@pytest.mark.parametrize("name", ["DJANGO_SECRET_KEY", "PATH", "HOME"])
def test_an_environment_variable_is_never_a_credential(api, make_job, kept, monkeypatch, name):
    monkeypatch.setenv(name, SECRET)
    api.route("/items", lambda r: Reply(body=[item(1)]))
    run = failed(
        make_job,
        api.url("/items"),
        error=ConfigurationError,
        auth={"type": "bearer", "token": name},
    )
    assert f'credential {name!r} is not in DJSYNC["CREDENTIALS"]' in run.error
    assert api.requests == []


def test_a_credential_bound_to_base_urls_goes_nowhere_else(settings, api, make_job, kept):
    allow(
        settings,
        api.url("/"),
        CREDENTIALS={"PARTNER": {"value": SECRET, "base_urls": [api.url("/partner/")]}},
        **LIMITS,
    )
    auth = {"type": "header", "header": "X-Key", "token": "PARTNER"}
    api.route("/partner/items", Reply(body=[item(1)]))
    api.route("/partner/moved", Reply(307, headers={"Location": "/public/items"}))
    api.route("/public/items", Reply(body=[item(2)]))
    source = {"kind": "http", "url": api.url("/partner/items"), "auth": auth}
    ok = make_job("test_products", name="ok", source=source, delete=False)
    assert djsync.run(ok).counts["created"] == 1
    assert api.requests[0].headers["x-key"] == SECRET
    Product.objects.exclude(sku="KEEP").delete()
    run = failed(make_job, api.url("/public/items"), error=ConfigurationError, auth=auth)
    assert run.error.endswith(
        f"credential 'PARTNER' may not be sent to {api.url('/public/items')} (its base_urls "
        f'in DJSYNC["CREDENTIALS"]: {api.url("/partner/")})'
    )
    run = failed(make_job, api.url("/partner/moved"), auth=auth)
    assert "page 1 redirects: credential 'PARTNER' may not be sent to" in run.error
    assert [r.path for r in api.requests] == ["/partner/items", "/partner/moved"]


def stored(run: SyncRun) -> str:
    """Everything djsync keeps about a run: the run, its changes and its row errors."""
    rows = [run, *run.changes.all(), *run.row_errors.all()]
    return serializers.serialize("json", rows)


@pytest.mark.parametrize("where", ["records", "error page", "not json", "url"])
def test_a_credential_never_reaches_a_message_or_stored_data(settings, api, make_job, kept, where):
    allow(settings, api.url("/"), CREDENTIALS={"TOKEN": SECRET}, **LIMITS)

    def echo(request: Request) -> Reply:
        token = request.headers.get("authorization", "") + request.query.get("key", "")
        if where == "records":
            return Reply(body=[{**item(1), "name": token}])
        if where == "error page":
            return Reply(401, f"invalid token {token} for this API")
        if where == "not json":
            return Reply(body=f"<html>{token}</html>")
        return Reply(404, "no such page")

    api.route("/items", echo)
    auth = (
        {"type": "query", "param": "key", "token": "TOKEN"}
        if where == "url"
        else {"type": "bearer", "token": "TOKEN"}
    )
    run = failed(make_job, api.url("/items"), auth=auth)
    assert SECRET not in run.error and SECRET not in stored(run)
    assert SECRET in (api.requests[0].headers.get("authorization", "") + str(api.requests[0].query))
    expected = {
        "records": "page 1 contains a credential that was sent with the request; refused",
        "error page": "HTTP 401 Unauthorized from",
        "not json": "page 1 contains a credential",
        "url": f"HTTP 404 Not Found from {api.url('/items')}: ",
    }[where]
    assert expected in run.error


# == bounded cost ===========================================================================


@pytest.mark.parametrize(
    "reply, message",
    [
        (drip(0.2), 'no complete answer within DJSYNC["HTTP_RESPONSE_DEADLINE"] (1 s)'),
        (slow_headers(0.2), 'no complete answer within DJSYNC["HTTP_RESPONSE_DEADLINE"] (1 s)'),
    ],
    ids=["body", "headers"],
)
def test_a_slow_drip_stops_at_the_response_deadline(api, make_job, kept, reply, message):
    api.route("/drip", reply)
    started = time.monotonic()
    run = failed(make_job, api.url("/drip"), error=TransientSourceError, retries=1)
    assert run.error == f"{api.url('/drip')}: {message} (page 1, gave up after 2 attempts)"
    assert time.monotonic() - started < 3.5  # 2 attempts of 1 s, not 2 × HTTP_TIMEOUT


def test_the_overall_deadline_covers_retries(settings, api, make_job, kept):
    allow(settings, api.url("/"), **{**LIMITS, "HTTP_RESPONSE_DEADLINE": 60, "HTTP_DEADLINE": 1.5})
    api.route("/drip", drip(0.2))
    run = failed(make_job, api.url("/drip"), retries=5)
    assert run.error == (
        f"{api.url('/drip')}: stopped at page 1: reading took longer than "
        'DJSYNC["HTTP_DEADLINE"] (1.5 s)'
    )


def test_the_overall_deadline_covers_all_pages(settings, api, make_job, kept):
    allow(settings, api.url("/"), **{**LIMITS, "HTTP_DEADLINE": 1.5})

    def slow_page(request: Request) -> Reply:
        return Reply(body=[item(int(request.query["page"]))], delay=0.3)

    api.route("/pages", slow_page)
    run = failed(make_job, api.url("/pages"), pagination={"style": "page"})
    assert 'took longer than DJSYNC["HTTP_DEADLINE"] (1.5 s)' in run.error
    assert 3 <= len(api.requests) <= 6


def test_a_retry_after_beyond_the_deadline_fails_at_once(api, make_job, kept):
    api.route("/busy", Reply(503, "busy", headers={"Retry-After": "86400"}))
    started = time.monotonic()
    run = failed(make_job, api.url("/busy"), error=TransientSourceError, retries=3)
    assert run.error == (
        f"{api.url('/busy')}: HTTP 503 Service Unavailable: busy (page 1); another attempt "
        'in 60 s would pass DJSYNC["HTTP_DEADLINE"] (4 s)'
    )
    assert time.monotonic() - started < 2


TOO_LARGE = 'page 1 is larger than DJSYNC["HTTP_MAX_BODY"] (1,000,000 bytes)'


@pytest.mark.parametrize(
    "reply, message",
    [
        (declared(2 * 1024**3, b"[]"), f"{TOO_LARGE}: its Content-Length is 2,147,483,648"),
        (endless(RECORD), f"{TOO_LARGE}: as sent"),
        (endless(RECORD, chunked=False), f"{TOO_LARGE}: as sent"),
        (
            raw_bytes(spaces_gzip(256 << 20), Content_Encoding="gzip"),
            f"{TOO_LARGE}: once decompressed (gzip)",
        ),
        (
            raw_bytes(gzip.compress(spaces_gzip(1 << 30)), Content_Encoding="gzip, gzip"),
            f"{TOO_LARGE}: once decompressed (gzip, gzip)",
        ),
        (
            raw_bytes(deflate_bomb(64 << 20), Content_Encoding="deflate"),
            f"{TOO_LARGE}: once decompressed (deflate)",
        ),
        (
            raw_bytes(b"[" + b"1" * 2_000_000 + b"]"),
            f"{TOO_LARGE}: its Content-Length is 2,000,002",
        ),
        (
            raw_bytes(b"x" * 10, Content_Encoding="br"),
            "page 1 cannot be read: it is encoded with 'br'; djsync reads gzip or deflate",
        ),
        (
            compressed(b"[]", "gzip", "gzip", "gzip"),
            "page 1 cannot be read: it stacks 3 content encodings",
        ),
        (
            raw_bytes(b"\x1f\x8b\x08\x00garbage-not-gzip", Content_Encoding="gzip"),
            "page 1 cannot be read: its gzip bytes are corrupt",
        ),
    ],
    ids=[
        "content-length",
        "endless-chunked",
        "endless-unsized",
        "gzip-bomb",
        "double-gzip-bomb",
        "deflate-bomb",
        "huge-number",
        "unknown-encoding",
        "stacked-encodings",
        "corrupt-gzip",
    ],
)
def test_a_body_too_large_or_unreadable_is_refused(api, make_job, kept, reply, message):
    api.route("/big", reply)
    run = failed(make_job, api.url("/big"))
    assert run.error.startswith(f"{api.url('/big')}: {message}")


@pytest.mark.parametrize(
    "reply, message, error",
    [
        (
            declared(20, json.dumps([item(1)] * 50).encode()),
            "page 1 is not valid JSON (premature EOF)",
            DjsyncError,
        ),
        (
            declared(1_000, b'[{"sku": "H1"'),
            "the answer broke off: peer closed connection without sending complete message body",
            TransientSourceError,
        ),
    ],
    ids=["shorter-than-sent", "longer-than-sent"],
)
def test_a_lying_content_length(api, make_job, kept, reply, message, error):
    api.route("/lying", reply)
    run = failed(make_job, api.url("/lying"), error=error)
    assert message in run.error


@pytest.mark.parametrize(
    "routes, message",
    [
        ({"/r1": "/r2", "/r2": "/r1"}, "page 1: a redirect loop ({r1} → {r2} → {r1})"),
        ({"/r1": "/r1"}, "page 1: a redirect loop ({r1} → {r1})"),
        (
            {f"/r{n}": f"/r{n + 1}" for n in range(1, 10)},
            'page 1: more than DJSYNC["HTTP_MAX_REDIRECTS"] (3) redirects ({r1} → … → {r5})',
        ),
    ],
    ids=["loop", "self", "chain"],
)
def test_redirects_are_capped_and_loops_named(api, make_job, kept, routes, message):
    for path, location in routes.items():
        api.route(path, Reply(301, headers={"Location": location}))
    run = failed(make_job, api.url("/r1"))
    urls = {f"r{n}": api.url(f"/r{n}") for n in range(1, 6)}
    assert run.error == f"{api.url('/r1')}: {message.format(**urls)}"
    assert len(api.requests) <= 5


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"a":' * 100_000,
        json.dumps([{**item(1), "name": {"x": [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]}}]).encode(),
        json.dumps(
            {"results": [item(1)], "meta": {"a": [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]}}
        ).encode(),
    ],
    ids=["arrays", "objects", "inside-a-record", "beside-the-records"],
)
def test_nesting_deeper_than_json_max_depth(api, make_job, kept, body):
    api.route("/deep", Reply(body=body))
    run = failed(make_job, api.url("/deep"), records="results" if b"results" in body else None)
    assert run.error == (
        f'{api.url("/deep")}: page 1 nests deeper than DJSYNC["JSON_MAX_DEPTH"] (20 levels)'
    )


def test_the_same_page_again_stops(api, make_job, kept):
    api.route("/same", Reply(body={"results": [item(1), item(2)]}))
    run = failed(make_job, api.url("/same"), records="results", pagination={"style": "page"})
    assert run.error == (
        f"{api.url('/same')}: page 2 is the same as page 1 (identical content): the API "
        "ignores the pagination; stopped"
    )
    assert len(api.requests) == 2


def test_the_same_records_in_a_new_envelope_stop(api, make_job, kept):
    def handler(request: Request) -> Reply:
        return Reply(body={"page": request.query["offset"], "results": [item(1), item(2)]})

    api.route("/same", handler)
    run = failed(
        make_job, api.url("/same"), records="results", pagination={"style": "offset", "limit": 2}
    )
    assert "page 2 repeats the records of page 1: the API ignores the pagination" in run.error


def test_a_cursor_that_repeats_stops(api, make_job, kept):
    def handler(request: Request) -> Reply:
        n = len(api.requests)
        return Reply(body={"results": [item(n)], "next": "c1" if n > 1 else "c0"})

    api.route("/cursor", handler)
    run = failed(
        make_job,
        api.url("/cursor"),
        records="results",
        pagination={"style": "cursor", "path": "next"},
    )
    assert "page 3: the next cursor repeats: a pagination loop" in run.error


@pytest.mark.parametrize(
    "body, detail",
    [
        (b"<html><body>Gateway</body></html>", "(lexical error: invalid char in json text.)"),
        (b'[{"sku": "H1", "qty": 1' + b"0" * 30 + b"}]", "(integer overflow)"),
        (b'[{"sku": "H1", "qty": NaN}]', "(lexical error: invalid char in json text.)"),
        (b"", "(premature EOF)"),
    ],
    ids=["html", "integer-overflow", "nan", "empty"],
)
def test_a_page_that_is_not_json(api, make_job, kept, body, detail):
    api.route("/bad", Reply(body=body, headers={"Content-Type": "text/html"}))
    run = failed(make_job, api.url("/bad"))
    expected = f"{api.url('/bad')}: page 1 is not valid JSON {detail} (text/html)"
    assert run.error.startswith(expected)


# == peak memory, in a capped child process =================================================

CHILD = """
import time
from django.test import override_settings
from djsync.sources import HttpSource
from tests import httpserver as hs
with hs.ApiServer() as api:
    api.route("/x", {reply})
    with override_settings(DJSYNC={{"HTTP_BASE_URLS": [api.url("/")], {limits}}}):
        started = time.monotonic()
        try:
            for record in HttpSource(api.url("/x"), retries=0, {options}).read():
                pass
        finally:
            print(time.monotonic() - started, flush=True)
"""


@pytest.mark.parametrize(
    "reply, limits, options, message",
    [
        (
            "hs.endless(b' ' * 4096)",
            "",
            "",
            'DJSYNC["HTTP_MAX_BODY"] (52,428,800 bytes): as sent',
        ),
        (
            "hs.endless()",
            '"HTTP_MAX_BODY": 5_000_000',
            "",
            'DJSYNC["HTTP_MAX_BODY"] (5,000,000 bytes): as sent',
        ),
        (
            "hs.raw_bytes(hs.spaces_gzip(2 << 30), Content_Encoding='gzip')",
            "",
            "",
            "(52,428,800 bytes): once decompressed (gzip)",
        ),
        (
            "hs.Reply(body=b'[' * 5_000_000)",
            "",
            "",
            'nests deeper than DJSYNC["JSON_MAX_DEPTH"] (64 levels)',
        ),
        (
            "hs.endless(b'x' * 4096, first=b'[\"')",  # one string that never ends
            "",
            "",
            'DJSYNC["HTTP_MAX_BODY"] (52,428,800 bytes): as sent',
        ),
        (
            "hs.Reply(body=b'[\"' + b'x' * 40_000_000 + b'\"]')",
            '"HTTP_MAX_BODY": 30_000_000',
            "",
            "its Content-Length is 40,000,004",
        ),
        (
            "hs.drip(0.5)",
            '"HTTP_RESPONSE_DEADLINE": 2, "HTTP_TIMEOUT": 30',
            "",
            'no complete answer within DJSYNC["HTTP_RESPONSE_DEADLINE"] (2 s)',
        ),
    ],
    ids=[
        "endless-spaces",
        "endless-records",
        "gzip-bomb-2gb",
        "deep-5m",
        "endless-string",
        "huge-string",
        "drip",
    ],
)
def test_expensive_inputs_stay_bounded(reply, limits, options, message):
    out = run_isolated(CHILD.format(reply=reply, limits=limits, options=options), timeout=60)
    assert out.returncode != 0, out.stderr[-2000:]
    assert message in out.last_line, out.stderr[-2000:]
    assert out.last_line.startswith("djsync.exceptions.")
    # The read itself, then the whole child (Python and Django starting included).
    assert float(out.stdout.split()[-1]) < 10 and out.seconds < 20, (out.stdout, out.seconds)
    assert out.peak_mb < 300, out.peak_mb


@pytest.mark.parametrize(
    "options, message",
    [
        ({"headers": {"Host": "evil.example"}}, "header 'Host' is set by djsync, not by a source"),
        ({"headers": {"Transfer-Encoding": "chunked"}}, "header 'Transfer-Encoding' is set by"),
        ({"headers": {"Accept-Encoding": "br"}}, "header 'Accept-Encoding' is set by djsync"),
        ({"headers": {"Proxy-Authorization": "x"}}, "header 'Proxy-Authorization' is set by"),
        (
            {"headers": {"X-Note": "a\r\nHost: evil.example"}},
            "header 'X-Note' must be a one-line text",
        ),
        ({"headers": {"X-Note": ["a"]}}, "header 'X-Note' must be a one-line text"),
        ({"pagination": {"style": "page", "start": "0; DROP"}}, "pagination start must be a"),
        ({"pagination": {"style": "offset", "limit": -5}}, "pagination limit must be a whole"),
        ({"records": "data.-1"}, "its steps are keys, or list positions from 0"),
        ({"method": "DELETE"}, "method must be GET or POST"),
    ],
)
def test_job_options_that_would_reroute_or_smuggle_a_request(api, make_job, kept, options, message):
    run = failed(make_job, api.url("/items"), error=ConfigurationError, **options)
    assert message in run.error
    assert api.requests == []

"""HTTP JSON source against a real server on 127.0.0.1: pagination, auth, retries, bad answers."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest

import djsync
from djsync.exceptions import ConfigurationError, SourceError, TransientSourceError
from djsync.runs.progress import Extent
from djsync.sources import HttpSource, get_source
from tests.httpserver import ApiServer, Reply, Request, allow, serve
from tests.testapp.models import Product


def product(n: int, **extra: object) -> dict:
    return {
        "sku": f"P{n:03d}",
        "name": f"Product {n}",
        "price": f"{n}.50",
        "qty": n,
        "updated": "2026-01-0" + str(1 + n % 9),
        "active": True,
        **extra,
    }


CATALOGUE = [product(n) for n in range(1, 8)]  # 7 products


@pytest.fixture
def api(settings):
    """The test server, its whole URL space allowed (DJSYNC["HTTP_BASE_URLS"])."""
    for server in serve():
        allow(settings, server.url("/"))
        yield server


def fast(**options: object) -> dict:
    """Options that keep retries instant in tests."""
    return {"backoff": 0, **options}


# -- a whole job, no pagination ---------------------------------------------------------------


def test_job_with_http_source_creates_then_is_unchanged(api, make_job):
    api.route("/products", Reply(body=CATALOGUE[:3]))
    job = make_job("test_products", source={"kind": "http", "url": api.url("/products")})
    run = djsync.run(job)
    assert run.status == "succeeded", run.error
    assert run.counts["created"] == 3
    assert run.source_name == api.url("/products")
    assert Product.objects.get(sku="P002").price == Decimal("2.50")
    again = djsync.run(job)
    assert again.counts["unchanged"] == 3 and again.counts["created"] == 0


def test_records_path_inside_the_response(api):
    api.route("/wrapped", Reply(body={"meta": {"n": 2}, "data": {"items": CATALOGUE[:2]}}))
    source = HttpSource(api.url("/wrapped"), records="data.items")
    assert [r["sku"] for r in source.read()] == ["P001", "P002"]
    assert "sku" in source.columns


def test_a_missing_records_path_names_it(api):
    api.route("/wrapped", Reply(body={"data": {}}))
    source = HttpSource(api.url("/wrapped"), records="data.items")
    with pytest.raises(SourceError, match="has no 'data.items'"):
        list(source.read())


# -- pagination -------------------------------------------------------------------------------


def paged(request: Request) -> Reply:
    page, size = int(request.query["page"]), int(request.query.get("per_page", 3))
    chunk = CATALOGUE[(page - 1) * size : page * size]
    return Reply(body={"results": chunk, "page": page})


def test_page_number_pagination_streams_one_page_at_a_time(api):
    api.route("/paged", paged)
    source = HttpSource(
        api.url("/paged"),
        records="results",
        pagination={"style": "page", "size_param": "per_page", "size": 3},
    )
    records = source.read()
    first = next(records)
    assert first["sku"] == "P001"
    assert len(api.hits("/paged")) == 1  # the second page is not fetched yet
    rest = list(records)
    assert [r["sku"] for r in [first, *rest]] == [p["sku"] for p in CATALOGUE]
    # 7 records by 3: pages 1, 2 and 3; page 3 is short, so no 4th request.
    assert [r.query["page"] for r in api.hits("/paged")] == ["1", "2", "3"]


def test_page_number_without_size_stops_at_an_empty_page(api):
    api.route("/paged", paged)
    source = HttpSource(api.url("/paged"), records="results", pagination={"style": "page"})
    assert len(list(source.read())) == 7
    assert [r.query["page"] for r in api.hits("/paged")] == ["1", "2", "3", "4"]


def test_a_declared_total_gives_the_read_its_extent(api):
    """DRF's ``count`` (records) or a page count: the run's progress has a total."""

    def counted(request: Request) -> Reply:
        reply = paged(request)
        return Reply(body={"count": len(CATALOGUE), "pages": 3, **reply.body})

    api.route("/counted", counted)
    options = {"style": "page", "size_param": "per_page", "size": 3}
    source = HttpSource(api.url("/counted"), records="results", pagination=options)
    seen = [source.extent() for _ in source.read()]
    assert seen[0] is None and seen[-1] == Extent(done=2, total=None, unit="pages")
    by_records = HttpSource(
        api.url("/counted"), records="results", pagination={**options, "total": "count"}
    )
    seen = [by_records.extent() for _ in by_records.read()]
    assert seen[3] == Extent(done=4, total=7, unit="records")  # known once page 1 is in
    assert by_records.extent() == Extent(done=7, total=7, unit="records")
    by_pages = HttpSource(
        api.url("/counted"), records="results", pagination={**options, "total_pages": "pages"}
    )
    list(by_pages.read())
    assert by_pages.extent() == Extent(done=3, total=3, unit="pages")
    with pytest.raises(ConfigurationError, match="pagination total is the dotted path"):
        HttpSource(api.url("/counted"), pagination={**options, "total": 7})


def test_offset_limit_pagination(api):
    def handler(request: Request) -> Reply:
        offset, limit = int(request.query["offset"]), int(request.query["limit"])
        return Reply(body={"items": CATALOGUE[offset : offset + limit]})

    api.route("/offset", handler)
    source = HttpSource(
        api.url("/offset"), pagination={"style": "offset", "limit": 4}, params={"q": "x"}
    )
    assert [r["sku"] for r in source.read()] == [p["sku"] for p in CATALOGUE]
    assert [(r.query["offset"], r.query["q"]) for r in api.hits("/offset")] == [
        ("0", "x"),
        ("4", "x"),
    ]


def test_cursor_pagination(api):
    def handler(request: Request) -> Reply:
        start = int(request.query.get("cursor", 0))
        nxt = start + 3 if start + 3 < len(CATALOGUE) else None
        return Reply(body={"data": CATALOGUE[start : start + 3], "meta": {"next": nxt}})

    api.route("/cursor", handler)
    source = HttpSource(
        api.url("/cursor"),
        records="data",
        pagination={"style": "cursor", "param": "cursor", "path": "meta.next"},
    )
    assert len(list(source.read())) == 7
    assert [r.query.get("cursor") for r in api.hits("/cursor")] == [None, "3", "6"]


def test_next_link_in_the_body_relative_or_absolute(api):
    api.route("/a", Reply(body={"results": CATALOGUE[:2], "next": "/b?token=1"}))
    api.route("/b", Reply(body={"results": CATALOGUE[2:4], "next": api.url("/c")}))
    api.route("/c", Reply(body={"results": CATALOGUE[4:], "next": None}))
    source = HttpSource(api.url("/a"), records="results", pagination={"style": "next"})
    source.pagination["path"] = "next"
    assert len(list(source.read())) == 7
    assert api.hits("/b")[0].query == {"token": "1"}


def test_next_link_in_the_link_header(api):
    api.route("/h1", Reply(body=CATALOGUE[:4], headers={"Link": '</h2>; rel="next"'}))
    api.route("/h2", Reply(body=CATALOGUE[4:]))
    source = HttpSource(api.url("/h1"), pagination={"style": "next"})
    assert len(list(source.read())) == 7


def test_a_next_link_loop_is_an_error(api):
    api.route("/loop", Reply(body={"results": [], "next": "/loop2"}))
    api.route("/loop2", Reply(body={"results": [], "next": "/loop2"}))
    source = HttpSource(api.url("/loop"), pagination={"style": "next", "path": "next"})
    with pytest.raises(SourceError, match="repeats"):
        list(source.read())


# -- auth -------------------------------------------------------------------------------------


def guarded(expected_header: str, expected_value: str):
    def handler(request: Request) -> Reply:
        if request.headers.get(expected_header.lower()) != expected_value:
            return Reply(401, {"detail": "bad credentials"})
        return Reply(body=CATALOGUE[:1])

    return handler


def credentials(settings, **values: object) -> None:
    settings.DJSYNC = {**settings.DJSYNC, "CREDENTIALS": values}


def test_bearer_token_from_credentials(api, settings, make_job):
    api.route("/secure", guarded("Authorization", "Bearer s3cret"))
    credentials(settings, PARTNER_TOKEN="s3cret")
    job = make_job(
        "test_products",
        source={
            "kind": "http",
            "url": api.url("/secure"),
            "auth": {"type": "bearer", "token": "PARTNER_TOKEN"},
        },
    )
    run = djsync.run(job)
    assert run.status == "succeeded", run.error
    assert "s3cret" not in str(job.source)


def test_the_environment_is_never_read_for_a_credential(api, monkeypatch, settings, make_job):
    # Issue 9: a job could send any environment variable (DJANGO_SECRET_KEY) to a host.
    api.route("/secure", guarded("X-Api-Key", "from-env"))
    monkeypatch.setenv("DJANGO_SECRET_KEY", "from-env")
    credentials(settings, PARTNER_KEY="from-settings")
    job = make_job(
        "test_products",
        source={
            "kind": "http",
            "url": api.url("/secure"),
            "headers": {"X-Api-Key": {"credential": "DJANGO_SECRET_KEY"}},
        },
    )
    with pytest.raises(ConfigurationError) as info:
        djsync.run(job)
    assert str(info.value).endswith(
        "credential 'DJANGO_SECRET_KEY' is not in DJSYNC[\"CREDENTIALS\"]; a job may only "
        "name the credentials the site's settings declare"
    )
    assert api.requests == []
    assert not Product.objects.exists()
    source = HttpSource(api.url("/secure"), headers={"X-Api-Key": {"credential": "PARTNER_KEY"}})
    with pytest.raises(SourceError, match="HTTP 401"):
        list(source.read())  # sent: the value from settings, not the environment's
    assert api.requests[-1].headers["x-api-key"] == "from-settings"


def test_basic_and_query_auth(api, settings):
    import base64

    credentials(settings, API_USER="ann", API_PASSWORD="pw")
    token = base64.b64encode(b"ann:pw").decode()
    api.route("/basic", guarded("Authorization", f"Basic {token}"))
    source = HttpSource(
        api.url("/basic"),
        auth={"type": "basic", "username": "API_USER", "password": "API_PASSWORD"},
    )
    assert len(list(source.read())) == 1

    api.route("/query", lambda r: Reply(body=CATALOGUE[:2] if r.query.get("key") == "pw" else []))
    source = HttpSource(
        api.url("/query"), auth={"type": "query", "param": "key", "token": "API_PASSWORD"}
    )
    assert len(list(source.read())) == 2


def test_a_query_credential_goes_with_every_page(api, settings):
    credentials(settings, API_KEY="k-123456789")
    api.route("/q1", Reply(body={"results": CATALOGUE[:2], "next": "/q2"}))
    api.route("/q2", Reply(body={"results": CATALOGUE[2:4], "next": None}))
    source = HttpSource(
        api.url("/q1"),
        auth={"type": "query", "param": "key", "token": "API_KEY"},
        records="results",
        pagination={"style": "next", "path": "next"},
    )
    assert len(list(source.read())) == 4
    assert [r.query for r in api.requests] == [{"key": "k-123456789"}] * 2


def test_a_missing_credential_is_a_configuration_error_before_any_request(api, settings):
    credentials(settings, OTHER="x")
    with pytest.raises(ConfigurationError, match="credential 'NOPE_TOKEN' is not in DJSYNC"):
        HttpSource(api.url("/x"), auth={"type": "bearer", "token": "NOPE_TOKEN"})
    credentials(settings, NOPE_TOKEN=None)  # e.g. os.environ.get() of an unset variable
    with pytest.raises(ConfigurationError, match="'NOPE_TOKEN' is declared in .* but empty"):
        HttpSource(api.url("/x"), auth={"type": "bearer", "token": "NOPE_TOKEN"})
    assert api.requests == []


def test_a_secret_written_into_a_header_is_refused(settings):
    allow(settings, "http://127.0.0.1:1/")
    with pytest.raises(ConfigurationError, match="holds a secret"):
        get_source(
            {"kind": "http", "url": "http://127.0.0.1:1/", "headers": {"Authorization": "x"}}
        )


def test_wrong_credentials_fail_without_retrying(api, settings):
    api.route("/secure", guarded("Authorization", "Bearer right"))
    credentials(settings, T="wrong")
    source = HttpSource(api.url("/secure"), auth={"type": "bearer", "token": "T"}, **fast())
    with pytest.raises(SourceError, match="HTTP 401 Unauthorized") as info:
        list(source.read())
    assert not isinstance(info.value, TransientSourceError)
    assert len(api.requests) == 1


# -- failures ---------------------------------------------------------------------------------


def test_429_and_503_are_retried_then_succeed(api):
    api.route(
        "/flaky",
        [
            Reply(429, {"detail": "slow down"}, headers={"Retry-After": "0"}),
            Reply(503, "maintenance"),
            Reply(body=CATALOGUE[:2]),
        ],
    )
    source = HttpSource(api.url("/flaky"), retries=3, **fast())
    assert len(list(source.read())) == 2
    assert len(api.hits("/flaky")) == 3


def test_a_server_error_that_persists_is_a_transient_error_and_nothing_is_written(api, make_job):
    api.route("/down", Reply(500, {"detail": "boom"}))
    job = make_job(
        "test_products",
        source={"kind": "http", "url": api.url("/down"), "retries": 2, "backoff": 0},
    )
    with pytest.raises(TransientSourceError, match="HTTP 500.*gave up after 3 attempts") as info:
        djsync.run(job)
    assert info.value.run.status == "failed"
    assert "HTTP 500" in info.value.run.error
    assert len(api.hits("/down")) == 3
    assert not Product.objects.exists()


def test_a_404_is_not_retried(api):
    source = HttpSource(api.url("/missing"), retries=3, **fast())
    with pytest.raises(SourceError, match="HTTP 404 Not Found from http://127.0.0.1:\\d+/missing"):
        list(source.read())
    assert len(api.requests) == 1


def test_a_timeout_is_retried_then_reported(api):
    api.route("/slow", Reply(body=CATALOGUE[:1], delay=1.0))
    source = HttpSource(api.url("/slow"), timeout=0.1, retries=1, **fast())
    with pytest.raises(TransientSourceError, match="timeout.*gave up after 2 attempts"):
        list(source.read())


def test_connection_refused_is_transient(settings):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    allow(settings, f"http://127.0.0.1:{port}/")
    source = HttpSource(f"http://127.0.0.1:{port}/", retries=0)
    with pytest.raises(TransientSourceError, match="cannot connect"):
        list(source.read())


def test_malformed_json_names_the_page_and_place(api):
    api.route("/bad", Reply(body=b'[{"sku": "A1",}]'))
    source = HttpSource(api.url("/bad"))
    # The page is parsed as it streams in (ijson): the parser's reason and the start of it.
    message = "page 1 is not valid JSON (invalid object key (must be a string)) "
    with pytest.raises(SourceError, match=re.escape(message + '(application/json): [{"sku"')):
        list(source.read())


def test_malformed_json_on_a_later_page_writes_nothing(api, make_job):
    api.route("/p1", Reply(body={"results": CATALOGUE[:3], "next": "/p2"}))
    api.route("/p2", Reply(body=b"<html>Bad gateway</html>", headers={"Content-Type": "text/html"}))
    job = make_job(
        "test_products",
        source={
            "kind": "http",
            "url": api.url("/p1"),
            "records": "results",
            "pagination": {"style": "next", "path": "next"},
        },
    )
    with pytest.raises(SourceError, match="page 2 is not valid JSON.*text/html"):
        djsync.run(job)
    assert not Product.objects.exists()


def test_records_that_are_not_objects(api):
    api.route("/odd", Reply(body=[1, 2]))
    with pytest.raises(SourceError, match="record 1: expected an object, got int"):
        list(HttpSource(api.url("/odd")).read())


def test_bad_options_are_configuration_errors(settings):
    allow(settings, "http://x/")
    with pytest.raises(ConfigurationError, match="http\\(s\\) URL"):
        get_source({"kind": "http", "url": "ftp://x"})
    with pytest.raises(ConfigurationError, match="pagination style"):
        get_source({"kind": "http", "url": "http://x/", "pagination": {"style": "pages"}})
    with pytest.raises(ConfigurationError, match="'bogus'"):
        get_source({"kind": "http", "url": "http://x/", "bogus": 1})
    for option, value in [("retries", "many"), ("timeout", -1), ("max_pages", float("inf"))]:
        with pytest.raises(ConfigurationError, match=f"{option} must be a number ≥ 0"):
            get_source({"kind": "http", "url": "http://x/", option: value})


def test_post_with_a_json_body(api):
    api.route(
        "/search",
        lambda r: Reply(body=CATALOGUE[:1] if r.method == "POST" and b"lamps" in r.body else []),
    )
    source = HttpSource(api.url("/search"), method="POST", json={"q": "lamps"})
    assert len(list(source.read())) == 1


def test_max_pages_stops_a_runaway_pagination(api):
    api.route("/forever", lambda r: Reply(body=[product(int(r.query["page"]))]))
    source = HttpSource(api.url("/forever"), pagination={"style": "page"}, max_pages=5)
    with pytest.raises(SourceError, match="stopped after 5 pages"):
        list(source.read())


def test_server_helper_is_a_real_server(api: ApiServer):
    import httpx

    api.route("/ping", Reply(body={"ok": True}))
    assert httpx.get(api.url("/ping")).json() == {"ok": True}


# -- streaming and redirects within the base URLs ---------------------------------------------


def test_a_large_page_streams_in_pieces_with_every_column(api):
    # ~1 MB: many chunks; a column only the last record has is still seen.
    rows = [product(n % 900 + 1, sku=f"S{n:05d}") for n in range(6000)]
    rows[-1]["extra"] = "late"
    api.route("/big", Reply(body={"data": {"items": rows}, "total": len(rows)}))
    source = HttpSource(api.url("/big"), records="data.items")
    records = list(source.read())
    assert [r["sku"] for r in records] == [r["sku"] for r in rows]
    assert records[-1]["extra"] == "late" and "extra" in source.columns
    assert records[0]["price"] == "1.50" and records[0]["active"] is True


def test_gzip_and_deflate_pages_are_read(api):
    import gzip
    import zlib

    from tests.httpserver import raw_bytes

    body = json.dumps(CATALOGUE).encode()
    api.route("/gz", raw_bytes(gzip.compress(body), Content_Encoding="gzip"))
    api.route("/zz", raw_bytes(zlib.compress(body), Content_Encoding="deflate"))
    api.route("/raw", raw_bytes(zlib.compress(body)[2:-4], Content_Encoding="deflate"))
    for path in ("/gz", "/zz", "/raw"):
        assert [r["sku"] for r in HttpSource(api.url(path)).read()] == [p["sku"] for p in CATALOGUE]
    assert api.requests[0].headers["accept-encoding"] == "gzip, deflate"


def test_a_redirect_within_the_base_urls_is_followed(api):
    api.route("/old", Reply(301, headers={"Location": "/new?v=2"}))
    api.route("/new", Reply(body={"results": CATALOGUE[:2], "next": "/new2"}))
    api.route("/new2", Reply(body={"results": CATALOGUE[2:3]}))
    api.route("/search", Reply(303, headers={"Location": "/new2"}))
    source = HttpSource(
        api.url("/old"), records="results", pagination={"style": "next", "path": "next"}
    )
    assert len(list(source.read())) == 3
    assert [r.path for r in api.requests] == ["/old", "/new", "/new2"]
    # A 303 after a POST is followed with a GET, without the body.
    source = HttpSource(api.url("/search"), method="POST", json={"q": "x"}, records="results")
    assert len(list(source.read())) == 1
    assert [(r.method, r.body) for r in api.requests[-2:]] == [
        ("POST", b'{"q":"x"}'),
        ("GET", b""),
    ]


def test_a_cursor_read_from_the_last_record(api):
    def handler(request: Request) -> Reply:
        after = int(request.query.get("after", 0))
        return Reply(body={"results": [p for p in CATALOGUE if p["qty"] > after][:3]})

    api.route("/keyset", handler)
    source = HttpSource(
        api.url("/keyset"),
        records="results",
        pagination={"style": "cursor", "param": "after", "path": "results.-1.qty"},
    )
    assert [r["qty"] for r in source.read()] == [1, 2, 3, 4, 5, 6, 7]


def test_a_byte_order_mark_and_a_null_page(api):
    api.route("/bom", Reply(body=b"\xef\xbb\xbf" + json.dumps(CATALOGUE[:2]).encode()))
    api.route("/null", Reply(body={"data": None}))
    assert len(list(HttpSource(api.url("/bom")).read())) == 2
    source = HttpSource(api.url("/null"), records="data")
    assert list(source.read()) == [] and source.columns == []

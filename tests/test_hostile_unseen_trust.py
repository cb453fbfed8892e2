"""Hostile inputs of the trust classes that the other hostile tests do not show: job
definitions with wrong types and tricky paths, HTTP options and replies, admin requests
with crafted lookups and actions. Each case asserts the one-line message (or the refusal)
and that nothing was written, on PostgreSQL and SQLite."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

import djsync
from djsync.exceptions import DjsyncError
from djsync.models import SyncJob, SyncRun
from djsync.sources import policy
from tests import test_hostile_admin as admin_tests
from tests.httpserver import Raw, Reply, allow, serve
from tests.testapp.models import Product

pytestmark = pytest.mark.django_db(databases=["default", "other"])

# The admin tests' fixtures and helpers: users with some permissions, a job, a previewed run.
client_for = admin_tests.client_for
make_user = admin_tests.make_user
job = admin_tests.job
lamp = admin_tests.lamp
JOBS, PREVIEW = admin_tests.JOBS, admin_tests.PREVIEW
job_post, previewed_run = admin_tests.job_post, admin_tests.previewed_run
run_url, snapshot = admin_tests.run_url, admin_tests.snapshot

ROOTS = 'DJSYNC["FILE_ROOTS"]'
OK = "sku,name,price,qty,updated,active\nA1,Saw,5,1,,true\n"
SECRET = "sku,name,price,qty,updated,active\nSECRET,top secret,1,1,,true\n"


@pytest.fixture
def root(file_root: Path) -> Path:
    (file_root / "ok.csv").write_text(OK)
    return file_root


@pytest.fixture
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("outside")
    (folder / "secret.csv").write_text(SECRET)
    return folder


def refused(make_job: Any, source: Any, importer: str = "test_products") -> str:
    """Run the job: one-line djsync error, the run failed, nothing written."""
    Product.objects.get_or_create(sku="KEEP", defaults={"name": "kept", "price": 1, "qty": 1})
    before = list(Product.objects.order_by("sku").values_list("sku", "name", "price"))
    job = make_job(importer, name="hostile", source=source)
    with pytest.raises(DjsyncError) as info:
        djsync.run(job)
    message = str(info.value)
    run = info.value.run
    run.refresh_from_db()
    assert run.status == "failed" and "\n" not in run.error and "Traceback" not in run.error
    assert "SECRET" not in message and "top secret" not in message and "\x00" not in message
    assert list(Product.objects.order_by("sku").values_list("sku", "name", "price")) == before
    return message


# == job definitions: wrong types and tricky paths ==========================================

SQL = {"kind": "sql", "query": "legacy_items"}
CHUNK = "chunk_size must be a whole number from 1 to 100000, not "

JOB_CASES = [
    ("path-list", {"path": ["ok.csv"]}, "source path must be a file name, not ['ok.csv']"),
    ("path-object", {"path": {"a": 1}}, "source path must be a file name, not {'a': 1}"),
    ("path-number", {"path": 5}, "source path must be a file name, not 5"),
    ("path-true", {"path": True}, "source path must be a file name, not True"),
    ("path-blank", {"path": "   "}, "source path must be a file name, not '   '"),
    (
        "root-list",
        {"root": ["tests"], "path": "ok.csv"},
        "no file root ['tests'] in " + ROOTS + " (roots: 'tests')",
    ),
    (
        "root-object",
        {"root": {}, "path": "ok.csv"},
        "no file root {} in " + ROOTS + " (roots: 'tests')",
    ),
    (
        "windows-drive",
        {"path": "C:\\secret.csv"},
        "source path 'C:\\\\secret.csv' is absolute; give a path relative to the root 'tests' ("
        + ROOTS
        + ")",
    ),
    (
        "windows-drive-relative",
        {"path": "c:secret.csv"},
        "source path 'c:secret.csv' is absolute; give a path relative to the root 'tests' ("
        + ROOTS
        + ")",
    ),
    (
        "encoding-not-text",
        {"path": "ok.csv", "encoding": "rot13"},
        "encoding 'rot13' is not a text encoding (e.g. utf-8, latin-1, cp1252)",
    ),
    (
        "encoding-compression",
        {"path": "ok.csv", "encoding": "zlib_codec"},
        "encoding 'zlib_codec' is not a text encoding (e.g. utf-8, latin-1, cp1252)",
    ),
    (
        "encoding-unknown",
        {"path": "ok.csv", "encoding": "klingon"},
        "encoding 'klingon' is not a text encoding (e.g. utf-8, latin-1, cp1252)",
    ),
    (
        "delimiter-long",
        {"path": "ok.csv", "delimiter": ";;;"},
        "delimiter must be one character or \"auto\", not ';;;'",
    ),
    (
        "encoding-list",
        {"path": "ok.csv", "encoding": ["utf-8"]},
        "encoding must be a short text, not ['utf-8']",
    ),
    ("sheet-float", {"path": "ok.csv", "sheet": 1.5}, "sheet must be a short text, not 1.5"),
    (
        "null-tokens-object",
        {"path": "ok.csv", "null_tokens": {"a": 1}},
        'null_tokens is a list of at most 20 texts, e.g. ["NA", "\\\\N"], not {\'a\': 1}',
    ),
    (
        "sql-params-object",
        {**SQL, "params": {"a": 1}},
        "params must be a list of plain values (text, numbers, null)",
    ),
    (
        "sql-params-nested",
        {**SQL, "params": [[1, 2]]},
        "params must be a list of plain values (text, numbers, null)",
    ),
    ("sql-chunk-negative", {**SQL, "chunk_size": -1}, CHUNK + "-1"),
    ("sql-chunk-text", {**SQL, "chunk_size": "10"}, CHUNK + "'10'"),
    ("sql-chunk-float", {**SQL, "chunk_size": 10.0}, CHUNK + "10.0"),
    ("sql-chunk-bool", {**SQL, "chunk_size": True}, CHUNK + "True"),
    ("sql-chunk-huge", {**SQL, "chunk_size": 10**30}, CHUNK + str(10**30)),
    (
        "sql-query-object",
        {"kind": "sql", "query": {"query": "SELECT 1"}},
        "no SQL query {'query': 'SELECT 1'} in DJSYNC[\"SQL_QUERIES\"] (declared: 'feed', "
        "'legacy_items', 'legacy_items_short')",
    ),
    (
        "incremental-list",
        {**SQL, "incremental": ["updated"]},
        'incremental is an object, e.g. {"column": "updated_at"}',
    ),
    (
        "incremental-true",
        {**SQL, "incremental": True},
        'incremental is an object, e.g. {"column": "updated_at"}',
    ),
    (
        "incremental-dunder-key",
        {**SQL, "incremental": {"column": "updated", "__class__": 1}},
        "incremental cannot set '__class__' (it may set: column, deleted)",
    ),
    (
        "incremental-number",
        {**SQL, "incremental": {"column": 5}},
        "incremental column must be a short text, not 5",
    ),
    (
        "derived-from-number",
        {"kind": "derived", "columns": ["sku"], "from": 5},
        'source options are a JSON object, e.g. {"path": "x.csv"}',
    ),
    (
        "derived-from-list",
        {"kind": "derived", "columns": ["sku"], "from": [{"path": "ok.csv"}]},
        'source options are a JSON object, e.g. {"path": "x.csv"}',
    ),
    (
        "sources-in-a-one-model-job",
        {"sources": {"auth_user": {"path": "ok.csv"}}},
        "a job's file source cannot set 'sources' (it may set: delimiter, encoding, format, "
        "kind, path, root, sheet)",
    ),
]


@pytest.mark.parametrize(
    "source,expected", [c[1:] for c in JOB_CASES], ids=[c[0] for c in JOB_CASES]
)
def test_a_job_source_with_wrong_types_is_refused(make_job, root, source, expected):
    assert refused(make_job, source) == "job 'hostile': " + expected


def test_a_path_too_long_for_the_system_says_so(make_job, root):
    path = "a/" * 300_000 + "ok.csv"
    message = refused(make_job, {"path": path})
    assert message.endswith(": File name too long") and len(message) < 400


@pytest.mark.parametrize(
    "trick",
    [
        "\uff0e\uff0e/{out}/secret.csv",  # fullwidth dots are a name, not ..
        "%2e%2e/{out}/secret.csv",  # no percent-decoding of file names
        "..\u2215{out}\u2215secret.csv",  # division slash is not a separator
        "./ok.csv /../../{out}/secret.csv",
    ],
)
def test_unicode_and_encoded_dots_stay_names_inside_the_root(make_job, root, outside, trick):
    out = os.path.relpath(outside, root).replace("../", "", 1)
    message = refused(make_job, {"path": trick.format(out=out), "format": "csv"})
    assert message.endswith("file not found") or "leaves its root" in message


def test_a_path_with_a_trailing_space_is_another_name(make_job, root):
    message = refused(make_job, {"path": "ok.csv ", "format": "csv"})
    assert message == "ok.csv : file not found"


def test_a_file_swapped_for_a_symlink_after_the_check_is_not_followed(
    make_job, root, outside, monkeypatch
):
    """TOCTOU: the path is checked, then the file becomes a symlink out before the open."""
    checked = policy.resolve_path

    def check_then_swap(*args: Any, **kwargs: Any) -> str:
        real = checked(*args, **kwargs)
        os.remove(real)
        os.symlink(outside / "secret.csv", real)
        return real

    monkeypatch.setattr(policy, "resolve_path", check_then_swap)
    message = refused(make_job, {"path": "ok.csv"})
    assert message == "ok.csv: became a symlink after its path was checked; not followed"


def test_a_hard_link_to_a_file_outside_is_read_documented(make_job, root, outside):
    """A hard link is the file itself: no path check can tell it from a copy. Whoever can
    create files in a root can put data there (docs/security.md, file roots)."""
    try:
        os.link(outside / "secret.csv", root / "linked.csv")
    except OSError:
        pytest.skip("no hard links across these folders")
    run = djsync.run(make_job("test_products", name="linked", source={"path": "linked.csv"}))
    assert run.status == "succeeded"  # the documented limit, not a leak out of the root


# == export paths: format placeholders ==========================================================


@pytest.mark.parametrize(
    "path",
    [
        "{job.__class__}.csv",
        "{0.__globals__}.csv",
        "{job.__init__.__globals__[settings]}.csv",
        "{date:%Y}{date.__class__}.csv",
        "{job!r:>99999999}.csv",
        "{job:>999999999}.csv",
        "{date:" + "%Y" * 30 + "}.csv",
        "{}.csv",
        "{datetime[0]}.csv",
        "{:{}}.csv",
    ],
)
def test_an_export_path_cannot_reach_attributes(make_job, root, path):
    Product.objects.create(sku="E1", name="Saw", price=1)
    job = make_job("test_products", name="export", target={"kind": "file", "path": path})
    started = time.monotonic()
    with pytest.raises(DjsyncError) as info:
        djsync.run(job)
    assert str(info.value).startswith(f"export path {path!r}: bad placeholder (")
    assert str(info.value).endswith("use {date}, {date:%Y-%m-%d}, {datetime:%Y%m%d-%H%M} or {job}")
    assert info.value.run.status == "failed"
    assert time.monotonic() - started < 10
    assert sorted(p.name for p in root.iterdir()) == ["ok.csv"]


def test_an_export_path_keeps_its_placeholders(make_job, root):
    Product.objects.create(sku="E1", name="Saw", price=1)
    job = make_job(
        "test_products", name="daily", target={"kind": "file", "path": "{job}-{date:%Y}.csv"}
    )
    assert djsync.run(job).status == "succeeded"
    assert [p.name for p in root.glob("daily-*.csv")] == [f"daily-{time.strftime('%Y')}.csv"]


# == HTTP: job options and replies =============================================================

LIMITS = {
    "HTTP_RESPONSE_DEADLINE": 1,
    "HTTP_DEADLINE": 4,
    "HTTP_MAX_BODY": 1_000_000,
    "HTTP_MAX_REDIRECTS": 3,
    "JSON_MAX_DEPTH": 20,
}
ITEM = {"sku": "H1", "name": "x", "price": "1.00", "qty": 1, "updated": "2026-01-01"}


@pytest.fixture
def api(settings):
    for server in serve():
        allow(settings, server.url("/"), **LIMITS)
        yield server


def http_refused(make_job: Any, url: str, **options: Any) -> tuple[str, float]:
    started = time.monotonic()
    source = {"kind": "http", "url": url, "retries": 1, "backoff": 0, **options}
    message = refused(make_job, source)
    return message, time.monotonic() - started


def _endless(head: bytes, piece: bytes) -> Raw:
    def write(out: Any) -> None:
        out.write(head)
        try:
            for _ in range(200_000):
                out.write(piece)
        except OSError:
            pass

    return Raw(write)


REPLIES = [
    pytest.param(
        lambda api: Reply(302, b"", {"Location": "file:///etc/passwd"}),
        "redirects: /etc/passwd is not an http(s) URL",
        id="redirect-to-file",
    ),
    pytest.param(
        lambda api: Reply(302, b"", {"Location": "ftp://127.0.0.1/x"}),
        "redirects: ftp://127.0.0.1/x is not an http(s) URL",
        id="redirect-to-ftp",
    ),
    pytest.param(
        lambda api: Reply(302, b"", {"Location": api.url("/i").replace("127.0.0.1", "localhost")}),
        'is not under DJSYNC["HTTP_BASE_URLS"]',
        id="redirect-localhost-alias",
    ),
    pytest.param(
        lambda api: Reply(302, b"", {"Location": api.url("/i").replace("127.0.0.1", "2130706433")}),
        'is not under DJSYNC["HTTP_BASE_URLS"]',
        id="redirect-decimal-ip",
    ),
    pytest.param(
        lambda api: Reply(302, b"", {"Location": api.url("/i").replace("127.0.0.1", "[::1]")}),
        'is not under DJSYNC["HTTP_BASE_URLS"]',
        id="redirect-ipv6-literal",
    ),
    pytest.param(
        lambda api: Reply(503, b"", {"Retry-After": "9" * 40}),
        'would pass DJSYNC["HTTP_DEADLINE"]',
        id="retry-after-huge",
    ),
    pytest.param(
        lambda api: Reply(429, b"", {"Retry-After": "1e400"}),
        'would pass DJSYNC["HTTP_DEADLINE"]',
        id="retry-after-infinite",
    ),
    pytest.param(
        lambda api: Reply(503, b"", {"Retry-After": "-5"}),
        "HTTP 503 Service Unavailable (page 1, gave up after 2 attempts)",
        id="retry-after-negative",
    ),
    pytest.param(
        lambda api: Reply(503, b"", {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}),
        "HTTP 503 Service Unavailable (page 1",
        id="retry-after-http-date",
    ),
    pytest.param(
        lambda api: Reply(429, b"", {"Retry-After": "nan"}),
        "HTTP 429 Too Many Requests (page 1, gave up after 2 attempts)",
        id="retry-after-nan",
    ),
    pytest.param(
        lambda api: _endless(b"HTTP/1.1 200 OK\r\n", b"X-H: v\r\n"),
        "Receive buffer too long",
        id="endless-headers",
    ),
    pytest.param(
        lambda api: _endless(b"HTTP/1.1 200 OK\r\nX-Big: ", b"a" * 1000),
        "Receive buffer too long",
        id="megabyte-header-line",
    ),
    pytest.param(
        lambda api: _endless(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            b"1" * 1000,
        ),
        "Receive buffer too long",
        id="endless-chunk-size-line",
    ),
    pytest.param(
        lambda api: Reply(
            200, json.dumps([{**ITEM, "name": "café"}]).replace("\\u00e9", "\xe9").encode("latin-1")
        ),
        "page 1 is not valid JSON",
        id="latin-1-json",
    ),
    pytest.param(
        lambda api: Reply(200, json.dumps([ITEM]).encode("utf-16")),
        "page 1 is not valid JSON",
        id="utf-16-json",
    ),
]


@pytest.mark.parametrize("reply,expected", REPLIES)
def test_a_hostile_reply_fails_the_run_in_seconds(api, make_job, reply, expected):
    api.route("/items", reply(api))
    message, seconds = http_refused(make_job, api.url("/items"))
    assert expected in message
    assert seconds < 10


def test_a_link_header_with_many_entries_is_bounded(api, make_job):
    links = ", ".join(f'<{api.url("/p")}?x={i}>; rel="n{i}"' for i in range(20_000))
    api.route("/items", Reply(200, [ITEM], {"Link": links}))
    message, seconds = http_refused(make_job, api.url("/items"))
    assert "Receive buffer too long" in message and seconds < 10


def test_a_next_link_to_a_file_url_is_not_followed(api, make_job):
    api.route("/items", Reply(200, [], {"Link": '<file:///etc/passwd>; rel="next"'}))
    message, _ = http_refused(make_job, api.url("/items"), pagination={"style": "next"})
    assert "passwd" not in message or "is not an http(s) URL" in message


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:{port}/items",
        "http://2130706433:{port}/items",
        "http://[::1]:{port}/items",
        "http://127.1:{port}/items",
        "http://0x7f.0.0.1:{port}/items",
        "https://127.0.0.1:{port}/items",
    ],
)
def test_an_alias_of_an_allowed_host_is_refused_before_any_request(api, make_job, url):
    url = url.format(port=api.url("/").rsplit(":", 1)[1].strip("/"))
    message, _ = http_refused(make_job, url)
    assert "HTTP_BASE_URLS" in message and not api.requests


HTTP_OPTIONS = [
    (
        "many-headers",
        {"headers": {f"X-H{i}": "v" for i in range(1000)}},
        'headers has 1,000 entries, more than 100 (DJSYNC["HTTP_MAX_OPTION_ITEMS"])',
    ),
    (
        "megabyte-header",
        {"headers": {"X-Big": "v" * 1_000_000}},
        "header 'X-Big' is longer than 8,000 characters (DJSYNC[\"HTTP_MAX_HEADER_VALUE\"])",
    ),
    (
        "many-params",
        {"params": {f"k{i}": "v" for i in range(100_000)}},
        'params has 100,000 entries, more than 100 (DJSYNC["HTTP_MAX_OPTION_ITEMS"])',
    ),
    (
        "megabyte-json-body",
        {"method": "POST", "json": ["x" * 1000] * 2000},
        'the json body is longer than 1,000,000 characters (DJSYNC["HTTP_MAX_JSON_BODY"])',
    ),
    ("timeout-text", {"timeout": "5"}, "timeout must be a number ≥ 0, not '5'"),
    ("retries-negative", {"retries": -1}, "retries must be a number ≥ 0, not -1"),
    ("max-pages-negative", {"max_pages": -1}, "max_pages must be a number ≥ 0, not -1"),
    (
        "pagination-start-negative",
        {"pagination": {"style": "page", "start": -(10**30)}},
        f"pagination start must be a whole number ≥ 0, not {-(10**30)}",
    ),
    (
        "pagination-size-text",
        {"pagination": {"style": "offset", "size": "10"}},
        "pagination size must be a whole number ≥ 0, not '10'",
    ),
    ("pagination-list", {"pagination": ["page"]}, "pagination must be an object"),
    ("method-list", {"method": ["GET"]}, "method must be GET or POST"),
    ("records-number", {"records": 3}, "records is a dotted path such as data.items"),
    ("auth-literal-token", {"auth": {"bearer": "x"}}, "auth needs 'token': a credential name"),
]


@pytest.mark.parametrize(
    "options,expected", [c[1:] for c in HTTP_OPTIONS], ids=[c[0] for c in HTTP_OPTIONS]
)
def test_http_options_with_wrong_types_or_sizes_are_refused(api, make_job, options, expected):
    api.route("/items", Reply(200, [ITEM]))
    message, seconds = http_refused(make_job, api.url("/items"), **options)
    assert message == f"{api.url('/items')}: {expected}"
    assert seconds < 10 and not api.requests


def test_a_huge_retry_count_and_timeout_stay_under_the_deadline(api, make_job):
    api.route("/items", Reply(503, b""))
    message, seconds = http_refused(
        make_job, api.url("/items"), retries=10**9, timeout=1e300, backoff=0, max_pages=10**30
    )
    assert 'DJSYNC["HTTP_DEADLINE"]' in message
    assert seconds < 10


# == admin requests ==========================================================================

RUN_LOOKUPS = [
    "user__password__startswith=pbkdf2",
    "user__username__startswith=a",
    "job__source__contains=secret",
    "job__target__icontains=x",
    "job__notify_on_failure__contains=x",
    "job__importer__regex=.*",
    "changes__data__contains=x",
]
JOB_LOOKUPS = [
    "runs__user__password__startswith=pbkdf2",
    "runs__upload__startswith=x",
    "runs__changes__data__contains=x",
]


@pytest.mark.parametrize(
    "changelist,query",
    [("syncrun", q) for q in RUN_LOOKUPS] + [("syncjob", q) for q in JOB_LOOKUPS],
)
def test_a_changelist_refuses_lookups_through_relations(client_for, job, changelist, query):
    client = client_for(None, "djsync.view_syncrun", "djsync.view_syncjob")
    previewed_run(job, None)
    response = client.get(reverse(f"admin:djsync_{changelist}_changelist") + "?" + query)
    # Django's admin: 400 for a lookup it does not allow, or back to the list with ?e=1.
    assert response.status_code == 400 or (
        response.status_code == 302 and response["Location"].endswith("?e=1")
    ), (query, response.status_code)


def test_bulk_delete_of_runs_is_not_offered_even_to_a_superuser(admin_client, job, make_user):
    other = make_user(*PREVIEW)
    runs = [previewed_run(job, other) for _ in range(3)]
    before = snapshot()
    response = admin_client.post(
        reverse("admin:djsync_syncrun_changelist"),
        {"action": "delete_selected", "_selected_action": [r.pk for r in runs], "post": "yes"},
    )
    assert response.status_code in (200, 302)
    assert snapshot() == before and SyncRun.objects.filter(pk__in=[r.pk for r in runs]).count() == 3


def test_the_status_json_of_a_run_on_another_target_is_refused(make_job, make_user):
    categories = make_job("test_categories", name="cats")
    run = previewed_run(categories, None)
    client = Client()
    client.force_login(make_user(*PREVIEW))
    for query in ("", "?step=apply", "?step=../../x"):
        response = client.get(run_url(run, "status") + query)
        assert response.status_code == 403, query
        assert b"cats" not in response.content


def _source_form(client: Client, job: SyncJob, source_text: str) -> Any:
    url = reverse("admin:djsync_syncjob_change", args=[job.pk])
    return client.post(url, job_post(job, source=source_text))


@pytest.mark.parametrize(
    "text,expected",
    [
        pytest.param("[" * 100_000 + "]" * 100_000, b"nested too deeply", id="deeply-nested"),
        pytest.param(
            '{"path": ' * 50_000 + "1" + "}" * 50_000, b"nested too deeply", id="deep-obj"
        ),
        pytest.param(
            json.dumps({"path": "ok.csv", "pad": "x" * 2_000_000}), b"cannot set", id="2-mb"
        ),
        pytest.param(
            json.dumps({"path": ["x"] * 200_000}), b"must be a file name", id="huge-list-path"
        ),
        pytest.param('{"path": NaN}', b"must be a file name", id="nan"),
    ],
)
def test_a_huge_or_deep_source_saved_in_the_admin_is_a_form_error(
    job, client_for, root, text, expected
):
    client = client_for(None, *JOBS, "djsync.change_syncjob_source")
    before = snapshot()
    started = time.monotonic()
    response = _source_form(client, job, text)
    assert response.status_code == 200, response.status_code  # the form again, with its error
    assert expected in response.content
    assert time.monotonic() - started < 10
    assert snapshot() == before


def test_a_source_larger_than_a_request_may_be_is_refused_by_django(job, client_for, root):
    client = client_for(None, *JOBS, "djsync.change_syncjob_source")
    before = snapshot()
    response = _source_form(client, job, json.dumps({"path": "ok.csv", "pad": "x" * 5_000_000}))
    assert response.status_code == 400  # settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert snapshot() == before


@pytest.mark.parametrize(
    "addresses,expected",
    [
        pytest.param("a@example.com\r\nBcc: victim@example.com", b"is not an e-mail", id="bcc"),
        pytest.param("a@example.com%0d%0aBcc:x@example.com", b"is not an e-mail", id="encoded"),
        pytest.param(
            "\n".join(f"u{i}@example.com" for i in range(5000)),
            b"5000 addresses; a job notifies at most 50 (DJSYNC[&quot;MAX_NOTIFY_ADDRESSES&quot;]).",
            id="thousands",
        ),
    ],
)
def test_notify_on_failure_cannot_inject_headers_or_mail_thousands(
    job, client_for, addresses, expected
):
    client = client_for(None, *JOBS, "djsync.change_syncjob_source")
    before = snapshot()
    url = reverse("admin:djsync_syncjob_change", args=[job.pk])
    response = client.post(url, job_post(job, notify_on_failure=addresses))
    assert response.status_code == 200 and expected in response.content
    assert snapshot() == before
    assert SyncJob.objects.get(pk=job.pk).notify_on_failure in ([], None, "")


NOT_MINE = "not an importer of this job (test_categories, test_products)"
MULTI = [
    ("sources-list", {"sources": [{"path": "ok.csv"}]}, "source 'sources' must map importer names"),
    ("sources-text", {"sources": "ok.csv"}, "source 'sources' must map importer names"),
    (
        "entry-text",
        {"sources": {"test_categories": "../x.csv"}},
        "sources['test_categories'] is not an object",
    ),
    (
        "entry-list",
        {"sources": {"test_categories": [{"path": "ok.csv"}]}},
        "sources['test_categories'] is not an object",
    ),
    (
        "entry-unknown-importer",
        {"sources": {"auth_user": {"path": "ok.csv"}}},
        "sources names 'auth_user', " + NOT_MINE,
    ),
    (
        "many-entries",
        {"sources": {f"i{n}": {"path": "ok.csv"} for n in range(10_000)}},
        "sources names 'i0', 'i1', 'i2' and 9997 more, " + NOT_MINE,
    ),
    (
        "entry-path-object",
        {"sources": {"test_categories": {"path": {"a": 1}}, "test_products": {"path": "ok.csv"}}},
        "source path must be a file name, not {'a': 1}",
    ),
]


@pytest.mark.parametrize("source,expected", [c[1:] for c in MULTI], ids=[c[0] for c in MULTI])
def test_a_multi_model_job_with_odd_sources_entries(make_job, root, source, expected):
    message = refused(make_job, source, importer="test_categories, test_products")
    assert message == "job 'hostile': " + expected

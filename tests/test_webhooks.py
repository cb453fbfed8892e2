"""Webhooks, on both databases: a signed delivery of changed records applied as a small
run of its job (docs/realtime.md, "Webhooks"), and every way a delivery is refused
before anything is applied: no webhook, size, signature, timestamp, body, replay."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import subprocess
import threading
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest
from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from django.test import Client
from django.utils import translation

from djsync.models import SyncChange, SyncRun, WebhookDelivery
from djsync.realtime import webhooks
from djsync.realtime.views import webhook
from djsync.runs import locks
from tests.testapp.models import Category, Member, Product
from tests.testapp.sync import GATE

SECRET = "whsec-0123456789abcdef"
URL = "/sync/webhooks/shop/"


@pytest.fixture
def hook(settings: Any, make_job: Any) -> Any:
    return declare(settings, make_job, "test_products")


def declare(settings: Any, make_job: Any, importer: str, **job: Any) -> Any:
    """The job "shop" of ``importer``, with a webhook."""
    settings.DJSYNC = {**settings.DJSYNC, "WEBHOOKS": {"shop": {"secret": SECRET}}}
    return make_job(importer, name="shop", **job)


def row(sku: str, **values: Any) -> dict[str, Any]:
    return {
        "sku": sku,
        "name": f"Product {sku}",
        "price": "1.50",
        "qty": 1,
        "updated": None,
        "active": True,
        **values,
    }


def post(
    client: Client,
    body: Any,
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
    url: str = URL,
    signature: str | None = None,
) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    if signature is None:
        signature = webhooks.sign(secret, raw, timestamp)
    headers = {"X-Djsync-Signature": signature} if signature else {}
    return client.post(url, raw, content_type="application/json", headers=headers)


def products() -> dict[str, tuple[str, Decimal, int]]:
    return {p.sku: (p.name, p.price, p.qty) for p in Product.objects.all()}


# -- applied --------------------------------------------------------------------------------
def test_a_signed_delivery_creates_updates_and_deletes_as_one_run(client, hook):
    Product.objects.create(sku="OLD", name="Gone soon", price=1)
    Product.objects.create(sku="KEEP", name="Not in the delivery", price=2)
    Product.objects.create(sku="B", name="Before", price=3)
    body = {"id": "evt-1", "records": [row("A"), row("B", price="9.99")], "deleted": ["OLD"]}
    response = post(client, body)
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["status"] == "succeeded" and data["delivery"] == "evt-1"
    assert (data["created"], data["updated"], data["deleted"]) == (1, 1, 1)
    assert data["row_errors"] == [] and data["errors"] == 0
    assert products() == {
        "A": ("Product A", Decimal("1.50"), 1),
        "B": ("Product B", Decimal("9.99"), 1),
        "KEEP": ("Not in the delivery", Decimal("2.00"), 0),  # the job deletes, not this key
    }
    run = SyncRun.objects.get(pk=data["run"])
    assert run.trigger == "webhook" and run.status == "succeeded" and run.job == hook
    assert run.source_name == "webhook delivery evt-1"
    assert SyncChange.objects.filter(run=run).count() == 3


def test_the_signature_is_the_documented_hmac(client, hook):
    body = json.dumps({"records": [row("A")]}).encode()
    timestamp = int(time.time())
    digest = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    response = post(client, body, signature=f"t={timestamp},v1={digest.hexdigest()}")
    assert response.status_code == 200 and set(products()) == {"A"}


def test_a_delivery_of_deletes_only(client, hook):
    Product.objects.create(sku="X", name="x", price=1)
    response = post(client, {"deleted": [{"sku": "X"}, {"sku": "NOT-THERE"}]})
    assert response.status_code == 200, response.content
    assert response.json()["deleted"] == 1 and not Product.objects.exists()


def test_a_job_that_does_not_delete_leaves_deleted_rows_alone(client, settings, make_job):
    declare(settings, make_job, "test_products", delete=False)
    Product.objects.create(sku="X", name="x", price=1)
    response = post(client, {"records": [row("A")], "deleted": ["X"]})
    assert response.status_code == 200 and response.json()["deleted"] == 0
    assert set(products()) == {"A", "X"}


def test_a_composite_key_is_deleted_by_an_object_of_its_columns(client, settings, make_job):
    declare(settings, make_job, "test_members")
    Member.objects.create(team="red", number=1, name="One")
    Member.objects.create(team="red", number=2, name="Two")
    Member.objects.create(team="blue", number=1, name="Other team")
    response = post(client, {"deleted": [{"team": "red", "number": "1"}]})
    assert response.status_code == 200, response.content
    left = set(Member.objects.values_list("team", "number"))
    assert left == {("red", 2), ("blue", 1)}
    bare = post(client, {"deleted": ["red"]})
    assert bare.status_code == 422
    assert "deleted[0]: the key has several columns (team, number)" in bare.json()["error"]


def test_records_and_bare_deleted_keys_under_an_alias(client, settings, make_job):
    declare(settings, make_job, "test_products_aliased", delete=True)
    Product.objects.create(sku="OLD", name="Gone soon", price=1)
    records = [{"Article": "A", "Désignation": "Alias", "Prix": "2.00"}]
    response = post(client, {"records": records, "deleted": ["OLD"]})
    assert response.status_code == 200, response.content
    assert products() == {"A": ("Alias", Decimal("2.00"), 0)}


def test_a_rotated_secret_list_takes_either_secret(client, settings, hook):
    new = "whsec-new-0123456789abcdef"
    settings.DJSYNC = {**settings.DJSYNC, "WEBHOOKS": {"shop": {"secret": [new, SECRET]}}}
    assert post(client, {"records": [row("A")]}, secret=new).status_code == 200
    assert post(client, {"records": [row("B")]}, secret=SECRET).status_code == 200
    assert set(products()) == {"A", "B"}


def test_a_bad_value_is_a_row_error_naming_record_and_column(client, hook):
    response = post(client, {"records": [row("A"), row("B", price="cheap")]})
    assert response.status_code == 422
    data = response.json()
    assert data["status"] == "failed" and "nothing written" in data["error"]
    [error] = data["row_errors"]
    assert error["record"] == 1 and error["column"] == "price" and error["value"] == "cheap"
    assert not Product.objects.exists()  # the good record was not written either
    run = SyncRun.objects.get(pk=data["run"])
    assert run.status == "failed" and run.row_errors.get().row == 1


def test_a_failed_delivery_may_be_sent_again_and_then_applies(client, hook):
    bad = {"id": "evt-9", "records": [row("A", qty="many")]}
    assert post(client, bad).status_code == 422
    assert not WebhookDelivery.objects.exists()
    good = {"id": "evt-9", "records": [row("A", qty=3)]}
    assert post(client, good).status_code == 200
    assert products() == {"A": ("Product A", Decimal("1.50"), 3)}


def test_a_lenient_job_applies_the_good_records_and_names_the_bad(client, settings, make_job):
    declare(settings, make_job, "test_products", on_row_error="skip")
    Category.objects.create(code="toys", name="Toys")
    records = [row("A", category_code="toys"), row("B", category_code="nope")]
    response = post(client, {"records": records})
    assert response.status_code == 200
    data = response.json()
    assert data["created"] == 1 and data["errors"] == 1
    assert data["row_errors"][0]["record"] == 1
    assert data["row_errors"][0]["column"] == "category_code"
    assert set(products()) == {"A"}


def test_a_deleted_entry_without_a_key_fails_the_run_naming_it(client, hook):
    Product.objects.create(sku="X", name="x", price=1)
    response = post(client, {"records": [row("A")], "deleted": ["X", {"name": "no key"}]})
    assert response.status_code == 422
    assert response.json()["error"].startswith("deleted[1]")
    assert set(products()) == {"X"}


# -- refused: who ------------------------------------------------------------------------------
def test_a_job_without_a_webhook_answers_as_an_unknown_job(client, hook, make_job):
    make_job("test_products", name="secret-job")
    undeclared = post(client, {"records": [row("A")]}, url="/sync/webhooks/secret-job/")
    unknown = post(client, {"records": [row("A")]}, url="/sync/webhooks/no-such-job/")
    assert undeclared.status_code == unknown.status_code == 404
    assert undeclared.json()["error"].replace("secret-job", "?") == unknown.json()["error"].replace(
        "no-such-job", "?"
    )
    assert not Product.objects.exists()


def test_a_declared_webhook_without_its_job_is_404_too(client, settings, hook):
    settings.DJSYNC = {**settings.DJSYNC, "WEBHOOKS": {"gone": {"secret": SECRET}}}
    response = post(client, {"records": [row("A")]}, url="/sync/webhooks/gone/")
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("signature", "words"),
    [
        ("", "no X-Djsync-Signature header"),
        ("v1=abc", "must read t=<unix seconds>,v1=<hex digest>"),
        ("t=12x,v1=abc", "must read t=<unix seconds>,v1=<hex digest>"),
    ],
)
def test_a_missing_or_malformed_signature_is_401(client, hook, signature, words):
    response = post(client, {"records": [row("A")]}, signature=signature or "")
    assert response.status_code == 401 and words in response.json()["error"]
    assert not Product.objects.exists() and not SyncRun.objects.exists()


def test_a_wrong_secret_or_a_changed_body_is_401(client, hook):
    wrong = post(client, {"records": [row("A")]}, secret="whsec-someone-elses-secret")
    assert wrong.status_code == 401 and "does not match" in wrong.json()["error"]
    signed = json.dumps({"records": [row("A")]}).encode()
    tampered = json.dumps({"records": [row("A", price="0.01")]}).encode()
    response = client.post(
        URL,
        tampered,
        content_type="application/json",
        headers={"X-Djsync-Signature": webhooks.sign(SECRET, signed)},
    )
    assert response.status_code == 401
    assert not Product.objects.exists() and not SyncRun.objects.exists()


@pytest.mark.parametrize(("offset", "way"), [(-301, "behind"), (400, "ahead of")])
def test_a_stale_or_future_timestamp_is_401(client, hook, offset, way):
    response = post(client, {"records": [row("A")]}, timestamp=int(time.time()) + offset)
    assert response.status_code == 401
    assert way in response.json()["error"] and "WEBHOOK_TOLERANCE" in response.json()["error"]
    assert not Product.objects.exists()


def test_a_replay_is_409_and_applies_nothing(client, hook):
    body = json.dumps({"records": [row("A")]}).encode()
    signature = webhooks.sign(SECRET, body)
    first = post(client, body, signature=signature)
    assert first.status_code == 200
    Product.objects.filter(sku="A").update(name="Changed since")
    again = post(client, body, signature=signature)
    assert again.status_code == 409 and "replay" in again.json()["error"]
    assert products()["A"][0] == "Changed since"
    assert SyncRun.objects.count() == 1


def test_the_same_delivery_id_signed_anew_is_a_replay_too(client, hook):
    assert post(client, {"id": "evt-2", "records": [row("A")]}).status_code == 200
    again = post(
        client, {"id": "evt-2", "records": [row("A", qty=5)]}, timestamp=int(time.time()) + 1
    )
    assert again.status_code == 409 and f"run #{SyncRun.objects.get().pk}" in again.json()["error"]
    assert products()["A"][2] == 1


def test_expired_deliveries_are_pruned(client, hook):
    old = int(time.time()) - 290
    assert post(client, {"records": [row("A")]}, timestamp=old).status_code == 200
    WebhookDelivery.objects.update(expires_at="2000-01-01T00:00:00Z")
    assert post(client, {"records": [row("B")]}).status_code == 200
    assert WebhookDelivery.objects.count() == 1  # the expired one went


# -- refused: what -----------------------------------------------------------------------------
def test_a_body_over_the_limit_is_refused_by_its_content_length(client, settings, hook):
    settings.DJSYNC = {**settings.DJSYNC, "WEBHOOK_MAX_BODY": 1000}
    response = post(client, {"records": [row(f"S{i}") for i in range(40)]})
    assert response.status_code == 413
    assert 'DJSYNC["WEBHOOK_MAX_BODY"] (1,000 bytes)' in response.json()["error"]
    assert not Product.objects.exists() and not SyncRun.objects.exists()


def asgi_post(body: bytes, *, signature: str) -> Any:
    """A request as an ASGI server passes a chunked body: no Content-Length."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": URL,
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/json"),
            (b"x-djsync-signature", signature.encode()),
        ],
    }
    return webhook(ASGIRequest(scope, io.BytesIO(body)), name="shop")


def test_a_body_without_content_length_is_cut_at_the_limit(settings, hook):
    settings.DJSYNC = {**settings.DJSYNC, "WEBHOOK_MAX_BODY": 1000}
    body = json.dumps({"records": [row(f"S{i}") for i in range(40)]}).encode()
    response = asgi_post(body, signature=webhooks.sign(SECRET, body))
    assert response.status_code == 413
    assert "it was not read further" in json.loads(response.content)["error"]
    small = json.dumps({"records": [row("A")]}).encode()
    assert asgi_post(small, signature=webhooks.sign(SECRET, small)).status_code == 200
    assert set(products()) == {"A"}


def test_too_many_records_is_413(client, settings, hook):
    settings.DJSYNC = {**settings.DJSYNC, "WEBHOOK_MAX_RECORDS": 3}
    response = post(client, {"records": [row("A"), row("B")], "deleted": ["C", "D"]})
    assert response.status_code == 413
    assert (
        'holds 4 records, more than DJSYNC["WEBHOOK_MAX_RECORDS"] (3)' in response.json()["error"]
    )


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"records": [{"sku": "A",}]}', "malformed JSON: Expecting property name enclosed in"),
        (b'{"records": [{"sku": "A",}]}', "at line 1, column 26 (character 25)"),
        (b"[1, 2]", "a delivery is a JSON object"),
        (b'{"records": {}}', '"records" must be a JSON array'),
        (b'{"records": [1]}', "records[0] must be a JSON object"),
        (b'{"rows": []}', "unknown keys 'rows' in the delivery"),
        (b'{"records": []}', "nothing to apply"),
        (b'{"id": 3, "records": []}', '"id" must be a non-empty string'),
        (b"   ", "the delivery's body is empty"),
        (b'{"records": [{"sku": ' + b"1" * 5000 + b"}]}", "malformed JSON: Exceeds the limit"),
        (b'{"records": [{"sku": "\xff"}]}', "the delivery's body is not UTF-8 text"),
        (b'{"deleted": [true]}', "deleted[0] must be an object of key columns"),
        (
            json.dumps({"records": [row("A"), {"sku": "B"}]}).encode(),
            "records[1] has no column 'name', which records[0] has",
        ),
        (
            json.dumps({"records": [row("A"), row("B", extra=1)]}).encode(),
            "records[1] has a column 'extra' that records[0] has not",
        ),
        (
            json.dumps({"records": [row("A", name=[[[[[["deep"]]]]]])]}).encode(),
            "records[0], column 'name': values nest deeper than DJSYNC[\"JSON_MAX_DEPTH\"] (4",
        ),
        (b"[" * 100_000 + b"]" * 100_000, 'values nest deeper than DJSYNC["JSON_MAX_DEPTH"]'),
        (
            json.dumps({"records": [row("A", name="x" * 101)]}).encode(),
            "records[0], column 'name': a value is longer than DJSYNC[\"MAX_CELL_SIZE\"] (100",
        ),
    ],
)
def test_a_malformed_body_is_400_naming_the_place(client, settings, hook, body, words):
    settings.DJSYNC = {**settings.DJSYNC, "JSON_MAX_DEPTH": 4, "MAX_CELL_SIZE": 100}
    response = post(client, body)
    assert response.status_code == 400 and words in response.json()["error"], response.content
    assert not SyncRun.objects.exists()


# -- refused: when ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "words"), [("enabled", "is disabled"), ("realtime_paused", "is paused")]
)
def test_a_disabled_or_paused_job_is_503_to_send_again(client, hook, field, words):
    setattr(hook, field, field != "enabled")
    hook.save()
    response = post(client, {"id": "evt-3", "records": [row("A")]})
    assert response.status_code == 503 and words in response.json()["error"]
    assert response["Retry-After"] == "30"
    assert not SyncRun.objects.exists() and not WebhookDelivery.objects.exists()
    setattr(hook, field, field == "enabled")
    hook.save()
    assert post(client, {"id": "evt-3", "records": [row("A")]}).status_code == 200


def test_a_busy_job_is_503_and_the_delivery_may_come_again(client, hook):
    lock = locks.job_lock(hook.pk)
    assert lock.acquire()
    try:
        response = post(client, {"id": "evt-4", "records": [row("A")]})
    finally:
        lock.release()
    assert response.status_code == 503 and "another run" in response.json()["error"]
    assert not SyncRun.objects.exists() and not Product.objects.exists()
    assert post(client, {"id": "evt-4", "records": [row("A")]}).status_code == 200


def test_get_is_405(client, hook):
    assert client.get(URL).status_code == 405
    assert client.get("/sync/webhooks/no-such-job/").status_code == 405


# -- over HTTP, as documented ---------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_the_documented_openssl_and_curl_sender(live_server, settings, make_job, tmp_path):
    declare(settings, make_job, "test_products")
    (tmp_path / "delivery.json").write_text(json.dumps({"id": "evt-7", "records": [row("A")]}))
    script = f"""
set -e
cd {tmp_path}
URL={live_server.url}/sync/webhooks/shop/
SECRET={SECRET}
T=$(date +%s)
SIG=$( (printf '%s.' "$T"; cat delivery.json) | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)
curl -sS -X POST "$URL" -H "Content-Type: application/json" \\
     -H "X-Djsync-Signature: t=$T,v1=$SIG" --data-binary @delivery.json
"""
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["status"] == "succeeded", out
    chunked = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            "{}",
            f"{live_server.url}{URL}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert chunked.stdout == "411"  # a WSGI server hands Django no chunked body
    assert set(products()) == {"A"}


# -- the rest of a run's life ------------------------------------------------------------------
def test_a_large_delivery_takes_the_staged_path_and_stays_within_its_keys(client, hook):
    Product.objects.create(sku="KEEP", name="Not in the delivery", price=2)
    Product.objects.create(sku="GONE", name="Deleted at the sender", price=2)
    Product.objects.create(sku="S0", name="Before", price=2)
    records = [row(f"S{i}") for i in range(300)]
    response = post(client, {"records": records, "deleted": ["GONE"]})
    assert response.status_code == 200, response.content
    data = response.json()
    assert (data["created"], data["updated"], data["deleted"]) == (299, 1, 1)
    run = SyncRun.objects.get(pk=data["run"])
    assert run.stats["testapp.Product"]["path"].startswith("staged")
    assert Product.objects.count() == 301 and Product.objects.filter(sku="KEEP").exists()
    small = post(client, {"records": [row("S1", qty=4)]}).json()
    path = SyncRun.objects.get(pk=small["run"]).stats["testapp.Product"]["path"]
    assert path == "generic: a few rows: the generic path answers sooner"


def test_a_failed_delivery_is_mailed_like_any_failed_run(client, settings, make_job, mailoutbox):
    declare(settings, make_job, "test_products", notify_on_failure=["ops@example.com"])
    assert post(client, {"records": [row("A", price="cheap")]}).status_code == 422
    [mail] = mailoutbox
    assert mail.to == ["ops@example.com"] and "shop" in mail.subject


def claim_with(hook: Any, delivery: str, status: str | None, *, applied: bool = False) -> None:
    run = SyncRun.objects.create(job=hook, trigger="webhook", status=status) if status else None
    WebhookDelivery.objects.create(
        job=hook,
        delivery=delivery,
        run=run,
        applied=applied,
        expires_at="2999-01-01T00:00:00Z",
    )


def test_a_delivery_under_way_elsewhere_is_503(client, hook):
    claim_with(hook, "evt-5", "applying")
    response = post(client, {"id": "evt-5", "records": [row("A")]})
    assert response.status_code == 503 and "being applied" in response.json()["error"]
    assert not Product.objects.exists()


def test_a_claim_left_by_a_failed_run_is_taken_over(client, hook):
    claim_with(hook, "evt-6", "failed")
    assert post(client, {"id": "evt-6", "records": [row("A")]}).status_code == 200
    assert WebhookDelivery.objects.get().applied


def test_a_claim_whose_run_succeeded_is_a_replay_even_unsettled(client, hook):
    claim_with(hook, "evt-8", "succeeded")  # the request died between the run and its note
    assert post(client, {"id": "evt-8", "records": [row("A")]}).status_code == 409
    assert not Product.objects.exists()


def test_a_badly_declared_webhook_is_a_system_check_error(settings):
    from djsync.checks import check_settings

    settings.DJSYNC = {
        **settings.DJSYNC,
        "WEBHOOKS": {"a": {"secret": "short"}, "b": {"secret": SECRET, "url": "x"}},
    }
    (short, short_text), (unknown, unknown_text) = [(m.id, m.msg) for m in check_settings()]
    assert short == unknown == "djsync.E003"
    assert short_text.startswith('DJSYNC["WEBHOOKS"][\'a\']: every "secret" must be a string')
    assert "at least 16 characters" in short_text
    assert unknown_text == "DJSYNC[\"WEBHOOKS\"]['b']: unknown keys 'url' (it takes \"secret\")"


def test_a_refusal_speaks_the_senders_language(client, hook):
    with translation.override("en"):  # the request's language stays the request's
        response = client.post(
            URL, b"{}", content_type="application/json", headers={"Accept-Language": "fr"}
        )
    assert response.json()["error"] == "la livraison n'a pas d'en-tête X-Djsync-Signature"


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="two requests at once: the live server's threads share one SQLite connection",
)
@pytest.mark.django_db(transaction=True)
def test_while_a_delivery_is_applied_its_copy_and_other_deliveries_wait(
    live_server, settings, make_job
):
    """Over HTTP, two requests at once: the first delivery's run waits at the gate (a record
    whose SKU is WAIT) holding the job's lock; its copy and another delivery get 503."""
    declare(settings, make_job, "test_products_waiting")
    url = f"{live_server.url}{URL}"

    def send(body: dict[str, Any]) -> httpx.Response:
        raw = json.dumps(body).encode()
        headers = {"X-Djsync-Signature": webhooks.sign(SECRET, raw)}
        return httpx.post(url, content=raw, headers=headers, timeout=60)

    GATE.clear()
    answers: list[httpx.Response] = []
    first = threading.Thread(
        target=lambda: answers.append(send({"id": "evt-w", "records": [row("WAIT")]}))
    )
    first.start()
    try:
        deadline = time.monotonic() + 30
        while not SyncRun.objects.filter(status="reading").exists():
            assert time.monotonic() < deadline, "the first delivery's run never started"
            time.sleep(0.05)
        copy = send({"id": "evt-w", "records": [row("WAIT")]})
        assert copy.status_code == 503 and "being applied" in copy.json()["error"]
        other = send({"id": "evt-x", "records": [row("B")]})
        assert other.status_code == 503 and "another run" in other.json()["error"]
        assert other.headers["Retry-After"] == "30"
    finally:
        GATE.set()
        first.join(60)
    assert answers[0].status_code == 200, answers[0].text
    assert send({"id": "evt-w", "records": [row("WAIT")]}).status_code == 409
    assert send({"id": "evt-x", "records": [row("B")]}).status_code == 200
    assert set(products()) == {"WAIT", "B"}
    assert SyncRun.objects.filter(status="succeeded").count() == 2


def test_a_delivery_that_changes_nothing_is_still_a_run_in_the_history(client, hook):
    assert post(client, {"id": "evt-a", "records": [row("A")]}).status_code == 200
    again = post(client, {"id": "evt-b", "records": [row("A")]})
    assert again.status_code == 200 and again.json()["unchanged"] == 1
    assert SyncRun.objects.filter(trigger="webhook", status="succeeded").count() == 2

"""The HTTP API over real HTTP (httpx against the live server): what a CI pipeline does —
list jobs, upload a file for a preview, poll it, read its changes and row errors, apply or
discard it — and what it must refuse: no credentials, missing permissions, another user's
preview, a stale preview, oversized bodies, bad ids, huge pages."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection
from rest_framework.authtoken.models import Token

from djsync.models import SyncJob, SyncRun
from djsync.runs.progress import snapshot
from djsync.uploads import upload_root
from tests.testapp.models import Product

pytestmark = pytest.mark.django_db(transaction=True)

#: What a clerk who previews and applies product syncs holds (as in the admin's tests).
CLERK = [
    "djsync.view_syncjob",
    "djsync.add_syncrun",
    "djsync.view_syncrun",
    "testapp.view_product",
    "testapp.add_product",
    "testapp.change_product",
    "testapp.delete_product",
]
HEADER = "sku,name,price,qty,updated,active\n"


def make_user(django_user_model: Any, name: str, perms: list[str], **fields: Any) -> Any:
    user = django_user_model.objects.create_user(
        name, password="pw-" + name, **{"is_staff": True, **fields}
    )
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    return user


@pytest.fixture(autouse=True)
def uploads(settings: Any, tmp_path: Path) -> Path:
    """This test's own upload folder: what a test leaves there is its own doing."""
    root = tmp_path / "uploads"
    settings.DJSYNC = {**settings.DJSYNC, "UPLOAD_ROOT": str(root)}
    return root


@pytest.fixture
def base(live_server: Any) -> str:
    return f"{live_server.url}/api/sync/"


@pytest.fixture
def connect(base: str) -> Any:
    """connect(user) → an httpx client that sends the user's API token."""
    clients: list[httpx.Client] = []

    def make(user: Any | None) -> httpx.Client:
        headers = {}
        if user is not None:
            headers["Authorization"] = f"Token {Token.objects.get_or_create(user=user)[0].key}"
        client = httpx.Client(base_url=base, headers=headers, timeout=60)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def clerk(django_user_model: Any) -> Any:
    return make_user(django_user_model, "clerk", CLERK)


@pytest.fixture
def products_job(make_job: Any) -> SyncJob:
    for sku, price in (("LAMP-1", "1.00"), ("LAMP-2", "1.00"), ("SAW-1", "5.00")):
        Product.objects.create(sku=sku, name=sku, price=Decimal(price), qty=1)
    return make_job("test_products", name="products", source={"path": "none.csv"})


def csv_file(*rows: str) -> bytes:
    return (HEADER + "".join(row + "\n" for row in rows)).encode()


#: Tomorrow's file: LAMP-1's price changes, DRILL-1 is new, LAMP-2 and SAW-1 are kept.
GOOD = csv_file(
    "LAMP-1,LAMP-1,2.00,1,,1",
    "LAMP-2,LAMP-2,1.00,1,,1",
    "SAW-1,SAW-1,5.00,1,,1",
    "DRILL-1,Drill,9.50,2,,1",
)


def wait(api: httpx.Client, url: str, *, until: str = "active", timeout: float = 60) -> dict:
    """Poll a run until ``active`` (or ``finished``) says it is done, as a pipeline does."""
    deadline = time.monotonic() + timeout
    while True:
        run = api.get(url).json()
        done = not run["active"] if until == "active" else run["finished"]
        if done or time.monotonic() > deadline:
            return run
        time.sleep(0.2)


def preview(api: httpx.Client, content: bytes = GOOD, name: str = "products.csv") -> dict:
    sent = api.post(
        "jobs/products/runs/", data={"dry_run": "true"}, files={"file": (name, content)}
    )
    assert sent.status_code == 202, sent.text
    return wait(api, sent.headers["Location"])


def walk(api: httpx.Client, url: str, **params: Any) -> list[dict]:
    """Every item of a list, following the next links."""
    items: list[dict] = []
    page = api.get(url, params=params)
    while True:
        assert page.status_code == 200, page.text
        items += page.json()["results"]
        if not page.json()["next"]:
            return items
        page = api.get(page.json()["next"])


# -- the pipeline: preview an upload, review it, apply it --------------------------------------
def test_a_pipeline_previews_an_upload_reviews_it_and_applies_it(connect, clerk, products_job):
    api = connect(clerk)
    jobs = api.get("jobs/").json()
    assert [job["name"] for job in jobs["results"]] == ["products"]
    assert jobs["results"][0]["runs_url"].endswith("/api/sync/jobs/products/runs/")

    run = preview(api)
    assert run["status"] == "previewed" and run["dry_run"] and run["trigger"] == "api"
    assert run["user"] == "clerk" and run["source"] == "products.csv"
    assert run["column_mapping"] == {}  # read by the importer's columns, no one-off mapping
    assert run["counts"] == {"created": 1, "updated": 1, "deleted": 0, "unchanged": 2, "errors": 0}
    assert run["progress"]["rows_read"] == 4 and run["paths"]
    assert run["previewed_at"] and run["decision"]["can_apply"] is True
    assert set(run["links"]) == {"self", "changes", "errors", "apply", "discard"}
    assert not Product.objects.filter(sku="DRILL-1").exists()  # a preview writes nothing

    changes = walk(api, run["links"]["changes"], page_size=1)  # one a page, next links
    assert sorted((c["action"], c["key"][0]) for c in changes) == [
        ("create", "DRILL-1"),
        ("update", "LAMP-1"),
    ]
    (update,) = walk(api, run["links"]["changes"], action="update", field="price")
    assert update["before"]["price"] == "1.00" and update["after"]["price"] == "2.00"
    assert update["changed_fields"] == ["price"]
    assert [c["key"] for c in walk(api, run["links"]["changes"], search="drill")] == [["DRILL-1"]]
    assert walk(api, run["links"]["errors"]) == []
    assert api.get("jobs/products/").json()["last_run"]["id"] == run["id"]

    applied = api.post(run["links"]["apply"], json={})
    assert applied.status_code == 202, applied.text
    done = wait(api, run["links"]["self"], until="finished")
    assert done["status"] == "succeeded", done["error"]
    assert Product.objects.get(sku="LAMP-1").price == Decimal("2.00")
    assert Product.objects.filter(sku="DRILL-1").exists()
    assert api.post(run["links"]["self"] + "apply/", json={}).status_code == 409  # done once


def test_a_run_straight_through_from_an_upload_and_the_jobs_runs(connect, clerk, products_job):
    api = connect(clerk)
    sent = api.post("jobs/products/runs/", files={"file": ("day2.csv", GOOD)})
    assert sent.status_code == 202, sent.text
    run = wait(api, sent.headers["Location"], until="finished")
    assert run["status"] == "succeeded" and not run["dry_run"], run["error"]
    assert Product.objects.filter(sku="DRILL-1").exists()
    listed = api.get("jobs/products/runs/").json()["results"]
    assert [r["id"] for r in listed] == [run["id"]]


def test_a_preview_with_row_errors_is_applied_only_past_them_with_the_permission(
    connect, django_user_model, clerk, products_job
):
    api = connect(clerk)
    run = preview(
        api,
        csv_file(
            "LAMP-1,LAMP-1,2.00,1,,1",
            "BAD-1,Bad,oops,1,,1",
            "LAMP-2,LAMP-2,1.00,1,,1",
            "SAW-1,SAW-1,5.00,1,,1",
        ),
    )
    assert run["counts"]["errors"] == 1 and run["decision"]["blocked_by_errors"]
    (error,) = walk(api, run["links"]["errors"])
    assert error["row"] == 3 and error["column"] == "price" and error["value"] == "oops"
    assert error["raw"]["sku"] == "BAD-1"

    blocked = api.post(run["links"]["apply"], json={})
    assert blocked.status_code == 409 and "skip_errors" in blocked.json()["detail"]
    refused = api.post(run["links"]["apply"], json={"skip_errors": True})
    assert refused.status_code == 403
    assert "djsync.apply_skipping_errors" in refused.json()["detail"]
    assert SyncRun.objects.get(pk=run["id"]).status == "previewed"  # kept, nothing written

    clerk.user_permissions.add(Permission.objects.get(codename="apply_skipping_errors"))
    applied = api.post(run["links"]["apply"], json={"skip_errors": True})
    assert applied.status_code == 202, applied.text
    done = wait(api, run["links"]["self"], until="finished")
    assert done["status"] == "succeeded" and done["options"]["on_row_error"] == "skip"
    assert Product.objects.get(sku="LAMP-1").price == Decimal("2.00")
    assert not Product.objects.filter(sku="BAD-1").exists()


def test_a_delete_past_the_guard_needs_force_its_permission_and_the_count(
    connect, django_user_model, products_job
):
    SyncJob.objects.filter(pk=products_job.pk).update(allow_delete=True)
    user = make_user(django_user_model, "boss", [*CLERK, "djsync.force_delete_guard"])
    api = connect(user)
    run = preview(api, csv_file("LAMP-1,LAMP-1,1.00,1,,1"))  # 2 of 3 go: past 50%
    assert run["decision"]["deletes_going"] == 2
    assert api.post(run["links"]["apply"], json={}).status_code == 409
    wrong = api.post(run["links"]["apply"], json={"force": True, "confirm": 1})
    assert wrong.status_code == 400 and "2" in wrong.json()["confirm"][0]
    assert api.post(run["links"]["apply"], json={"force": True, "confirm": 2}).status_code == 202
    assert wait(api, run["links"]["self"], until="finished")["status"] == "succeeded"
    assert list(Product.objects.values_list("sku", flat=True)) == ["LAMP-1"]


def test_a_stale_preview_is_a_conflict_and_writes_nothing(connect, clerk, products_job):
    api = connect(clerk)
    run = preview(api)
    Product.objects.filter(sku="LAMP-1").update(price=Decimal("7.00"))  # moved meanwhile
    answer = api.post(run["links"]["apply"], json={})
    assert answer.status_code == 409, answer.text
    assert answer.json()["run"]["status"] == "failed" and answer.json()["detail"]
    assert Product.objects.get(sku="LAMP-1").price == Decimal("7.00")
    assert not Product.objects.filter(sku="DRILL-1").exists()


def test_a_discarded_preview_is_neither_applied_nor_discarded_again(connect, clerk, products_job):
    api = connect(clerk)
    run = preview(api)
    discarded = api.post(run["links"]["discard"])
    assert discarded.status_code == 200 and discarded.json()["status"] == "discarded"
    assert api.post(run["links"]["discard"]).status_code == 409
    assert api.post(run["links"]["apply"], json={}).status_code == 409
    assert not Product.objects.filter(sku="DRILL-1").exists()
    assert not list(upload_root().glob("djsync-*"))  # its upload is gone


def test_a_preview_of_the_jobs_own_source_with_options(connect, clerk, products_job, write_csv):
    SyncJob.objects.filter(pk=products_job.pk).update(source={"path": "own.csv"})
    Path(write_csv([], name="own.csv")).write_bytes(GOOD)
    api = connect(clerk)
    sent = api.post("jobs/products/runs/", json={"dry_run": True, "create": False})
    assert sent.status_code == 202, sent.text
    run = wait(api, sent.headers["Location"])
    assert run["status"] == "previewed" and run["options"] == {"create": False}
    assert run["counts"]["created"] == 0 and run["counts"]["updated"] == 1


def test_a_queued_run_is_cancelled_once(connect, clerk, products_job):
    run = SyncRun.objects.create(job=products_job, trigger="api", user=clerk, dry_run=True)
    api = connect(clerk)
    assert api.get(f"runs/{run.pk}/").json()["links"]["cancel"].endswith(f"/runs/{run.pk}/cancel/")
    answer = api.post(f"runs/{run.pk}/cancel/")
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    again = api.post(f"runs/{run.pk}/cancel/")
    assert again.status_code == 409 and again.json()["detail"]


def test_a_working_run_has_an_estimate_and_a_finished_one_none(connect, clerk, products_job):
    """A pipeline polling a run reads how far it is and about how long is left, as the
    admin's progress shows it; the estimate goes when the run stops working."""
    now = time.time()
    recorded = {
        **snapshot("reading", now - 10, done=250_000, total=1_000_000, unit="bytes", rows=5000),
        "at": round(now, 3),  # 10 s after it began
    }
    run = SyncRun.objects.create(
        job=products_job, trigger="api", user=clerk, status="reading", progress=recorded
    )
    api = connect(clerk)
    estimate = api.get(f"runs/{run.pk}/").json()["estimate"]
    assert estimate["phase"] == "reading" and estimate["unit"] == "bytes"
    assert (estimate["done"], estimate["total"], estimate["percent"]) == (250_000, 1_000_000, 25.0)
    assert estimate["rows"] == 5000 and estimate["rate"] == 500.0  # rows a second
    # A quarter read in 10 s: about 30 s left, less the time since the record.
    assert 0 < estimate["remaining"] <= 30
    assert "(25.0%), 5,000 rows, 500 rows/s, about" in estimate["text"]
    french = api.get(f"runs/{run.pk}/", headers={"Accept-Language": "fr"}).json()["estimate"]
    assert "(25,0%)" in french["text"] and "environ" in french["text"]
    assert french["percent"] == 25.0  # numbers stay numbers

    # An apply that recorded nothing yet: its total is the plan's changes, no time left yet.
    SyncRun.objects.filter(pk=run.pk).update(
        status="applying", progress={}, created=3, updated=1, rows_applied=0
    )
    applying = api.get(f"runs/{run.pk}/").json()["estimate"]
    assert (applying["done"], applying["total"], applying["unit"]) == (0, 4, "changes")
    assert applying["remaining"] is None

    SyncRun.objects.filter(pk=run.pk).update(status="succeeded", progress=recorded)
    assert api.get(f"runs/{run.pk}/").json()["estimate"] is None
    queued = SyncRun.objects.create(job=products_job, trigger="api", user=clerk)
    assert api.get(f"runs/{queued.pk}/").json()["estimate"] is None


# -- who may do what -------------------------------------------------------------------------
def test_no_credentials_or_a_bad_token_is_401(connect, base, products_job):
    anonymous = connect(None)
    answer = anonymous.get("jobs/")
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Token"
    assert answer.json()["detail"]
    bad = httpx.get(base + "jobs/", headers={"Authorization": "Token nope"})
    assert bad.status_code == 401
    assert anonymous.post("jobs/products/runs/", json={"dry_run": True}).status_code == 401
    assert not SyncRun.objects.exists()


def test_the_admins_permissions_apply(connect, django_user_model, clerk, products_job):
    outsider = connect(make_user(django_user_model, "outsider", CLERK, is_staff=False))
    assert outsider.get("jobs/").status_code == 403  # not staff: not in the admin either
    bare = connect(make_user(django_user_model, "bare", []))
    answer = bare.get("jobs/")
    assert answer.status_code == 403 and answer.json()["missing_permissions"]
    assert bare.post("jobs/products/runs/", json={"dry_run": True}).status_code == 403

    viewer = connect(make_user(django_user_model, "viewer", CLERK[:4]))  # no add/change
    run = preview(connect(clerk))
    assert viewer.get(f"runs/{run['id']}/").status_code == 200
    refused = viewer.post("jobs/products/runs/", json={})  # a real run writes
    assert refused.status_code == 403
    assert "testapp.add_product" in refused.json()["missing_permissions"]
    forced = viewer.post("jobs/products/runs/", json={"dry_run": True, "force": True})
    assert forced.json()["missing_permissions"] == ["djsync.force_delete_guard"]
    loose = viewer.post("jobs/products/runs/", json={"dry_run": True, "delete_guard": 0.9})
    assert loose.status_code == 403  # a higher guard than the job's is a way past it
    assert (
        viewer.post("jobs/products/runs/", json={"dry_run": True, "max_create": 5}).status_code
        == 202
    )


def test_another_users_preview_is_seen_but_not_decided(
    connect, django_user_model, clerk, products_job
):
    run = preview(connect(clerk))
    other = make_user(django_user_model, "other", CLERK)
    api = connect(other)
    assert api.get(f"runs/{run['id']}/").json()["decision"]["not_yours"] is True
    for action in ("apply", "discard"):
        answer = api.post(f"runs/{run['id']}/{action}/", json={})
        assert answer.status_code == 403, answer.text
        assert answer.json()["missing_permissions"] == ["djsync.apply_any_preview"]
    blind = connect(make_user(django_user_model, "blind", CLERK[:3]))  # no view_product
    assert blind.get(f"runs/{run['id']}/").status_code == 403
    assert blind.get(f"runs/{run['id']}/changes/").status_code == 403
    assert SyncRun.objects.get(pk=run["id"]).status == "previewed"


def test_a_session_works_with_its_csrf_token(live_server, base, clerk, products_job):
    with httpx.Client(base_url=live_server.url, timeout=60, follow_redirects=True) as browser:
        browser.get("/admin/login/")
        token = browser.cookies["csrftoken"]
        browser.post(
            "/admin/login/",
            data={"username": "clerk", "password": "pw-clerk", "csrfmiddlewaretoken": token},
            headers={"Referer": f"{live_server.url}/admin/login/"},
        )
        assert browser.get("/api/sync/jobs/").status_code == 200
        without = browser.post("/api/sync/jobs/products/runs/", json={"dry_run": True})
        assert without.status_code == 403 and "CSRF" in without.json()["detail"]
        token = browser.cookies["csrftoken"]
        sent = browser.post(
            "/api/sync/jobs/products/runs/",
            json={"dry_run": True},
            headers={"X-CSRFToken": token, "Referer": f"{live_server.url}/"},
        )
        assert sent.status_code == 202, sent.text


def test_a_token_from_drf_create_token_works(connect, base, clerk, products_job):
    out = io.StringIO()
    call_command("drf_create_token", "clerk", stdout=out)
    key = out.getvalue().split()[2]
    answer = httpx.get(base + "jobs/", headers={"Authorization": f"Token {key}"})
    assert answer.status_code == 200


# -- hostile requests ---------------------------------------------------------------------------
def test_bad_ids_names_and_paging_are_clear_4xx(connect, clerk, products_job):
    api = connect(clerk)
    for bad in ("abc", "-1", "0", "1.5", "9" * 19, "9" * 400, "%00"):
        answer = api.get(f"runs/{bad}/")
        assert answer.status_code == 404, (bad, answer.text)
        assert answer.headers["content-type"] == "application/json"
    assert api.get("jobs/nope/").status_code == 404
    assert api.post("jobs/nope/runs/", json={}).status_code == 404
    run = preview(api)
    arabic = str(run["id"]).translate({ord(str(d)): chr(0x660 + d) for d in range(10)})
    assert api.get(f"runs/{arabic}/").status_code == 404  # digits, but not the run's
    changes = f"runs/{run['id']}/changes/"
    for params in ({"page_size": 10**9}, {"page_size": 0}, {"page_size": "x"}):
        answer = api.get(changes, params=params)
        assert answer.status_code == 400 and "API_MAX_PAGE_SIZE" in answer.text
    assert api.get(changes, params={"page_size": 1000}).status_code == 200
    assert api.get(changes, params={"action": "drop"}).status_code == 400
    assert api.get(changes, params={"field": "password"}).status_code == 400
    assert api.get(changes, params={"search": "x" * 201}).status_code == 400
    assert api.get(changes, params={"cursor": "garbage"}).status_code == 404


def test_bad_options_and_files_are_refused_before_a_run_exists(connect, clerk, products_job):
    api = connect(clerk)
    for body in (
        {"dry_run": True, "max_create": -1},
        {"dry_run": True, "delete_guard": 3},
        {"dry_run": True, "on_row_error": "ignore"},
        {"dry_run": True, "max_crate": 5},  # misspelt: refused, not ignored
        [1, 2],
    ):
        answer = api.post("jobs/products/runs/", json=body)
        assert answer.status_code == 400, (body, answer.text)
    assert "max_crate" in api.post("jobs/products/runs/", json={"max_crate": 5}).json()
    noext = api.post(
        "jobs/products/runs/", data={"dry_run": "true"}, files={"file": ("data", GOOD)}
    )
    assert noext.status_code == 400 and "format" in noext.json()
    assert api.post("jobs/products/runs/", json={"format": "csv"}).status_code == 400
    bad_json = api.post(
        "jobs/products/runs/", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert not SyncRun.objects.exists()


def test_oversized_bodies_are_refused_unread(connect, clerk, products_job, settings):
    settings.DJSYNC = {**settings.DJSYNC, "MAX_UPLOAD_SIZE": 1000}
    api = connect(clerk)
    big_json = api.post("jobs/products/runs/", json={"dry_run": True, "pad": "x" * 100_000})
    assert big_json.status_code == 413 and "at most" in big_json.json()["detail"]
    past_length = api.post(
        "jobs/products/runs/", data={"dry_run": "true"}, files={"file": ("big.csv", b"x" * 90_000)}
    )
    assert past_length.status_code == 413 and "MAX_UPLOAD_SIZE" in past_length.json()["detail"]
    streamed = api.post(  # within the form's overhead, past the limit: stopped while read
        "jobs/products/runs/", data={"dry_run": "true"}, files={"file": ("big.csv", b"x" * 5000)}
    )
    assert streamed.status_code == 413 and "MAX_UPLOAD_SIZE" in streamed.json()["detail"]
    assert api.post("runs/1/apply/", content=b"x" * 100_000).status_code == 413
    assert not SyncRun.objects.exists()
    assert not list(upload_root().glob("djsync-*"))


# -- the schema, and the app without the extra ------------------------------------------------
def test_the_openapi_schema_is_served_and_valid(connect, base):
    from drf_spectacular.validation import validate_schema

    answer = httpx.get(base + "schema/")  # no credentials needed
    assert answer.status_code == 200, answer.text
    schema = answer.json()
    yaml = httpx.get(base + "schema/", params={"format": "yaml"})
    assert yaml.status_code == 200 and yaml.text.startswith("openapi: 3")
    validate_schema(schema)
    assert schema["info"]["title"] == "djsync API"
    assert set(schema["paths"]) == {
        "/api/sync/jobs/",
        "/api/sync/jobs/{name}/",
        "/api/sync/jobs/{name}/runs/",
        "/api/sync/runs/{run_id}/",
        "/api/sync/runs/{run_id}/changes/",
        "/api/sync/runs/{run_id}/errors/",
        "/api/sync/runs/{run_id}/apply/",
        "/api/sync/runs/{run_id}/discard/",
        "/api/sync/runs/{run_id}/cancel/",
    }
    post = schema["paths"]["/api/sync/jobs/{name}/runs/"]["post"]
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert "tokenAuth" in schema["components"]["securitySchemes"]


WITHOUT_DRF = """
import sys
sys.modules["rest_framework"] = None  # not installed
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=[
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "djsync",
    ],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
)
django.setup()
import djsync.admin, djsync.views, djsync.queue  # the app works without the extra
try:
    import djsync.api.urls
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_without_the_extra_the_api_says_what_to_install():
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_DRF], capture_output=True, text=True, cwd=root, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ImproperlyConfigured"), done.stdout
    assert 'pip install "djsync[api]"' in done.stdout


# -- languages ----------------------------------------------------------------------------------
def test_the_api_answers_in_the_requests_language(connect, django_user_model, clerk, products_job):
    """With LocaleMiddleware, Accept-Language picks the messages' language; the JSON keys,
    field names, codes and status codes stay as they are."""
    french = {"Accept-Language": "fr"}
    bare = connect(make_user(django_user_model, "bare", []))
    refused = bare.get("jobs/", headers=french)
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "Lister les tâches demande djsync.view_syncjob.",
        "missing_permissions": ["djsync.view_syncjob"],
    }
    assert bare.get("jobs/").json()["detail"] == "Listing jobs needs djsync.view_syncjob."
    assert connect(None).get("jobs/", headers=french).json()["detail"] == (
        "Informations d'authentification non fournies."  # Django REST framework's own
    )

    api = connect(clerk)
    misspelt = api.post("jobs/products/runs/", json={"max_crate": 5}, headers=french)
    assert misspelt.status_code == 400
    assert misspelt.json()["max_crate"][0].startswith("Champ inconnu ; champs connus : dry_run")
    missing = api.get("runs/abc/", headers=french)
    assert missing.status_code == 404 and missing.json() == {"detail": "Aucune exécution n° abc."}
    assert not SyncRun.objects.exists()

    sent = api.post("jobs/products/runs/", files={"file": ("day2.csv", GOOD)}, headers=french)
    assert sent.status_code == 202, sent.text
    run = wait(api, sent.headers["Location"], until="finished")
    assert run["status"] == "succeeded", run["error"]  # codes, not words
    again = api.post(run["links"]["self"] + "apply/", json={}, headers=french)
    assert again.status_code == 409
    assert again.json() == {
        "detail": "Seule une exécution en aperçu peut être appliquée ; celle-ci est réussie."
    }
    changes = api.get(run["links"]["changes"], params={"page_size": 0}, headers=french)
    assert changes.status_code == 400
    assert changes.json()["page_size"][0].startswith("Un nombre entier de 1 à 1000")
    described = api.get(run["links"]["self"], headers=french).json()
    assert set(described) == set(api.get(run["links"]["self"]).json())
    assert described["summary"].startswith("products: réussie")


def test_a_french_site_answers_in_french_unless_asked_otherwise(
    connect, django_user_model, settings, products_job
):
    settings.LANGUAGE_CODE = "fr"
    bare = connect(make_user(django_user_model, "bare", []))
    assert bare.get("jobs/").json()["detail"] == "Lister les tâches demande djsync.view_syncjob."
    english = bare.get("jobs/", headers={"Accept-Language": "en"}).json()["detail"]
    assert english == "Listing jobs needs djsync.view_syncjob."


def test_the_schema_in_french(connect, base):
    english = httpx.get(base + "schema/", params={"format": "json"}).json()
    french = httpx.get(
        base + "schema/", params={"format": "json"}, headers={"Accept-Language": "fr"}
    ).json()
    assert french["paths"].keys() == english["paths"].keys()
    apply = next(p["post"] for name, p in french["paths"].items() if name.endswith("/apply/"))
    assert apply["summary"] == "Appliquer un aperçu"
    assert french["info"]["description"].startswith("Tâches, exécutions, aperçus")
    by_lang = httpx.get(base + "schema/", params={"format": "json", "lang": "fr"}).json()
    assert by_lang["info"]["description"] == french["info"]["description"]


def test_partitions_are_checked_and_a_split_run_is_queued(connect, clerk, products_job):
    api = connect(clerk)
    for body in ({"partitions": 0}, {"partitions": 65}, {"partitions": "many"}):
        answer = api.post("jobs/products/runs/", json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert list(answer.json()) == ["partitions"], answer.text
    assert not SyncRun.objects.exists()
    answer = api.post(
        "jobs/products/runs/", data={"partitions": "2"}, files={"file": ("p.csv", GOOD)}
    )
    if connection.vendor != "postgresql":  # refused as runsync --partitions 2 refuses it
        assert answer.status_code == 400, answer.text
        assert (
            "partitions need PostgreSQL (the target database is sqlite)"
            in (answer.json()["partitions"][0])
        )
        assert not SyncRun.objects.exists()
        return
    assert answer.status_code == 202, answer.text
    run = wait(api, answer.headers["Location"])
    assert run["status"] == "succeeded", run
    assert Product.objects.filter(sku="DRILL-1").exists()
    # A file this small is read in one process, and the run says why.
    assert any("the file is too small to split" in w for w in run["warnings"]), run

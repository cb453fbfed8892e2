"""Hostile admin requests (issue 9): users with too few permissions, crafted POSTs, other
users' previews, oversized and oddly named uploads. Each asserts the answer and that
nothing was written to the target, to the jobs or runs, or to the upload storage."""

from __future__ import annotations

import csv
import html
import io
import json
import os
import stat
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import QueryDict
from django.test import Client
from django.test.client import encode_multipart
from django.urls import reverse

from djsync.admin import source_fields_changed
from djsync.models import SyncChange, SyncJob, SyncRowError, SyncRun
from tests.testapp.models import Category, Product

HEADER = ["sku", "name", "price", "qty", "updated", "active"]
PREVIEW = ("djsync.add_syncrun", "djsync.view_syncrun", "testapp.view_product")
WRITE = ("testapp.add_product", "testapp.change_product", "testapp.delete_product")
JOBS = ("djsync.view_syncjob", "djsync.change_syncjob", "djsync.add_syncjob")
BOUNDARY = "djsyncBoundary"
LIMIT = 10_000


def csv_bytes(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADER)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def csv_upload(rows: list[list[str]], name: str = "products.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, csv_bytes(rows), content_type="text/csv")


def run_url(run: SyncRun, name: str = "change") -> str:
    return reverse(f"admin:djsync_syncrun_{name}", args=[run.pk])


def upload_url(job: SyncJob) -> str:
    return reverse("admin:djsync_syncjob_upload", args=[job.pk])


IMPORT_URL = "admin:testapp_product_sync_import"


def stored(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


class CountingStream:
    """A request body that records how much of it the server read."""

    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.buffer.read(size)
        self.read_bytes += len(chunk)
        return chunk

    def readline(self, size: int = -1) -> bytes:
        line = self.buffer.readline(size)
        self.read_bytes += len(line)
        return line


class Unreadable:
    """A request body the server must not read at all."""

    def read(self, *args: Any) -> bytes:
        raise AssertionError("the body was read")

    readline = read


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def upload_root(settings, tmp_path: Path) -> Path:
    root = tmp_path / "uploads"
    settings.DJSYNC = {**settings.DJSYNC, "UPLOAD_ROOT": str(root)}
    return root


@pytest.fixture
def job(make_job) -> SyncJob:
    return make_job("test_products", name="products", source={"path": "prices.csv"})


@pytest.fixture
def lamp(db) -> Product:
    return Product.objects.create(sku="A1", name="Lamp", price=Decimal("1.50"), qty=3)


@pytest.fixture
def make_user(django_user_model):
    count = iter(range(1000))

    def make(*perms: str, staff: bool = True, name: str | None = None):
        user = django_user_model.objects.create_user(
            name or f"user{next(count)}", password=None, is_staff=staff
        )
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        return user

    return make


@pytest.fixture
def client_for(make_user):
    def login(user: Any = None, *perms: str, csrf: bool = False) -> Client:
        client = Client(enforce_csrf_checks=csrf)
        client.force_login(user if user is not None else make_user(*perms))
        return client

    return login


def previewed_run(job: SyncJob, user: Any = None, *, upload: str = "", **counts: int) -> SyncRun:
    """A previewed run of one create, one update and one delete (no stored plan needed:
    the refused requests never reach it)."""
    values = {"created": 1, "updated": 1, "deleted": 1, **counts}
    return SyncRun.objects.create(
        job=job,
        user=user,
        trigger="admin",
        dry_run=True,
        status="previewed",
        upload=upload,
        **values,
    )


def snapshot() -> tuple[Any, ...]:
    """Everything a refused request must leave as it was."""
    return (
        list(Product.objects.order_by("pk").values_list("sku", "name", "price", "qty")),
        list(Category.objects.values_list("code", flat=True)),
        list(SyncJob.objects.order_by("pk").values_list("name", "importer", "source", "target")),
        list(SyncRun.objects.order_by("pk").values_list("pk", "status", "upload", "user_id")),
        SyncChange.objects.count(),
    )


# -- what a job reads and writes --------------------------------------------------------
def job_post(job: SyncJob, **overrides: Any) -> dict[str, Any]:
    data = {
        "name": job.name,
        "description": "edited",
        "importer": job.importer,
        "source": json.dumps(job.source),
        "target": json.dumps(job.target),
        "enabled": "on",
        "allow_create": "unknown",
        "allow_update": "unknown",
        "allow_delete": "unknown",
        "on_row_error": "",
        "schedule": "",
        "notify_on_failure": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


CRAFTED = [
    pytest.param({"source": '{"path": "other.csv"}'}, "source", id="source-path"),
    pytest.param({"source": '{"kind": "sql", "query": "users"}'}, "source", id="source-kind"),
    pytest.param({"source": "{not json"}, "source", id="source-unparsable"),
    pytest.param({"importer": "test_categories"}, "importer", id="importer"),
    pytest.param(
        {"target": '{"kind": "file", "path": "/etc/cron.d/x"}'}, "target", id="target-file"
    ),
]


@pytest.mark.parametrize(("change", "field"), CRAFTED)
def test_a_crafted_post_changing_what_a_job_reads_is_refused(job, client_for, change, field):
    client = client_for(None, *JOBS, *PREVIEW)
    before = snapshot()
    url = reverse("admin:djsync_syncjob_change", args=[job.pk])
    response = client.post(url, job_post(job, **change))
    assert response.status_code == 403
    assert snapshot() == before  # nothing saved, not even the description
    assert SyncJob.objects.get().description == ""
    assert source_fields_changed(QueryDict(urlencode(change)), job) == [field]


def test_without_the_permission_source_fields_are_read_only(job, client_for):
    client = client_for(None, *JOBS)
    url = reverse("admin:djsync_syncjob_change", args=[job.pk])
    page = client.get(url).content.decode()
    assert 'name="source"' not in page and 'name="importer"' not in page
    assert 'name="target"' not in page and 'name="description"' in page
    assert "prices.csv" in page  # shown, not editable
    # The form as the browser sends it (no source fields) saves the other fields.
    data = job_post(job, importer=None, source=None, target=None, description="Nightly")
    assert client.post(url, data).status_code == 302
    job.refresh_from_db()
    assert job.description == "Nightly" and job.source == {"path": "prices.csv"}


def test_with_the_permission_the_source_can_change(job, client_for):
    client = client_for(None, *JOBS, "djsync.change_syncjob_source")
    url = reverse("admin:djsync_syncjob_change", args=[job.pk])
    assert 'name="source"' in client.get(url).content.decode()
    response = client.post(url, job_post(job, source='{"path": "other.csv"}'))
    assert response.status_code == 302, response.content.decode()[:2000]
    job.refresh_from_db()
    assert job.source == {"path": "other.csv"}


@pytest.mark.parametrize("source", ['{"path": "prices.csv"}', "{}"])
def test_adding_a_job_needs_the_source_permission(db, client_for, source):
    client = client_for(None, *JOBS)
    url = reverse("admin:djsync_syncjob_add")
    assert client.get(url).status_code == 403
    data = job_post(SyncJob(name="new", importer="test_products"), source=source)
    assert client.post(url, data).status_code == 403
    assert not SyncJob.objects.exists()


def test_save_as_new_cannot_copy_a_job_with_another_source(job, client_for):
    """``_saveasnew`` turns a change into an add, which needs the source permission."""
    client = client_for(None, *JOBS)
    before = snapshot()
    url = reverse("admin:djsync_syncjob_change", args=[job.pk])
    data = job_post(job, importer=None, source=None, target=None, name="copy", _saveasnew="1")
    assert client.post(url, data).status_code == 403
    data = job_post(job, name="copy", source='{"path": "x.csv"}', _saveasnew="1")
    assert client.post(url, data).status_code == 403
    assert snapshot() == before


def test_target_options_are_checked(job, client_for):
    client = client_for(None, *JOBS, "djsync.change_syncjob_source")
    url = reverse("admin:djsync_syncjob_change", args=[job.pk])
    response = client.post(url, job_post(job, target='{"kind": "file", "shell": "rm"}'))
    assert response.status_code == 200
    assert "Unknown target options: shell" in html.unescape(response.content.decode())
    job.refresh_from_db()
    assert job.target == {}


# -- a preview has an owner --------------------------------------------------------------
@pytest.mark.parametrize("action", ["apply", "discard"])
def test_someone_elses_preview_is_not_applied_or_discarded(
    job, lamp, make_user, client_for, upload_root, action
):
    owner = make_user(*PREVIEW, *WRITE)
    upload_root.mkdir()
    (upload_root / "djsync-0123456789abcdef0123456789abcdef.csv").write_bytes(b"sku\nA1\n")
    run = previewed_run(job, owner, upload="djsync-0123456789abcdef0123456789abcdef.csv")
    other = client_for(None, *PREVIEW, *WRITE)
    before = snapshot()
    assert other.post(run_url(run, action)).status_code == 403
    assert snapshot() == before
    assert stored(upload_root) == ["djsync-0123456789abcdef0123456789abcdef.csv"]
    page = other.get(run_url(run)).content.decode()
    assert 'id="djsync-not-yours"' in page and owner.username in page
    assert "djsync-apply" not in page and "djsync-discard" not in page


def test_a_run_started_by_a_command_has_no_owner(job, lamp, client_for):
    run = previewed_run(job, None)
    client = client_for(None, *PREVIEW, *WRITE)
    before = snapshot()
    assert client.post(run_url(run, "apply")).status_code == 403
    assert client.post(run_url(run, "discard")).status_code == 403
    assert snapshot() == before
    assert "nobody (a command or a schedule)" in client.get(run_url(run)).content.decode()


def test_someone_elses_run_is_not_cancelled(job, make_user, client_for):
    run = SyncRun.objects.create(
        job=job, user=make_user(*PREVIEW), trigger="admin", status="queued", dry_run=True
    )
    client = client_for(None, *PREVIEW, *WRITE)
    assert client.post(run_url(run, "cancel")).status_code == 403
    run.refresh_from_db()
    assert run.status == "queued" and not run.cancel_requested
    assert 'id="djsync-cancel"' not in client.get(run_url(run, "progress")).content.decode()


def test_apply_any_preview_lets_another_user_decide(job, lamp, make_user, client_for):
    run = previewed_run(job, make_user(*PREVIEW, *WRITE), created=0, deleted=0)
    client = client_for(None, *PREVIEW, *WRITE, "djsync.apply_any_preview")
    assert 'id="djsync-discard"' in client.get(run_url(run)).content.decode()
    assert client.post(run_url(run, "discard")).status_code == 302
    run.refresh_from_db()
    assert run.status == "discarded"


def test_the_owner_decides_but_still_needs_the_target_permissions(job, lamp, make_user):
    owner = make_user(*PREVIEW, "testapp.change_product")
    run = previewed_run(job, owner)  # creates and deletes too
    client = Client()
    client.force_login(owner)
    before = snapshot()
    assert client.post(run_url(run, "apply")).status_code == 403
    assert snapshot() == before
    page = client.get(run_url(run)).content.decode()
    assert "testapp.add_product, testapp.delete_product" in page and "(you)" in page


# -- every URL, a user lacking each permission -------------------------------------------
#: URL name → (method, the permissions it needs).
NEEDS = {
    "upload": ("get", {"djsync.add_syncrun", "djsync.view_syncrun", "testapp.view_product"}),
    "import": ("get", {"djsync.add_syncrun", "djsync.view_syncrun", "testapp.view_product"}),
    "change": ("get", {"djsync.view_syncrun", "testapp.view_product"}),
    "progress": ("get", {"djsync.view_syncrun", "testapp.view_product"}),
    "status": ("get", {"djsync.view_syncrun", "testapp.view_product"}),
    "errors_csv": ("get", {"djsync.view_syncrun", "testapp.view_product"}),
    "apply": ("post", {*PREVIEW, *WRITE}),
    "discard": ("post", set(PREVIEW)),
    "cancel": ("post", set(PREVIEW)),
}


@pytest.mark.parametrize("missing", [*PREVIEW, *WRITE])
def test_every_url_with_one_permission_missing(job, lamp, make_user, missing):
    user = make_user(*(p for p in (*PREVIEW, *WRITE) if p != missing))
    client = Client()
    client.force_login(user)
    for name, (method, needs) in NEEDS.items():
        run = previewed_run(job, user)
        if name == "cancel":
            SyncRun.objects.filter(pk=run.pk).update(status="queued")
        if name == "upload":
            url = upload_url(job)
        elif name == "import":
            url = reverse(IMPORT_URL)
        else:
            url = run_url(run, name)
        before = snapshot()
        response = getattr(client, method)(url)
        if missing in needs:
            assert response.status_code == 403, (name, missing)
            assert snapshot() == before, name
        else:
            assert response.status_code in (200, 302), (name, missing, response.status_code)


def test_the_changelist_actions_need_their_permissions(job, lamp, client_for):
    client = client_for(None, "djsync.view_syncjob", "djsync.change_syncjob", *PREVIEW)
    before = snapshot()
    url = reverse("admin:djsync_syncjob_changelist")
    response = client.post(url, {"action": "run_now", "_selected_action": [job.pk]}, follow=True)
    assert "You may not run products: testapp.add_product" in response.content.decode()
    bare = client_for(None, "djsync.view_syncjob", "djsync.change_syncjob")
    response = bare.post(url, {"action": "preview_now", "_selected_action": [job.pk]}, follow=True)
    assert "You may not preview products." in response.content.decode()
    assert snapshot() == before


def test_export_actions_need_view_permission_on_the_model(lamp, client_for):
    """Django's view permission (or change, which implies it) on the model."""
    client = client_for(None, "testapp.add_product", "testapp.delete_product", *PREVIEW[:2])
    changelist = reverse("admin:testapp_product_changelist")
    assert client.get(changelist).status_code == 403
    export = reverse("admin:testapp_product_sync_export") + "?_djsync_format=csv"
    assert client.get(export).status_code == 403
    response = client.post(changelist, {"action": "djsync_export_csv", "_selected_action": ["1"]})
    assert response.status_code == 403
    viewer = client_for(None, "testapp.view_product")
    response = viewer.get(reverse("admin:testapp_product_sync_export") + "?_djsync_format=sh")
    assert response.status_code == 400 and b"cannot export to 'sh'" in response.content


def test_a_run_of_another_job_needs_that_jobs_target_permissions(make_job, make_user):
    categories = make_job("test_categories", name="cats")
    run = previewed_run(categories, None)
    user = make_user(*PREVIEW, *WRITE)  # everything on products, nothing on categories
    client = Client()
    client.force_login(user)
    SyncRun.objects.filter(pk=run.pk).update(user=user)
    before = snapshot()
    for name in ("change", "progress", "status", "errors_csv"):
        assert client.get(run_url(run, name)).status_code == 403, name
    for name in ("apply", "discard", "cancel"):
        assert client.post(run_url(run, name)).status_code == 403, name
    assert client.get(upload_url(categories)).status_code == 403
    assert snapshot() == before


@pytest.mark.parametrize("run_id", ["999999", "abc", "1%00", "-1"])
def test_an_unknown_run_id_is_not_found(admin_client, job, run_id):
    before = snapshot()
    for name in ("change", "progress", "apply", "errors_csv"):
        url = reverse("admin:djsync_syncrun_change", args=[1]).replace("/1/", f"/{run_id}/")
        url = url.replace("/change/", f"/{name}/" if name != "errors_csv" else "/row-errors.csv")
        if name == "change":
            response = admin_client.get(url)
            assert response.status_code in (302, 404), (url, response.status_code)
        else:
            method = admin_client.post if name == "apply" else admin_client.get
            assert method(url).status_code == 404, url
    assert snapshot() == before


@pytest.mark.parametrize("name", ["apply", "discard", "cancel"])
def test_post_only_endpoints_refuse_get(admin_client, job, lamp, name):
    run = previewed_run(job, None)
    before = snapshot()
    assert admin_client.get(run_url(run, name)).status_code == 403
    assert snapshot() == before


# -- CSRF --------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["job", "model"])
def test_an_upload_without_its_csrf_token_is_refused(job, make_user, upload_root, where):
    user = make_user(*PREVIEW, *WRITE)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    url = upload_url(job) if where == "job" else reverse(IMPORT_URL)
    data = {"file": csv_upload([["C1", "Cup", "3", "1", "", "yes"]]), "job": f"job:{job.pk}"}
    before = snapshot()
    response = client.post(url, data)
    assert response.status_code == 403 and b"CSRF" in response.content
    client.cookies["csrftoken"] = "a" * 32
    data["file"].seek(0)
    response = client.post(url, {**data, "csrfmiddlewaretoken": "b" * 32})
    assert response.status_code == 403 and b"CSRF" in response.content
    assert snapshot() == before and stored(upload_root) == []


def test_an_upload_with_its_csrf_token_goes_through(job, make_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user(*PREVIEW))
    page = client.get(upload_url(job)).content.decode()
    token = page.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    file = csv_upload([["C1", "Cup", "3", "1", "", "yes"]])
    response = client.post(upload_url(job), {"file": file, "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert SyncRun.objects.get().status in ("queued", "previewed")


# -- upload size: refused before reading, stopped while streaming --------------------------
def multipart(file: bytes, name: str = "products.csv", **fields: str) -> bytes:
    data = {**fields, "file": SimpleUploadedFile(name, file, content_type="text/csv")}
    return encode_multipart(BOUNDARY, data)


def raw_post(client: Client, url: str, body: bytes, **extra: Any):
    return client.generic(
        "POST", url, body, content_type=f"multipart/form-data; boundary={BOUNDARY}", **extra
    )


@pytest.fixture
def small_limit(settings, upload_root):
    settings.DJSYNC = {**settings.DJSYNC, "MAX_UPLOAD_SIZE": LIMIT}


def assert_nothing_stored(before: Any, upload_root: Path) -> None:
    assert snapshot() == before
    assert stored(upload_root) == []


@pytest.mark.parametrize("where", ["job", "model"])
def test_an_oversized_upload_is_refused_on_its_content_length(
    job, lamp, client_for, upload_root, small_limit, where
):
    client = client_for(None, *PREVIEW)
    url = upload_url(job) if where == "job" else reverse(IMPORT_URL)
    before = snapshot()
    # The body is never read: a body that cannot be read proves it.
    response = raw_post(client, url, b"x", CONTENT_LENGTH=str(250 * 1024 * 1024))
    response_body = html.unescape(response.content.decode())
    assert response.status_code == 413
    assert 'The upload is 250.0\xa0MB, larger than DJSYNC["MAX_UPLOAD_SIZE"] (9.8\xa0KB)' in (
        response_body
    )
    assert_nothing_stored(before, upload_root)


def test_the_content_length_check_comes_before_reading(job, client_for, small_limit):
    client = client_for(None, *PREVIEW)
    response = client.generic(
        "POST",
        upload_url(job),
        b"",
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
        CONTENT_LENGTH=str(LIMIT * 100),
        **{"wsgi.input": Unreadable()},
    )
    assert response.status_code == 413


def test_an_oversized_upload_is_stopped_while_it_streams(
    job, lamp, client_for, upload_root, small_limit
):
    """A Content-Length within the margin for the form's other fields, a file past the
    limit: the upload handler stops reading."""
    client = client_for(None, *PREVIEW)
    body = multipart(csv_bytes([["A1", "Lamp", "2", "3", "", "yes"]]) + b"#" * (73 * 1024))
    assert len(body) <= LIMIT + 64 * 1024  # passes the Content-Length check
    stream = CountingStream(body)
    before = snapshot()
    response = raw_post(client, upload_url(job), body, **{"wsgi.input": stream})
    assert response.status_code == 413
    page = html.unescape(response.content.decode())
    assert 'The file is larger than DJSYNC["MAX_UPLOAD_SIZE"] (9.8\xa0KB)' in page
    assert "nothing was stored" in page
    assert stream.read_bytes < len(body)  # the rest of the body was never read
    assert_nothing_stored(before, upload_root)


@pytest.mark.parametrize("length", ["", "abc", "-5"])
def test_an_upload_without_a_usable_content_length_is_refused(job, client_for, upload_root, length):
    client = client_for(None, *PREVIEW)
    before = snapshot()
    response = client.generic(
        "POST",
        upload_url(job),
        b"",
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
        CONTENT_LENGTH=length,
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input": Unreadable()},
    )
    assert response.status_code == 411
    assert "An upload needs a Content-Length header" in response.content.decode()
    assert_nothing_stored(before, upload_root)


def test_a_user_who_may_not_upload_is_refused_before_the_body_is_read(job, client_for):
    client = client_for(None, "djsync.view_syncrun", "testapp.view_product")
    before = snapshot()
    response = client.generic(
        "POST",
        upload_url(job),
        b"",
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
        CONTENT_LENGTH="1000",
        **{"wsgi.input": Unreadable()},
    )
    assert response.status_code == 403
    assert snapshot() == before


def test_a_file_just_under_the_limit_is_accepted(
    job, client_for, upload_root, small_limit, django_capture_on_commit_callbacks
):
    client = client_for(None, *PREVIEW)
    data = csv_bytes([["A1", "Lamp", "2", "3", "", "yes"]])
    data += b"\n" * (LIMIT - len(data))
    with django_capture_on_commit_callbacks(execute=True):
        response = raw_post(client, upload_url(job), multipart(data))
    assert response.status_code == 302
    assert SyncRun.objects.get().status == "previewed"


def test_too_many_files_in_one_upload_are_refused(job, client_for, upload_root):
    client = client_for(None, *PREVIEW)
    parts = {f"file{i}": SimpleUploadedFile(f"{i}.csv", b"sku\n") for i in range(120)}
    before = snapshot()
    response = raw_post(client, upload_url(job), encode_multipart(BOUNDARY, parts))
    assert response.status_code == 400  # Django's DATA_UPLOAD_MAX_NUMBER_FILES
    assert_nothing_stored(before, upload_root)


def test_a_malformed_body_is_refused(job, client_for, upload_root):
    client = client_for(None, *PREVIEW)
    before = snapshot()
    response = client.generic(
        "POST", upload_url(job), b"--x\r\nnot a part", content_type="multipart/form-data"
    )
    assert response.status_code == 400
    assert "The upload could not be read" in response.content.decode()
    assert_nothing_stored(before, upload_root)


# -- file names and options ------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "shown"),
    [
        pytest.param("../../x.csv", "x.csv", id="dot-dot"),
        pytest.param("..\\..\\windows.csv", "windows.csv", id="backslashes"),
        pytest.param("/etc/passwd.csv", "passwd.csv", id="absolute"),
        pytest.param("x\x00.sh.csv", "x.sh.csv", id="nul"),
        pytest.param("evil\u202egpj.csv", "evilgpj.csv", id="bidi-override"),
        pytest.param("a" * 5000 + ".csv", None, id="huge"),
    ],
)
def test_an_upload_name_never_reaches_the_storage(
    job, client_for, upload_root, tmp_path, name, shown, django_capture_on_commit_callbacks
):
    client = client_for(None, *PREVIEW)
    data = csv_bytes([["C1", "Cup", "3", "1", "", "yes"]])
    with django_capture_on_commit_callbacks(execute=True):
        response = raw_post(client, upload_url(job), multipart(data, name=name))
    assert response.status_code == 302, response.content.decode()[:1000]
    run = SyncRun.objects.get()
    assert run.status == "previewed", run.error
    files = stored(upload_root)
    assert len(files) == 1 and files[0].startswith("djsync-") and files[0].endswith(".csv")
    assert files[0] == run.upload
    if shown is not None:
        assert run.source_name == shown
    assert len(run.source_name) <= 255 and run.source_name.endswith(".csv")
    assert "\x00" not in run.source_name and "/" not in run.source_name
    assert not (tmp_path.parent / "x.csv").exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"format": "exe"}, "Select a valid choice. exe is not one", id="format"),
        pytest.param({"format": "csv/../../x"}, "Select a valid choice.", id="format-path"),
        pytest.param({"job": "job:999999"}, "Select a valid choice.", id="unknown-job"),
        pytest.param({"job": "importer:test_categories"}, "Select a valid choice.", id="importer"),
        pytest.param({"job": "job:abc"}, "Select a valid choice.", id="job-not-a-number"),
    ],
)
def test_a_choice_outside_the_list_is_refused(
    job, make_job, client_for, upload_root, fields, message
):
    make_job("test_categories", name="cats")
    client = client_for(None, *PREVIEW)
    before = snapshot()
    data = {"file": csv_upload([["C1", "Cup", "3", "1", "", "yes"]]), "job": f"job:{job.pk}"}
    response = client.post(reverse(IMPORT_URL), {**data, **fields})
    assert response.status_code == 200
    assert message in html.unescape(response.content.decode())
    assert_nothing_stored(before, upload_root)


def test_the_mixin_offers_no_job_of_another_model(job, make_job, client_for):
    cats = make_job("test_categories", name="cats")
    client = client_for(None, *PREVIEW)
    form = client.get(reverse(IMPORT_URL)).content.decode()
    assert f'value="job:{job.pk}"' in form and f'value="job:{cats.pk}"' not in form


# -- the row-errors CSV ----------------------------------------------------------------
def test_row_errors_csv_is_formula_neutralized(admin_client, job):
    run = previewed_run(job, None)
    values = ['=HYPERLINK("http://x")', "+1+2", "-2", "@SUM(A1)", "\tx", "\rx", "plain"]
    SyncRowError.objects.bulk_create(
        [
            SyncRowError(
                run=run,
                model="testapp.Product",
                row=i + 2,
                column="=col",
                message=value,
                value=value,
                key=[value],
                raw={"sku": value},
            )
            for i, value in enumerate(values)
        ]
    )
    response = admin_client.get(run_url(run, "errors_csv"))
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))[1:]
    for row, value in zip(rows, values, strict=True):
        # A plain signed number ("-2") is what a spreadsheet shows anyway: left as it is.
        expected = value if value in ("plain", "-2") else "'" + value
        assert row[1] == "'=col"
        assert row[2] == expected and row[3] == expected and row[4] == expected
        assert not row[5].startswith(("=", "+", "-", "@", "\t", "\r"))


# -- the upload storage --------------------------------------------------------------------
def test_uploads_are_private(job, client_for, upload_root, django_capture_on_commit_callbacks):
    client = client_for(None, *PREVIEW)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(upload_url(job), {"file": csv_upload([["C1", "Cup", "3", "1", "", "y"]])})
    (name,) = stored(upload_root)
    assert stat.S_IMODE(os.stat(upload_root).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(upload_root / name).st_mode) == 0o600


def test_clean_up_touches_only_djsyncs_own_names(job, upload_root, client_for):
    from datetime import timedelta

    from django.utils import timezone

    from djsync.uploads import expire_uploads

    upload_root.mkdir(mode=0o700)
    ours = upload_root / "djsync-0123456789abcdef0123456789abcdef.csv"
    foreign = ["report.csv", "0123456789abcdef0123456789abcdef.csv", "djsync-notours.csv"]
    for name in [ours.name, *foreign]:
        (upload_root / name).write_text("x")
    (upload_root / "sub").mkdir()
    assert expire_uploads(now=timezone.now() + timedelta(days=30)) == 1
    assert stored(upload_root) == sorted([*foreign, "sub"])


def test_a_storages_alias_is_used_when_the_project_defines_one(
    job, client_for, settings, tmp_path, upload_root, django_capture_on_commit_callbacks
):
    elsewhere = tmp_path / "project-storage"
    settings.STORAGES = {
        **settings.STORAGES,
        "djsync_uploads": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(elsewhere)},
        },
    }
    client = client_for(None, *PREVIEW)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(upload_url(job), {"file": csv_upload([["C1", "Cup", "3", "1", "", "y"]])})
    assert stored(upload_root) == [] and len(stored(elsewhere)) == 1


def test_the_default_upload_folder_is_inside_the_project(settings, tmp_path):
    from djsync.uploads import storage

    settings.DJSYNC = {}
    settings.BASE_DIR = tmp_path / "project"
    assert Path(storage().location) == tmp_path / "project" / "djsync-uploads"
    assert not str(storage().location).startswith("/tmp/djsync-uploads")

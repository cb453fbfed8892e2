"""The admin, through Django's test client: upload → progress → preview → apply or discard,
run history, the job admin, the model mixin, and who may do what."""

from __future__ import annotations

import csv
import html
import io
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.urls import reverse

from djsync.models import SyncChange, SyncJob, SyncRowError, SyncRun
from tests.testapp.models import Product

HEADER = ["sku", "name", "price", "qty", "updated", "active"]


def csv_upload(rows: list[list[str]], name: str = "products.csv") -> SimpleUploadedFile:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADER)
    writer.writerows(rows)
    return SimpleUploadedFile(name, buffer.getvalue().encode(), content_type="text/csv")


def run_url(run: SyncRun, name: str = "change") -> str:
    return reverse(f"admin:djsync_syncrun_{name}", args=[run.pk])


@pytest.fixture(autouse=True)
def upload_root(settings, tmp_path: Path) -> Path:
    root = tmp_path / "uploads"
    settings.DJSYNC = {**settings.DJSYNC, "UPLOAD_ROOT": str(root)}
    return root


@pytest.fixture
def job(make_job) -> SyncJob:
    return make_job("test_products", name="products")


@pytest.fixture
def lamp(db) -> Product:
    return Product.objects.create(sku="A1", name="Lamp", price=Decimal("1.50"), qty=3)


@pytest.fixture
def make_user(django_user_model):
    def make(*perms: str, staff: bool = True, name: str = "editor"):
        user = django_user_model.objects.create_user(name, password="pw", is_staff=staff)
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        return user

    return make


PREVIEW = ("djsync.add_syncrun", "djsync.view_syncrun", "testapp.view_product")
WRITE = ("testapp.add_product", "testapp.change_product", "testapp.delete_product")


@pytest.fixture
def client_for(make_user):
    def login(*perms: str, staff: bool = True) -> Client:
        client = Client()
        client.force_login(make_user(*perms, staff=staff))
        return client

    return login


def upload(client: Client, job: SyncJob, file: SimpleUploadedFile, capture, **data) -> SyncRun:
    """Post a file to the job's upload page, run the queued preview, return the run."""
    with capture(execute=True):
        response = client.post(
            reverse("admin:djsync_syncjob_upload", args=[job.pk]), {"file": file, **data}
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    run = SyncRun.objects.latest("pk")
    assert response["Location"] == f"{run_url(run, 'progress')}?step=preview"
    run.refresh_from_db()
    return run


# -- the whole flow --------------------------------------------------------------------
def test_upload_preview_apply(
    admin_client, job, lamp, upload_root, django_capture_on_commit_callbacks
):
    Product.objects.create(sku="Z9", name="Old", price=1, qty=1)
    file = csv_upload(
        [["A1", "Lamp", "1.75", "3", "", "yes"], ["B1", "Kite", "9", "1", "2026-03-01", "no"]]
    )
    run = upload(admin_client, job, file, django_capture_on_commit_callbacks)
    assert run.status == "previewed", run.error
    assert run.user.username == "admin" and run.trigger == "admin"
    assert run.source_name == "products.csv"
    assert len(list(upload_root.iterdir())) == 1  # kept privately until applied

    progress = admin_client.get(run_url(run, "progress") + "?step=preview")
    assert progress.status_code == 200
    assert run_url(run, "status") in progress.content.decode()
    status = admin_client.get(run_url(run, "status") + "?step=preview").json()
    assert status["done"] is True and status["status"] == "previewed"
    assert status["url"] == run_url(run)

    page = admin_client.get(run_url(run)).content.decode()
    assert '<strong data-count="created">1</strong>' in page
    assert '<strong data-count="updated">1</strong>' in page
    assert '<strong data-count="deleted">1</strong>' in page
    assert '<del class="djsync-old">1.50</del> → <ins class="djsync-new">1.75</ins>' in page
    assert 'id="djsync-apply"' in page and 'id="djsync-discard"' in page
    assert '<td id="djsync-owner">admin (you)</td>' in page  # the preview's owner
    assert f'<td id="djsync-path">staged: {connection.vendor}</td>' in page  # its path
    assert Product.objects.get(sku="A1").price == Decimal("1.50")  # nothing written yet

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(run_url(run, "apply"))
    assert response["Location"] == f"{run_url(run, 'progress')}?step=apply"
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert admin_client.get(run_url(run, "status") + "?step=apply").json()["done"] is True
    assert Product.objects.get(sku="A1").price == Decimal("1.75")
    assert not Product.objects.filter(sku="Z9").exists()
    assert list(upload_root.iterdir()) == []  # applied: the file is gone
    assert run.upload == ""

    page = admin_client.get(run_url(run)).content.decode()
    assert "djsync-apply" not in page
    changed = reverse("admin:testapp_product_changelist") + "?sku__in=B1%2CA1"
    assert f'href="{changed}"' in page.replace("&amp;", "&")
    listing = admin_client.get(changed).content.decode()
    assert "Kite" in listing and "Lamp" in listing


def test_discard_deletes_the_upload_and_writes_nothing(
    admin_client, job, lamp, upload_root, django_capture_on_commit_callbacks
):
    run = upload(
        admin_client,
        job,
        csv_upload([["A1", "Lamp", "2", "3", "", "yes"]]),
        django_capture_on_commit_callbacks,
    )
    response = admin_client.post(run_url(run, "discard"), follow=True)
    assert "discarded; nothing was written" in response.content.decode()
    run.refresh_from_db()
    assert run.status == "discarded" and run.finished_at is not None
    assert list(upload_root.iterdir()) == [] and run.upload == ""
    response = admin_client.post(run_url(run, "apply"), follow=True)
    assert "Only a previewed run can be applied" in response.content.decode()
    assert Product.objects.get(sku="A1").price == Decimal("1.50")


@pytest.mark.django_db(transaction=True)
def test_apply_of_a_stale_preview_writes_nothing(admin_client, make_job, upload_root, settings):
    """A real commit (no test transaction): the eager worker's failure is recorded, not a 500."""
    settings.DJSYNC = {**settings.DJSYNC, "UPLOAD_ROOT": str(upload_root)}
    job = make_job("test_products", name="products")
    Product.objects.create(sku="A1", name="Lamp", price=Decimal("1.50"), qty=3)
    url = reverse("admin:djsync_syncjob_upload", args=[job.pk])
    admin_client.post(url, {"file": csv_upload([["A1", "Lamp", "2", "3", "", "yes"]])})
    run = SyncRun.objects.get()
    assert run.status == "previewed"
    Product.objects.filter(sku="A1").update(price=Decimal("7"))
    response = admin_client.post(run_url(run, "apply"))
    assert response["Location"] == f"{run_url(run, 'progress')}?step=apply"
    run.refresh_from_db()
    assert run.status == "failed"
    assert Product.objects.get(sku="A1").price == Decimal("7")
    page = admin_client.get(run_url(run)).content.decode()
    assert "the target changed since the preview: A1 (changed)" in page


def test_chosen_format_beats_the_extension(admin_client, job, django_capture_on_commit_callbacks):
    file = csv_upload([["C1", "Cup", "3", "1", "", "yes"]], name="export.dat")
    response = admin_client.post(
        reverse("admin:djsync_syncjob_upload", args=[job.pk]), {"file": file}
    )
    assert "Cannot tell the format of export.dat" in response.content.decode()
    assert not SyncRun.objects.exists()
    file.seek(0)
    run = upload(admin_client, job, file, django_capture_on_commit_callbacks, format="csv")
    assert run.status == "previewed", run.error
    assert run.created == 1 and run.source_name == "export.dat"


def test_upload_size_limit(admin_client, job, settings, upload_root):
    settings.DJSYNC = {**settings.DJSYNC, "UPLOAD_ROOT": str(upload_root), "MAX_UPLOAD_SIZE": 20}
    file = csv_upload([["C1", "Cup", "3", "1", "", "yes"]])
    response = admin_client.post(
        reverse("admin:djsync_syncjob_upload", args=[job.pk]), {"file": file}
    )
    assert response.status_code == 413  # refused on its Content-Length, before reading it
    page = html.unescape(response.content.decode())
    assert 'larger than DJSYNC["MAX_UPLOAD_SIZE"] (20\xa0bytes)' in page
    assert not SyncRun.objects.exists()
    assert not upload_root.exists() or list(upload_root.iterdir()) == []


@pytest.mark.django_db(transaction=True)
def test_a_preview_that_fails_shows_why(admin_client, make_job, upload_root, settings):
    settings.DJSYNC = {**settings.DJSYNC, "UPLOAD_ROOT": str(upload_root)}
    job = make_job("test_products", name="products")
    # Its headers fit (a missing column is the mapping step's: test_admin_columns.py);
    # its second row does not.
    bad = SimpleUploadedFile("bad.csv", b"sku,name,price,qty,updated,active\nA1,x,1,1,,,,9\n")
    response = admin_client.post(
        reverse("admin:djsync_syncjob_upload", args=[job.pk]), {"file": bad}
    )
    run = SyncRun.objects.get()
    assert response["Location"] == f"{run_url(run, 'progress')}?step=preview"
    assert run.status == "failed"
    status = admin_client.get(run_url(run, "status")).json()
    assert status["done"] is True and "8 cells" in status["error"]
    page = admin_client.get(run_url(run)).content.decode()
    assert "djsync-run-error" in page and "djsync-apply" not in page


# -- the preview page -------------------------------------------------------------------
def big_run(job: SyncJob, creates: int, updates: int, errors: int = 0, user=None) -> SyncRun:
    run = SyncRun.objects.create(
        job=job,
        user=user,
        trigger="admin",
        dry_run=True,
        status="previewed",
        created=creates,
        updated=updates,
        errors=errors,
    )
    SyncChange.objects.bulk_create(
        [
            SyncChange(
                run=run,
                model="testapp.Product",
                action="create",
                key=[f"N{i:05}"],
                row=i + 2,
                after={"sku": f"N{i:05}", "name": f"new {i}"},
            )
            for i in range(creates)
        ]
        + [
            SyncChange(
                run=run,
                model="testapp.Product",
                action="update",
                key=[f"U{i:05}"],
                object_pk=str(i),
                row=i + 2,
                before={"qty": i},
                after={"qty": i + 1},
                changed_fields=["qty"],
            )
            for i in range(updates)
        ]
    )
    SyncRowError.objects.bulk_create(
        [
            SyncRowError(
                run=run,
                model="testapp.Product",
                row=i + 2,
                column="price",
                message="not a number",
                value=f"x{i}",
                raw={"sku": f"E{i}", "price": f"x{i}"},
            )
            for i in range(errors)
        ]
    )
    return run


def test_preview_pages_filters_and_paginates_on_the_server(
    admin_client, job, django_assert_max_num_queries
):
    run = big_run(job, creates=120, updates=130)
    with django_assert_max_num_queries(12):
        page = admin_client.get(run_url(run) + "?action=update&page=3").content.decode()
    assert page.count('class="djsync-change djsync-change-update"') == 30  # 130 = 50 + 50 + 30
    assert "djsync-change-create" not in page
    assert "U00100" in page and "U00099" not in page
    assert '<del class="djsync-old">129</del> → <ins class="djsync-new">130</ins>' in page
    assert "page 3 of 3" in page and "101–130 of 130" in page
    first = admin_client.get(run_url(run)).content.decode()
    assert first.count('class="djsync-change ') == 50 and "page 1 of 5" in first
    assert "N00000" in first and "U00000" not in first
    tabs = admin_client.get(run_url(run) + "?action=create").content.decode()
    assert "Create (120)" in tabs and "Update (130)" in tabs and "All changes (250)" in tabs


def test_row_errors_are_listed_and_downloadable(admin_client, job):
    run = big_run(job, creates=1, updates=0, errors=60)
    page = admin_client.get(run_url(run) + "?errors_page=2").content.decode()
    assert page.count("not a number") == 10
    response = admin_client.get(run_url(run, "errors_csv"))
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert f"products-run-{run.pk}-row-errors.csv" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[0] == ["row", "column", "key", "message", "value", "raw row"]
    assert rows[1][:5] == ["2", "price", "", "not a number", "x0"]
    assert len(rows) == 61


def test_upload_with_row_errors_then_apply_skips_them(
    admin_client, make_job, django_capture_on_commit_callbacks
):
    job = make_job("test_products", name="products", on_row_error="skip")
    file = csv_upload([["A1", "Lamp", "abc", "3", "", "yes"], ["B1", "Kite", "2", "1", "", "no"]])
    run = upload(admin_client, job, file, django_capture_on_commit_callbacks)
    assert run.counts["errors"] == 1 and run.created == 1
    page = admin_client.get(run_url(run)).content.decode()
    assert "djsync-row-errors" in page and "abc" in page
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(run_url(run, "apply"))
    assert list(Product.objects.values_list("sku", flat=True)) == ["B1"]


# -- permissions ------------------------------------------------------------------------
def all_urls(job: SyncJob, run: SyncRun) -> list[str]:
    return [
        reverse("admin:djsync_syncjob_changelist"),
        reverse("admin:djsync_syncjob_upload", args=[job.pk]),
        reverse("admin:djsync_syncrun_changelist"),
        run_url(run),
        run_url(run, "progress"),
        run_url(run, "status"),
        run_url(run, "apply"),
        run_url(run, "discard"),
        run_url(run, "cancel"),
        run_url(run, "errors_csv"),
        reverse("admin:testapp_product_sync_import"),
    ]


@pytest.mark.parametrize("who", ["anonymous", "not staff"])
def test_no_page_for_anonymous_or_non_staff(who, job, client_for):
    run = big_run(job, creates=1, updates=0)
    client = Client() if who == "anonymous" else client_for(*PREVIEW, *WRITE, staff=False)
    for url in all_urls(job, run):
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code == 302, url
            assert response["Location"].startswith(reverse("admin:login")), url
    assert SyncRun.objects.get().status == "previewed"


def test_staff_without_djsync_permissions_is_refused(job, client_for):
    run = big_run(job, creates=1, updates=0)
    client = client_for("testapp.view_product", *WRITE)
    for url in all_urls(job, run)[1:]:
        assert client.get(url).status_code == 403, url
        assert client.post(url).status_code == 403, url
    page = client.get(reverse("admin:testapp_product_changelist")).content.decode()
    assert "Import / sync from file" not in page


def test_preview_needs_view_permission_on_the_target(job, client_for):
    run = big_run(job, creates=1, updates=0)
    client = client_for("djsync.add_syncrun", "djsync.view_syncrun")
    assert client.get(reverse("admin:djsync_syncjob_upload", args=[job.pk])).status_code == 403
    assert client.get(run_url(run)).status_code == 403
    assert client.get(run_url(run, "status")).status_code == 403


def test_previewer_without_write_permissions_cannot_apply(
    job, lamp, client_for, django_capture_on_commit_callbacks
):
    client = client_for(*PREVIEW)
    run = upload(
        client,
        job,
        csv_upload([["A1", "Lamp", "2", "3", "", "yes"], ["B1", "Kite", "2", "1", "", "no"]]),
        django_capture_on_commit_callbacks,
    )
    page = client.get(run_url(run)).content.decode()
    assert "djsync-apply" not in page
    assert "testapp.add_product, testapp.change_product" in page
    assert client.post(run_url(run, "apply")).status_code == 403
    run.refresh_from_db()
    assert run.status == "previewed"
    assert client.post(run_url(run, "discard")).status_code == 302  # discarding is allowed


def test_apply_needs_only_the_permissions_the_plan_uses(
    job, lamp, client_for, django_capture_on_commit_callbacks
):
    client = client_for(*PREVIEW, "testapp.change_product")
    updates_only = upload(
        client,
        job,
        csv_upload([["A1", "Lamp", "2", "3", "", "yes"]]),
        django_capture_on_commit_callbacks,
    )
    assert updates_only.counts["updated"] == 1 and updates_only.counts["created"] == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(run_url(updates_only, "apply")).status_code == 302
    assert Product.objects.get(sku="A1").price == Decimal("2")

    with_delete = upload(
        client,
        job,
        csv_upload([["B1", "Kite", "2", "1", "", "no"]]),
        django_capture_on_commit_callbacks,
    )
    assert with_delete.counts["deleted"] == 1
    assert client.post(run_url(with_delete, "apply")).status_code == 403
    assert Product.objects.filter(sku="A1").exists()


def test_forms_need_a_csrf_token(job, make_user):
    user = make_user(*PREVIEW, *WRITE)
    run = big_run(job, creates=1, updates=0, user=user)  # its owner sees Apply and Discard
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(run_url(run, "apply")).status_code == 403
    assert client.post(run_url(run, "discard")).status_code == 403
    file = csv_upload([["C1", "Cup", "3", "1", "", "yes"]])
    url = reverse("admin:djsync_syncjob_upload", args=[job.pk])
    assert client.post(url, {"file": file}).status_code == 403
    page = client.get(run_url(run)).content.decode()
    assert page.count('name="csrfmiddlewaretoken"') >= 2
    assert SyncRun.objects.get().status == "previewed"


def test_apply_and_discard_only_accept_post(admin_client, job):
    run = big_run(job, creates=1, updates=0)
    assert admin_client.get(run_url(run, "apply")).status_code == 403
    assert admin_client.get(run_url(run, "discard")).status_code == 403
    assert SyncRun.objects.get().status == "previewed"


# -- the model mixin --------------------------------------------------------------------
def test_mixin_button_upload_creates_a_job_then_reuses_it(
    client_for, lamp, django_capture_on_commit_callbacks
):
    client = client_for(*PREVIEW, *WRITE)
    changelist = client.get(reverse("admin:testapp_product_changelist")).content.decode()
    url = reverse("admin:testapp_product_sync_import")
    assert f'href="{url}"' in changelist and "Import / sync from file" in changelist
    form = client.get(url).content.decode()
    assert "test_products (new job)" in form
    for price, choice in (("2.50", "importer:test_products"), ("3.50", "job:{}")):
        if SyncJob.objects.exists():
            choice = choice.format(SyncJob.objects.get().pk)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                url, {"file": csv_upload([["A1", "Lamp", price, "3", "", "yes"]]), "job": choice}
            )
        run = SyncRun.objects.latest("pk")
        assert response["Location"] == f"{run_url(run, 'progress')}?step=preview"
        assert run.status == "previewed" and run.updated == 1
    assert list(SyncJob.objects.values_list("name", "importer")) == [
        ("test_products", "test_products")
    ]
    form = client.get(url).content.decode()
    assert "test_products (new job)" not in form and f'value="job:{run.job.pk}"' in form


def test_mixin_hidden_without_permission(client_for):
    client = client_for("testapp.view_product")
    page = client.get(reverse("admin:testapp_product_changelist")).content.decode()
    assert "Import / sync from file" not in page
    assert client.get(reverse("admin:testapp_product_sync_import")).status_code == 403


# -- jobs -------------------------------------------------------------------------------
def test_job_list_shows_the_last_run(admin_client, job):
    big_run(job, creates=3, updates=2)
    page = admin_client.get(reverse("admin:djsync_syncjob_changelist")).content.decode()
    assert "djsync-status-previewed" in page and "+3" in page and "~2" in page
    assert reverse("admin:djsync_syncjob_upload", args=[job.pk]) in page


def test_preview_now_action(
    admin_client, make_job, tmp_path, write_csv, lamp, django_capture_on_commit_callbacks
):
    path = write_csv(
        [{"sku": "A1", "name": "Lamp", "price": "4", "qty": "3", "updated": "", "active": "1"}]
    )
    job = make_job("test_products", name="products", source={"path": path.name})
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:djsync_syncjob_changelist"),
            {"action": "preview_now", "_selected_action": [job.pk]},
        )
    run = SyncRun.objects.get()
    assert response["Location"] == f"{run_url(run, 'progress')}?step=preview"
    run.refresh_from_db()
    assert run.status == "previewed" and run.updated == 1 and run.dry_run


def test_run_now_action(admin_client, make_job, write_csv, django_capture_on_commit_callbacks):
    path = write_csv(
        [{"sku": "R1", "name": "Rug", "price": "4", "qty": "3", "updated": "", "active": "1"}]
    )
    job = make_job("test_products", name="products", source={"path": path.name})
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:djsync_syncjob_changelist"),
            {"action": "run_now", "_selected_action": [job.pk]},
        )
    run = SyncRun.objects.get()
    assert response["Location"] == f"{run_url(run, 'progress')}?step=run"
    run.refresh_from_db()
    assert run.status == "succeeded" and run.trigger == "admin" and not run.dry_run
    assert run.user.username == "admin"
    assert admin_client.get(run_url(run, "status") + "?step=run").json()["done"] is True
    assert Product.objects.filter(sku="R1").exists()


def test_run_now_needs_write_permissions(client_for, make_job, write_csv):
    client = client_for(*PREVIEW, "djsync.view_syncjob", "djsync.change_syncjob")
    path = write_csv(
        [{"sku": "R1", "name": "Rug", "price": "4", "qty": "3", "updated": "", "active": "1"}]
    )
    job = make_job("test_products", name="products", source={"path": path.name})
    response = client.post(
        reverse("admin:djsync_syncjob_changelist"),
        {"action": "run_now", "_selected_action": [job.pk]},
        follow=True,
    )
    assert "You may not run products: testapp.add_product" in response.content.decode()
    assert not SyncRun.objects.exists()


def job_form(**overrides: str) -> dict[str, str]:
    data = {
        "name": "prices",
        "description": "",
        "importer": "test_products",
        "source": '{"path": "prices.csv"}',
        "enabled": "on",
        "allow_create": "unknown",
        "allow_update": "unknown",
        "allow_delete": "false",
        "max_create": "",
        "max_update": "",
        "max_delete": "100",
        "max_total": "",
        "delete_guard": "0.2",
        "on_row_error": "skip",
        "schedule": "*/15 * * * *",
        "notify_on_failure": "ops@example.com\nboss@example.com",
    }
    return {**data, **overrides}


def test_job_form_saves_a_valid_job(admin_client, db):
    response = admin_client.post(reverse("admin:djsync_syncjob_add"), job_form())
    assert response.status_code == 302, response.content.decode()[:3000]
    job = SyncJob.objects.get(name="prices")
    assert (
        job.source == {"path": "prices.csv"}
        and job.allow_delete is False
        and job.allow_create is None
    )
    assert job.notify_on_failure == ["ops@example.com", "boss@example.com"]
    assert job.max_delete == 100 and job.schedule == "*/15 * * * *"
    page = admin_client.get(reverse("admin:djsync_syncjob_change", args=[job.pk])).content.decode()
    assert "ops@example.com\nboss@example.com" in page
    assert reverse("admin:djsync_syncjob_upload", args=[job.pk]) in page


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("importer", "tests.testapp.sync.ProductImporter", "Select a valid choice"),
        ("source", "[1, 2]", "Source options are a JSON object"),
        ("source", '{"kind": "ftp"}', "unknown source kind"),
        ("source", "{not json", "Enter a valid JSON"),
        ("schedule", "sometimes", "neither a crontab"),
        ("schedule", "99 * * * *", "bad crontab"),
        ("notify_on_failure", "ops@example.com, nobody", "nobody is not an e-mail address"),
        ("delete_guard", "3", "A share between 0 and 1"),
    ],
)
def test_job_form_refuses_bad_values(admin_client, db, field, value, message):
    response = admin_client.post(reverse("admin:djsync_syncjob_add"), job_form(**{field: value}))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not SyncJob.objects.exists()


# -- run history ------------------------------------------------------------------------
def test_run_history_is_read_only_and_filterable(admin_client, job, make_job):
    other = make_job("test_categories", name="cats")
    run = big_run(job, creates=2, updates=0)
    failed = SyncRun.objects.create(job=other, trigger="schedule", status="failed", error="boom")
    url = reverse("admin:djsync_syncrun_changelist")
    page = admin_client.get(url).content.decode()
    assert "products" in page and "cats" in page
    filtered = admin_client.get(
        url + "?status__exact=failed&trigger__exact=schedule"
    ).content.decode()
    assert f">#{failed.pk}<" in filtered and f">#{run.pk}<" not in filtered
    assert admin_client.get(url + f"?job__id__exact={job.pk}").status_code == 200
    assert admin_client.get(url + "?created_at__gte=2020-01-01+00:00:00%2B00:00").status_code == 200
    assert admin_client.get(reverse("admin:djsync_syncrun_add")).status_code == 403
    detail = admin_client.get(run_url(run)).content.decode()
    assert '<strong data-count="created">2</strong>' in detail


def test_expired_uploads_are_deleted_and_their_previews_discarded(
    admin_client, job, lamp, upload_root, settings, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    from djsync.uploads import expire_uploads

    run = upload(
        admin_client,
        job,
        csv_upload([["A1", "Lamp", "2", "3", "", "yes"]]),
        django_capture_on_commit_callbacks,
    )
    assert expire_uploads() == 0
    assert expire_uploads(now=timezone.now() + timedelta(days=3)) == 1
    run.refresh_from_db()
    assert run.status == "discarded" and run.upload == ""
    assert list(upload_root.iterdir()) == []


def test_cancel_a_queued_run(admin_client, job):
    run = SyncRun.objects.create(job=job, trigger="admin", status="queued", dry_run=True)
    progress = admin_client.get(run_url(run, "progress") + "?step=preview").content.decode()
    assert 'id="djsync-cancel"' in progress
    assert admin_client.get(run_url(run, "status")).json()["done"] is False
    assert admin_client.get(run_url(run, "cancel")).status_code == 403  # POST only
    response = admin_client.post(run_url(run, "cancel"), follow=True)
    assert "is being cancelled" in response.content.decode()
    run.refresh_from_db()
    assert run.status == "cancelled"
    again = admin_client.post(run_url(run, "cancel"), follow=True).content.decode()
    assert "only a queued or running run can be cancelled" in again


def test_job_list_shows_the_next_scheduled_run(admin_client, make_job):
    make_job("test_products", name="products", schedule="0 3 * * *")
    page = admin_client.get(reverse("admin:djsync_syncjob_changelist")).content.decode()
    assert "0 3 * * * (" in page and " 3 a.m.)" in page


def test_a_job_can_be_deleted_from_the_admin(admin_client, make_job):
    job = make_job("test_products", delete=True)
    url = reverse("admin:djsync_syncjob_delete", args=[job.pk])
    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not SyncJob.objects.filter(pk=job.pk).exists()


def test_the_job_form_says_what_an_empty_switch_means(admin_client):
    html = admin_client.get(reverse("admin:djsync_syncjob_add")).content.decode()
    assert '<option value="unknown" selected>As the importer says</option>' in html
    assert "Unknown</option>" not in html
    assert ">Importer:</label>" in html and ">Notify on failure:</label>" in html


def test_a_single_model_job_picks_its_importer_in_a_single_select(admin_client):
    html = admin_client.get(reverse("admin:djsync_syncjob_add")).content.decode()
    selects = re.findall(r'<select name="importer"[^>]*>', html)
    assert len(selects) == 2
    assert "multiple" not in selects[0] and 'id="id_importer"' in selects[0]  # one choice
    assert "multiple" in selects[1] and "required" not in selects[1]  # more, if any
    response = admin_client.post(
        reverse("admin:djsync_syncjob_add"),
        {"name": "two", "importer": ["test_team_members", "test_teams", ""], "source": "{}",
         "target": "{}", "enabled": "on", "notify_on_failure": ""},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    assert SyncJob.objects.get(name="two").importer == "test_team_members, test_teams"

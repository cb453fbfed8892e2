"""The admin upload's mapping step, through Django's test client: proposals, corrections,
refusals, the saved mapping (next upload straight to preview), who may save it, and files
whose headers are hostile."""

from __future__ import annotations

import html
import re

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from djsync.admin_columns import ONCE_FIELD, TOKEN_FIELD
from djsync.mapping.columns import signature
from djsync.models import SyncJob, SyncRun
from tests import test_admin
from tests.testapp.models import Product

#: test_admin's autouse fixture: uploads go to a private folder of the test's own.
upload_root = test_admin.upload_root


@pytest.fixture
def job(make_job) -> SyncJob:
    return make_job("test_products_aliased", name="aliased")


def upload_url(job: SyncJob) -> str:
    return reverse("admin:djsync_syncjob_upload", args=[job.pk])


def csv_file(text: str, name: str = "prices.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def post_file(client: Client, job: SyncJob, text: str, capture):
    with capture(execute=True):
        return client.post(upload_url(job), {"file": csv_file(text)})


def token_of(page: str) -> str:
    found = re.search(rf'name="{TOKEN_FIELD}" value="([^"]+)"', page)
    assert found, page[:3000]
    return found.group(1)


def selected(page: str, field: str) -> str | None:
    """The header the step's select for ``field`` proposes."""
    select = re.search(rf'<select name="column-{field}".*?</select>', page, re.S)
    assert select, page[:3000]
    chosen = re.search(r'<option value="([^"]*)" selected>', select.group(0))
    return html.unescape(chosen.group(1)) or None if chosen else None


def confirm(client: Client, job: SyncJob, token: str, capture, **columns: str):
    data = {TOKEN_FIELD: token, **{f"column-{k}": v for k, v in columns.items()}}
    with capture(execute=True):
        return client.post(upload_url(job), data)


FILE = "Item_No,designation,Cost,Qty.,Notes\nK1,Kite,9.50,4,blue\nL1,Lamp,1.75,2,\n"
#: What a person picks for FILE's required columns.
PICKED = {"sku": "Item_No", "name": "designation", "price": "Cost"}


def test_the_step_proposes_then_saves_and_the_next_file_goes_straight_to_preview(
    admin_client, job, upload_root, django_capture_on_commit_callbacks
):
    response = post_file(admin_client, job, FILE, django_capture_on_commit_callbacks)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="djsync-column-mapping"' in page and not SyncRun.objects.exists()
    assert selected(page, "sku") == "Item_No"  # the alias "Item no", normalized
    assert selected(page, "name") == "designation"  # the alias "Désignation", unaccented
    assert selected(page, "price") is None  # "Cost": nothing fits; the person picks it
    assert selected(page, "qty") == "Qty."
    assert "<code>Cost</code>" in page and "<code>Notes</code>" in page  # unmatched headers
    assert len(list(upload_root.iterdir())) == 1  # the file waits, privately

    token = token_of(page)
    response = confirm(
        admin_client, job, token, django_capture_on_commit_callbacks, **PICKED, qty="Qty."
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    run = SyncRun.objects.get()
    assert response["Location"].endswith(f"/{run.pk}/progress/?step=preview")
    assert run.status == "previewed", run.error
    assert (run.created, run.errors) == (2, 0)
    assert run.source_name == "prices.csv"
    assert len(list(upload_root.iterdir())) == 1  # the run's copy only

    job.refresh_from_db()
    headers = ["Item_No", "designation", "Cost", "Qty.", "Notes"]
    assert job.column_mapping == {
        "test_products_aliased": [
            {
                "signature": signature(headers),
                "columns": {
                    "sku": "Item_No",
                    "name": "designation",
                    "price": "Cost",
                    "qty": "Qty.",
                },
            }
        ]
    }

    # The same headers in another order: straight to preview, read through the mapping.
    again = "Notes,Cost,Qty.,designation,Item_No\n,3,1,Rug,R1\n"
    response = post_file(admin_client, job, again, django_capture_on_commit_callbacks)
    assert response.status_code == 302
    second = SyncRun.objects.latest("pk")
    assert second.status == "previewed" and second.created == 1, second.error
    change = second.changes.get()
    assert change.after["name"] == "Rug" and change.after["price"] == "3.00"

    # The job's page shows it; emptying the field forgets it.
    job_page = admin_client.get(reverse("admin:djsync_syncjob_change", args=[job.pk]))
    assert "Item_No" in job_page.content.decode() and "Column mapping" in job_page.content.decode()


def test_required_columns_are_enforced_and_a_header_feeds_one_column(
    admin_client, job, django_capture_on_commit_callbacks
):
    page = post_file(admin_client, job, FILE, django_capture_on_commit_callbacks).content.decode()
    token = token_of(page)

    def answer(**changed: str) -> str:
        picked = {**PICKED, **changed}
        response = confirm(admin_client, job, token, django_capture_on_commit_callbacks, **picked)
        assert response.status_code == 200
        return html.unescape(response.content.decode())

    assert "This field is required." in answer(name="")
    assert "The header “Item_No” already feeds the column sku." in answer(price="Item_No")
    assert "Select a valid choice." in answer(price="<b>")
    assert not SyncRun.objects.exists()
    job.refresh_from_db()
    assert job.column_mapping == {}


def test_an_optional_column_may_be_left_out(admin_client, job, django_capture_on_commit_callbacks):
    page = post_file(admin_client, job, FILE, django_capture_on_commit_callbacks).content.decode()
    token = token_of(page)
    response = confirm(
        admin_client, job, token, django_capture_on_commit_callbacks, **PICKED, qty=""
    )
    assert response.status_code == 302
    run = SyncRun.objects.get()
    assert run.status == "previewed"
    assert all("qty" not in c.after for c in run.changes.all())  # not read: not written
    job.refresh_from_db()
    assert job.column_mapping["test_products_aliased"][0]["columns"]["qty"] == ""


@pytest.fixture
def previewer(django_user_model, job):
    """May preview the job but not change it."""
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    for app, codename in [
        ("djsync", "add_syncrun"),
        ("djsync", "view_syncrun"),
        ("djsync", "view_syncjob"),
        ("testapp", "view_product"),
    ]:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


def test_who_may_not_change_the_job_maps_this_upload_only(
    previewer, admin_client, job, django_capture_on_commit_callbacks
):
    """A clerk who may preview but not change the job confirms a mapping for this upload:
    its preview reads through it, the run keeps it, the job's saved mappings stay as they
    were — so the next file with these headers comes back to the step."""
    response = post_file(previewer, job, FILE, django_capture_on_commit_callbacks)
    page = response.content.decode()
    assert response.status_code == 200 and 'id="djsync-columns-denied"' in page
    assert 'id="djsync-columns-confirm"' not in page  # no saving on the job
    assert 'id="djsync-columns-once"' in page and selected(page, "sku") == "Item_No"
    data = {TOKEN_FIELD: token_of(page), ONCE_FIELD: "1"}
    data |= {f"column-{k}": v for k, v in PICKED.items()}
    with django_capture_on_commit_callbacks(execute=True):
        response = previewer.post(upload_url(job), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    run = SyncRun.objects.get()
    assert run.status == "previewed" and (run.created, run.errors) == (2, 0), run.error
    assert {c.after["price"] for c in run.changes.all()} == {"9.50", "1.75"}  # "Cost"
    headers = ["Item_No", "designation", "Cost", "Qty.", "Notes"]
    columns = {**PICKED, "qty": ""}  # left out: "not in the file"
    assert run.column_mapping == {
        "test_products_aliased": [{"signature": signature(headers), "columns": columns}]
    }
    job.refresh_from_db()
    assert job.column_mapping == {}
    shown = previewer.get(reverse("admin:djsync_syncrun_change", args=[run.pk])).content.decode()
    assert "<code>Item_No</code> → sku" in shown and "qty: not in the file" in shown
    again = post_file(previewer, job, FILE, django_capture_on_commit_callbacks)
    assert again.status_code == 200 and 'id="djsync-column-mapping"' in again.content.decode()
    assert SyncRun.objects.count() == 1

    # Pressing "save" without the permission (a forged form) maps this upload only too.
    forged = {TOKEN_FIELD: token_of(again.content.decode())}
    forged |= {f"column-{k}": v for k, v in PICKED.items()}
    with django_capture_on_commit_callbacks(execute=True):
        assert previewer.post(upload_url(job), forged).status_code == 302
    job.refresh_from_db()
    assert job.column_mapping == {} and SyncRun.objects.latest("pk").column_mapping


def test_who_may_change_the_job_may_map_this_upload_only(
    admin_client, job, django_capture_on_commit_callbacks
):
    page = post_file(admin_client, job, FILE, django_capture_on_commit_callbacks)
    text = page.content.decode()
    assert 'id="djsync-columns-confirm"' in text and 'id="djsync-columns-once"' in text
    data = {TOKEN_FIELD: token_of(text), ONCE_FIELD: "1"}
    data |= {f"column-{k}": v for k, v in PICKED.items()}
    with django_capture_on_commit_callbacks(execute=True):
        assert admin_client.post(upload_url(job), data).status_code == 302
    run = SyncRun.objects.get()
    assert run.status == "previewed" and run.created == 2, run.error
    job.refresh_from_db()
    assert job.column_mapping == {} and run.column_mapping


def test_a_token_is_bound_to_its_user_and_cannot_be_forged(
    previewer, admin_client, job, django_capture_on_commit_callbacks
):
    page = post_file(admin_client, job, FILE, django_capture_on_commit_callbacks).content.decode()
    token = token_of(page)
    columns = PICKED
    assert (
        confirm(previewer, job, token, django_capture_on_commit_callbacks, **columns).status_code
        == 403
    )
    forged = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    assert (
        confirm(
            admin_client, job, forged, django_capture_on_commit_callbacks, **columns
        ).status_code
        == 403
    )
    assert not SyncRun.objects.exists()


def test_the_step_from_a_models_changelist(admin_client, job, django_capture_on_commit_callbacks):
    url = reverse("admin:testapp_product_sync_import")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {"file": csv_file(FILE), "job": f"job:{job.pk}"})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="djsync-column-mapping"' in page
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            url,
            {
                TOKEN_FIELD: token_of(page),
                "column-sku": "Item_No",
                "column-name": "designation",
                "column-price": "Cost",
            },
        )
    assert response.status_code == 302 and SyncRun.objects.get().status == "previewed"


def test_the_job_form_checks_an_edited_mapping(admin_client, job):
    url = reverse("admin:djsync_syncjob_change", args=[job.pk])
    data = {
        "name": job.name,
        "importer": job.importer,
        "source": "{}",
        "target": "{}",
        "enabled": "on",
        "notify_on_failure": "",
        "schedule": "",
        "allow_create": "unknown",
        "allow_update": "unknown",
        "allow_delete": "unknown",
        "on_row_error": "",
    }
    bad = '{"test_products_aliased": [{"signature": "%s", "columns": {"nope": "x"}}]}' % ("0" * 32)
    response = admin_client.post(url, {**data, "column_mapping": bad})
    assert response.status_code == 200
    assert "&#x27;nope&#x27; is not one of its fields." in response.content.decode()
    good = '{"test_products_aliased": [{"signature": "%s", "columns": {"sku": "Ref"}}]}' % (
        "0" * 32
    )
    response = admin_client.post(url, {**data, "column_mapping": good})
    assert response.status_code == 302, response.content.decode()[:3000]
    job.refresh_from_db()
    assert job.column_mapping["test_products_aliased"][0]["columns"] == {"sku": "Ref"}
    response = admin_client.post(url, {**data, "column_mapping": "{}"})
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.column_mapping == {}


# -- hostile headers ---------------------------------------------------------------------
def test_ten_thousand_columns_are_refused_by_the_step_with_a_bounded_page(
    admin_client, job, django_capture_on_commit_callbacks
):
    headers = [f"c{n}" for n in range(10_000)]
    text = ",".join(headers) + "\n" + ",".join("1" for _ in headers) + "\n"
    response = post_file(admin_client, job, text, django_capture_on_commit_callbacks)
    page = response.content.decode()
    assert response.status_code == 200
    assert "The file has 10,000 columns; the mapping step offers at most 500." in page
    assert "<select" not in page and "and 9900 more" in page
    assert len(page) < 200_000


def test_a_megabyte_header_is_never_offered_nor_echoed_whole(
    admin_client, job, django_capture_on_commit_callbacks
):
    huge = "x" * 999_000
    text = f"Item_No,designation,Cost,{huge}\nK1,Kite,1,2\n"
    response = post_file(admin_client, job, text, django_capture_on_commit_callbacks)
    page = response.content.decode()
    assert response.status_code == 200
    assert "1 header is longer than 200 characters and cannot be picked." in page
    assert len(page) < 100_000


def test_html_in_headers_is_shown_as_text(admin_client, job, django_capture_on_commit_callbacks):
    evil = '<script>alert("x")</script>'
    text = f'sku,"{evil.replace(chr(34), chr(34) * 2)}",price\nK1,Kite,1\n'
    response = post_file(admin_client, job, text, django_capture_on_commit_callbacks)
    page = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


@pytest.mark.django_db(transaction=True)
def test_duplicate_headers_fail_the_run_naming_the_column(admin_client, job):
    text = "sku,name,sku,price\nK1,Kite,K2,1\n"
    response = admin_client.post(upload_url(job), {"file": csv_file(text)})
    assert response.status_code == 302
    run = SyncRun.objects.get()
    assert run.status == "failed" and "names column 'sku' twice" in run.error
    assert not Product.objects.exists()


def test_a_run_names_at_most_fifty_headers_each_cut_short(make_job, tmp_path):
    """The missing-column error of a run with no mapping step (runsync) stays small."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    make_job("test_products_aliased", name="aliased")
    path = tmp_path / "wide.csv"
    headers = ["y" * 100_000] + [f"c{n}" for n in range(10_000)]
    path.write_text(",".join(headers) + "\n" + ",".join("1" for _ in headers) + "\n")
    with pytest.raises(CommandError) as info:
        call_command("runsync", "aliased", "--file", str(path))
    message = str(info.value)
    assert "missing columns 'sku', 'name', 'price'" in message
    assert "'" + "y" * 79 + "…'" in message and "and 9,951 more" in message
    assert len(message) < 2_000


def test_the_step_in_french(admin_client, job, settings, django_capture_on_commit_callbacks):
    settings.LANGUAGE_CODE = "fr"
    page = post_file(admin_client, job, FILE, django_capture_on_commit_callbacks).content.decode()
    text = html.unescape(page)
    assert "En-tête dans le fichier" in text
    assert "l'alias « Item no », écrit autrement" in text
    assert "— absente du fichier —" in text
    assert "Enregistrer la correspondance et prévisualiser" in text

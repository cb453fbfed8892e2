"""The admin's preview of a run: search by key, filter by changed field, paging at the top."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse

import djsync
from tests.testapp.models import Product

pytestmark = pytest.mark.django_db


@pytest.fixture
def preview(make_job: Any, write_csv: Any, job_path: Any, admin_user: Any) -> Any:
    for sku, price, qty in (("LAMP-1", "1.00", 1), ("LAMP-2", "1.00", 1), ("SAW-1", "5.00", 3)):
        Product.objects.create(sku=sku, name=sku, price=Decimal(price), qty=qty)
    rows = [
        {"sku": "LAMP-1", "name": "LAMP-1", "price": "2.00", "qty": 1, "updated": "", "active": "1"},
        {"sku": "LAMP-2", "name": "LAMP-2", "price": "1.00", "qty": 7, "updated": "", "active": "1"},
        {"sku": "SAW-1", "name": "SAW-1", "price": "6.00", "qty": 3, "updated": "", "active": "1"},
        {"sku": "ÉTAU-1", "name": "Étau", "price": "9.00", "qty": 1, "updated": "", "active": "1"},
    ]  # fmt: skip
    job = make_job("test_products", source={"path": job_path(write_csv(rows))})
    return djsync.run(job, dry_run=True, user=admin_user)


def listed(admin_client: Any, run: Any, **params: Any) -> list[str]:
    url = reverse("admin:djsync_syncrun_change", args=[run.pk])
    page = admin_client.get(url, params)
    assert page.status_code == 200
    return re.findall(r'<td class="djsync-key">([^<]+)', page.content.decode())


def test_search_by_any_part_of_the_key_in_any_case(admin_client: Any, preview: Any) -> None:
    assert sorted(listed(admin_client, preview)) == ["LAMP-1", "LAMP-2", "SAW-1", "ÉTAU-1"]
    assert listed(admin_client, preview, q="lamp") == ["LAMP-1", "LAMP-2"]
    assert listed(admin_client, preview, q="étau") == ["ÉTAU-1"]
    assert listed(admin_client, preview, q="nothing") == []
    assert listed(admin_client, preview, q="%") == []  # a LIKE wildcard is plain text
    assert listed(admin_client, preview, q="x" * 100_000) == []  # cut to 200 characters


def test_filter_by_the_field_an_update_changes(admin_client: Any, preview: Any) -> None:
    assert sorted(listed(admin_client, preview, field="price", action="update")) == [
        "LAMP-1",
        "SAW-1",
    ]
    assert listed(admin_client, preview, field="qty", action="update") == ["LAMP-2"]
    assert listed(admin_client, preview, field="price", q="saw") == ["SAW-1"]
    assert len(listed(admin_client, preview, field="no-such-field")) == 4  # ignored


def test_paging_links_above_the_table_keep_the_filter(
    admin_client: Any, preview: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr("djsync.run_page.PER_PAGE", 1)
    url = reverse("admin:djsync_syncrun_change", args=[preview.pk])
    html = admin_client.get(url, {"q": "lamp"}).content.decode()
    table = html.index('id="djsync-changes"')
    first_pager = html.index("djsync-paginator")
    assert first_pager < table  # at the top, not only at the bottom
    assert "q=lamp" in html[first_pager:table] and "page=2" in html[first_pager:table]


# -- what stops an apply, and the two ways past it ------------------------------------------
def apply_url(run: Any) -> str:
    return reverse("admin:djsync_syncrun_apply", args=[run.pk])


def staff(django_user_model: Any, *perms: str) -> Any:
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("clerk", password="x", is_staff=True)
    base = ["djsync.add_syncrun", "djsync.view_syncrun", "testapp.view_product"]
    base += ["testapp.add_product", "testapp.change_product", "testapp.delete_product"]
    for name in [*base, *perms]:
        app, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    return user


@pytest.fixture
def with_bad_row(make_job: Any, write_csv: Any, job_path: Any) -> Any:
    def make(user: Any) -> Any:
        rows = [
            {"sku": "OK-1", "name": "Fine", "price": "1.00", "qty": 1, "updated": "", "active": "1"},
            {"sku": "BAD-1", "name": "Bad", "price": "oops", "qty": 1, "updated": "", "active": "1"},
        ]  # fmt: skip
        job = make_job("test_products", source={"path": job_path(write_csv(rows))})
        return djsync.run(job, dry_run=True, user=user)

    return make


def test_a_preview_with_row_errors_offers_to_apply_the_good_rows(
    client: Any, django_user_model: Any, with_bad_row: Any, django_capture_on_commit_callbacks: Any
) -> None:
    user = staff(django_user_model, "djsync.apply_skipping_errors")
    client.force_login(user)
    run = with_bad_row(user)
    html = client.get(reverse("admin:djsync_syncrun_change", args=[run.pk])).content.decode()
    assert 'id="djsync-apply"' not in html  # a plain Apply would only fail
    assert "Apply the good rows, skip the 1 bad row" in html
    with django_capture_on_commit_callbacks(execute=True):
        client.post(apply_url(run), {"skip_errors": "1"})
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert list(Product.objects.values_list("sku", flat=True)) == ["OK-1"]
    assert run.options["on_row_error"] == "skip"  # what this apply was allowed, on record


def test_skipping_bad_rows_needs_its_own_permission(
    client: Any, django_user_model: Any, with_bad_row: Any
) -> None:
    user = staff(django_user_model)
    client.force_login(user)
    run = with_bad_row(user)
    html = client.get(reverse("admin:djsync_syncrun_change", args=[run.pk])).content.decode()
    assert 'id="djsync-errors-block"' in html and "Apply the good rows" not in html
    assert client.post(apply_url(run), {"skip_errors": "1"}).status_code == 403
    run.refresh_from_db()
    assert run.status == "previewed" and not Product.objects.exists()


@pytest.fixture
def guard_preview(make_job: Any, write_csv: Any, job_path: Any) -> Any:
    def make(user: Any) -> Any:
        for i in range(4):
            Product.objects.create(sku=f"K{i}", name="k", price=Decimal("1.00"), qty=1)
        rows = [{"sku": "K0", "name": "k", "price": "1.00", "qty": 1, "updated": "", "active": "1"}]
        job = make_job("test_products", source={"path": job_path(write_csv(rows))})
        return djsync.run(job, dry_run=True, user=user)  # 3 of 4 go: past the 50% guard

    return make


def test_force_past_the_delete_guard_takes_the_typed_count(
    client: Any, django_user_model: Any, guard_preview: Any, django_capture_on_commit_callbacks: Any
) -> None:
    user = staff(django_user_model, "djsync.force_delete_guard")
    client.force_login(user)
    run = guard_preview(user)
    html = client.get(reverse("admin:djsync_syncrun_change", args=[run.pk])).content.decode()
    assert 'id="djsync-apply"' not in html
    assert "this apply deletes 3 of 4 rows in scope, more than the delete guard of 50%" in html
    with django_capture_on_commit_callbacks(execute=True):
        client.post(apply_url(run), {"force": "1", "confirm": "4"})  # the wrong count
    run.refresh_from_db()
    assert run.status == "previewed" and Product.objects.count() == 4
    with django_capture_on_commit_callbacks(execute=True):
        client.post(apply_url(run), {"force": "1", "confirm": "3"})
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert list(Product.objects.values_list("sku", flat=True)) == ["K0"]


def test_forcing_needs_its_own_permission(
    client: Any, django_user_model: Any, guard_preview: Any
) -> None:
    user = staff(django_user_model)
    client.force_login(user)
    run = guard_preview(user)
    html = client.get(reverse("admin:djsync_syncrun_change", args=[run.pk])).content.decode()
    assert 'id="djsync-guard-block"' in html and 'id="djsync-force"' not in html
    assert client.post(apply_url(run), {"force": "1", "confirm": "3"}).status_code == 403
    assert Product.objects.count() == 4


def test_a_preview_applied_later_times_its_preview_and_its_apply_apart(
    preview: Any, admin_client: Any
) -> None:
    """The hour someone took to decide is not the run's work: "took" leaves it out."""
    from datetime import timedelta

    from djsync.models import SyncRun
    from djsync.runs.orchestrator import apply_previewed

    earlier = timedelta(hours=1)
    SyncRun.objects.filter(pk=preview.pk).update(
        started_at=preview.started_at - earlier, previewed_at=preview.previewed_at - earlier
    )
    preview.refresh_from_db()
    run = apply_previewed(preview)
    run.refresh_from_db()
    assert run.preview_duration is not None and run.preview_duration < 60
    assert run.apply_duration is not None and run.apply_duration < 60
    assert run.duration == pytest.approx(run.preview_duration + run.apply_duration)
    assert (run.finished_at - run.started_at).total_seconds() > 3600
    html = admin_client.get(reverse("admin:djsync_syncrun_change", args=[run.pk])).content.decode()
    assert 'id="djsync-durations"' in html and "preview " in html and "apply " in html


def test_the_run_list_says_each_thing_once(
    preview: Any, admin_client: Any, admin_user: Any
) -> None:
    html = admin_client.get(reverse("admin:djsync_syncrun_changelist")).content.decode()
    headers = re.findall(r'<th scope="col" class="[^"]*column-(\w+)', html)
    assert headers == ["number", "job", "outcome", "started_by", "created_at", "counts", "took"]
    assert f"#{preview.pk}" in html
    assert f"Python API ({admin_user})" in html  # trigger and user in one cell

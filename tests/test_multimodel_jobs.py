"""Multi-model jobs as data: SyncJob.clean() and the admin job form accept several importers,
validated against the registry, and the admin's permissions cover every model."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.urls import reverse

from djsync import permissions
from djsync.models import SyncJob, SyncRun
from tests.testapp.models import Category, Product


def job_form(**overrides):
    data = {
        "name": "catalogue",
        "importer": ["test_products", "test_categories"],
        "source": "{}",
        "enabled": "on",
        "allow_create": "unknown",
        "allow_update": "unknown",
        "allow_delete": "unknown",
        "on_row_error": "",
        "notify_on_failure": "",
    }
    return {**data, **overrides}


@pytest.mark.parametrize(
    "importer", ["test_categories, test_products", "test_products,test_categories"]
)
def test_clean_accepts_several_registered_importers(db, importer):
    SyncJob(name="catalogue", importer=importer).full_clean()


@pytest.mark.parametrize(
    ("importer", "message"),
    [
        ("test_categories, nope", "No importer is registered under the name 'nope'."),
        ("nope", "No importer is registered under the name 'nope'."),
        ("test_products, test_products", "An importer is named twice."),
        ("test_products, test_products_eu", "names one model twice"),
        (" , ", "No importer is registered under the name"),
    ],
)
def test_clean_refuses_what_cannot_run(db, importer, message):
    with pytest.raises(ValidationError) as info:
        SyncJob(name="catalogue", importer=importer).full_clean()
    assert message in " ".join(info.value.message_dict["importer"])


def test_admin_form_saves_a_multi_model_job_and_shows_it_again(admin_client):
    response = admin_client.post(reverse("admin:djsync_syncjob_add"), job_form())
    assert response.status_code == 302, response.content.decode()[:3000]
    job = SyncJob.objects.get(name="catalogue")
    assert job.importer == "test_products, test_categories"
    page = admin_client.get(reverse("admin:djsync_syncjob_change", args=[job.pk])).content.decode()
    assert '<select name="importer"' in page and "multiple" in page
    assert '<option value="test_categories" selected>' in page
    assert '<option value="test_products" selected>' in page
    assert '<option value="test_members">' in page


def test_admin_form_refuses_two_importers_of_one_model(admin_client):
    response = admin_client.post(
        reverse("admin:djsync_syncjob_add"),
        job_form(importer=["test_products", "test_products_eu"]),
    )
    assert response.status_code == 200
    assert "names one model twice" in response.content.decode()
    assert not SyncJob.objects.exists()


def test_admin_form_still_takes_one_importer(admin_client):
    response = admin_client.post(
        reverse("admin:djsync_syncjob_add"), job_form(importer="test_products")
    )
    assert response.status_code == 302
    assert SyncJob.objects.get().importer == "test_products"


@pytest.fixture
def user_with(django_user_model):
    def make(*codenames: str):
        name = f"user{django_user_model.objects.count()}"
        user = django_user_model.objects.create_user(name, password="pw", is_staff=True)
        for codename in codenames:
            user.user_permissions.add(Permission.objects.get(codename=codename))
        return django_user_model.objects.get(pk=user.pk)  # fresh permission cache

    return make


def test_a_preview_needs_view_permission_on_every_model(db, user_with, make_job):
    job = make_job("test_categories, test_products", name="catalogue")
    assert permissions.target_models(job) == [Category, Product]
    runs = ("add_syncrun", "view_syncrun")
    assert not permissions.can_preview(user_with(*runs, "view_category"), job)
    user = user_with(*runs, "view_category", "view_product")
    assert permissions.can_preview(user, job)


def test_apply_and_run_need_each_models_write_permissions(db, user_with, make_job):
    job = make_job("test_categories, test_products", name="catalogue")
    run = SyncRun.objects.create(
        job=job,
        trigger="admin",
        dry_run=True,
        status="previewed",
        created=2,
        stats={
            "testapp.Category": {"created": 1, "updated": 0, "deleted": 0},
            "testapp.Product": {"created": 1, "updated": 0, "deleted": 0},
        },
    )
    base = ("add_syncrun", "view_syncrun", "view_category", "view_product")
    user = user_with(*base, "add_category")
    assert permissions.missing_apply_permissions(user, run) == ["testapp.add_product"]
    missing = permissions.missing_run_permissions(user, job)
    assert "testapp.add_product" in missing and "testapp.add_category" not in missing
    assert "testapp.delete_product" in missing  # the products importer deletes


def test_preview_now_runs_a_multi_model_job_from_the_admin(
    admin_client, make_job, write_csv, django_capture_on_commit_callbacks
):
    cats = write_csv([{"code": "tools", "name": "Tools"}], "cats.csv")
    prods = write_csv(
        [
            {
                "sku": "A",
                "name": "Saw",
                "price": "1",
                "qty": "1",
                "updated": "",
                "active": "yes",
                "category_code": "tools",
            }
        ],
        "products.csv",
    )
    sources = {"test_categories": {"path": cats.name}, "test_products": {"path": prods.name}}
    job = make_job("test_categories, test_products", name="catalogue", source={"sources": sources})
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:djsync_syncjob_changelist"),
            {"action": "preview_now", "_selected_action": [job.pk]},
        )
    assert response.status_code == 302
    run = SyncRun.objects.get()
    assert run.status == "previewed", run.error
    assert run.stats["testapp.Category"]["created"] == 1
    assert run.stats["testapp.Product"]["created"] == 1
    page = admin_client.get(reverse("admin:djsync_syncrun_change", args=[run.pk]))
    assert page.status_code == 200

"""The admin's runs in a background thread of the web process (eager Celery, the in-process
default): the request returns at once and its progress page follows the run.

These tests commit (``transaction=True``): a thread's own connection sees only what was
committed. The run of ``test_products_waiting`` waits at a row whose SKU is WAIT until the
test opens ``GATE``; then the test waits for the thread (``wait_for_background_runs``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from djsync import tasks
from djsync.models import SyncRun
from tests.testapp.models import Product
from tests.testapp.sync import GATE

pytestmark = pytest.mark.django_db(transaction=True)

HEADER = ["sku", "name", "price", "qty", "updated", "active"]
PERMS = (
    "djsync.add_syncrun",
    "djsync.view_syncrun",
    "djsync.view_syncjob",
    "djsync.change_syncjob",
    "testapp.view_product",
    "testapp.add_product",
    "testapp.change_product",
    "testapp.delete_product",
)


@pytest.fixture(autouse=True)
def threads(settings, tmp_path) -> Iterator[None]:
    """Threads on, as a site without a broker has them; every thread waited for."""
    settings.DJSYNC = {
        **settings.DJSYNC,
        "BACKGROUND_THREADS": True,
        "UPLOAD_ROOT": str(tmp_path / "uploads"),
    }
    GATE.clear()
    yield
    GATE.set()  # a failed test must not leave a thread waiting
    assert tasks.wait_for_background_runs(timeout=30)
    GATE.clear()


@pytest.fixture
def client(make_job, django_user_model) -> Client:
    user = django_user_model.objects.create_user("owner", is_staff=True)
    for perm in PERMS:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


def upload(rows: list[list[str]]) -> SimpleUploadedFile:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerows([HEADER, *rows])
    return SimpleUploadedFile("products.csv", buffer.getvalue().encode(), "text/csv")


def run_url(run: SyncRun, name: str) -> str:
    return reverse(f"admin:djsync_syncrun_{name}", args=[run.pk])


def status(client: Client, run: SyncRun, step: str = "preview") -> dict[str, Any]:
    return client.get(run_url(run, "status"), {"step": step}).json()


def test_an_upload_lands_on_the_progress_page_before_its_preview_is_done(make_job, client):
    job = make_job("test_products_waiting", name="waiting")
    response = client.post(
        reverse("admin:djsync_syncjob_upload", args=[job.pk]),
        {
            "file": upload(
                [["WAIT", "Wait", "1", "1", "", "yes"], ["C1", "Cup", "3", "1", "", "yes"]]
            )
        },
    )
    run = SyncRun.objects.get()
    assert response.status_code == 302  # the preview waits at the gate meanwhile
    assert response["Location"] == f"{run_url(run, 'progress')}?step=preview"
    assert client.get(response["Location"]).status_code == 200
    waiting = status(client, run)
    assert waiting["done"] is False and waiting["status"] in ("queued", "reading")
    assert tasks.working_on(run.pk)  # its page never takes it for dead meanwhile
    GATE.set()
    assert tasks.wait_for_background_runs(timeout=30)
    assert not tasks.working_on(run.pk)
    done = status(client, run)
    assert done["done"] is True and done["status"] == "previewed", done["error"]
    assert done["counts"]["created"] == 2
    assert not Product.objects.exists()  # a preview writes nothing


def test_an_apply_and_run_now_work_in_the_background_too(make_job, client, tmp_path):
    job = make_job("test_products", name="products", source={"path": "prices.csv"})
    client.post(
        reverse("admin:djsync_syncjob_upload", args=[job.pk]),
        {"file": upload([["C1", "Cup", "3", "1", "", "yes"]])},
    )
    assert tasks.wait_for_background_runs(timeout=30)
    run = SyncRun.objects.get()
    assert run.status == "previewed", run.error
    response = client.post(run_url(run, "apply"))
    assert response["Location"] == f"{run_url(run, 'progress')}?step=apply"
    assert tasks.wait_for_background_runs(timeout=30)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert status(client, run, "apply")["done"] is True
    assert Product.objects.get().name == "Cup"

    rows = [["WAIT", "Wait", "1", "1", "", "yes"], ["C1", "Cup", "3", "1", "", "yes"]]
    rows.append(["C2", "Mug", "4", "2", "", "yes"])
    (tmp_path / "prices.csv").write_bytes(upload(rows).read())
    waiting = make_job("test_products_waiting", name="waiting", source={"path": "prices.csv"})
    response = client.post(
        reverse("admin:djsync_syncjob_changelist"),
        {"action": "run_now", "_selected_action": [waiting.pk]},
    )
    started = SyncRun.objects.get(job=waiting)
    assert response["Location"] == f"{run_url(started, 'progress')}?step=run"
    assert started.status in ("queued", "reading")  # waiting at the gate
    GATE.set()
    assert tasks.wait_for_background_runs(timeout=30)
    started.refresh_from_db()
    assert started.status == "succeeded", started.error
    assert Product.objects.get(sku="C2").name == "Mug"


def test_a_crash_in_the_thread_fails_the_run_and_frees_the_job(make_job, client):
    job = make_job("test_products_waiting", name="waiting")
    GATE.set()
    client.post(
        reverse("admin:djsync_syncjob_upload", args=[job.pk]),
        {"file": upload([["CRASH", "Cup", "3", "1", "", "yes"]])},
    )
    assert tasks.wait_for_background_runs(timeout=30)
    run = SyncRun.objects.get()
    assert run.status == "failed" and "Crash: the process lost its footing" in run.error
    assert status(client, run)["done"] is True
    client.post(
        reverse("admin:djsync_syncjob_upload", args=[job.pk]),
        {"file": upload([["C1", "Cup", "3", "1", "", "yes"]])},
    )
    assert tasks.wait_for_background_runs(timeout=30)
    again = SyncRun.objects.latest("pk")
    assert again.status == "previewed", again.error  # the crashed run's lock was given back


def test_a_run_whose_thread_died_is_failed_by_its_progress_page(make_job, client, settings):
    """A process that stopped mid-run leaves its run "reading" with no heartbeat and its
    lock free: the page that polls it marks it failed instead of waiting for ever."""
    job = make_job("test_products", name="products")
    long_ago = timezone.now() - timedelta(seconds=600)
    run = SyncRun.objects.create(
        job=job,
        trigger="admin",
        dry_run=True,
        status="reading",
        started_at=long_ago,
        heartbeat_at=long_ago,
    )
    data = status(client, run)
    assert data["status"] == "failed" and data["done"] is True
    assert "the worker running it stopped during reading" in data["error"]


def test_without_threads_the_upload_is_previewed_inside_the_request(make_job, client, settings):
    settings.DJSYNC = {**settings.DJSYNC, "BACKGROUND_THREADS": False}
    job = make_job("test_products", name="products")
    client.post(
        reverse("admin:djsync_syncjob_upload", args=[job.pk]),
        {"file": upload([["C1", "Cup", "3", "1", "", "yes"]])},
    )
    assert not list(tasks.BACKGROUND_RUNS)
    assert SyncRun.objects.get().status == "previewed"

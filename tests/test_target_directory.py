"""A CSV of staff synced into a real JSON API: the demo's directory (demo_project/directory),
served by the test server, as accounts, groups derived from the departments, and
memberships, in one job, parents first — as a user would do it: runsync, preview → apply,
a beat schedule, with what the API refuses as row errors.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings

import djsync
from demo_project.demo.targets import DirectoryAccounts, DirectoryGroups, DirectoryMemberships
from demo_project.directory.models import Account, Group, Membership
from djsync.exceptions import ConflictError, TargetError
from djsync.mapping.registry import register, unregister
from djsync.models import SyncJob, SyncRowError, SyncRun
from djsync.runs.orchestrator import apply_previewed

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

TOKEN = "tests-directory-token"
JOB_IMPORTERS = "staff-accounts, staff-groups, staff-memberships"


class StaffAccounts(djsync.Importer):
    department = djsync.Field("dept")

    class Meta:
        name = "staff-accounts"
        target = DirectoryAccounts
        keys = ["username"]
        fields = ["username", "email", "full_name", "active", "department"]
        delete = True


class StaffGroups(djsync.Importer):
    class Meta:
        name = "staff-groups"
        target = DirectoryGroups
        keys = ["name"]
        fields = ["name", "description"]
        delete = True


class StaffMemberships(djsync.Importer):
    class Meta:
        name = "staff-memberships"
        target = DirectoryMemberships
        keys = ["account", "group"]
        fields = ["account", "group"]
        delete = True


@pytest.fixture(autouse=True)
def directory(live_server: Any, settings: Any) -> Iterator[str]:
    url = f"{live_server.url}/directory/api/"
    settings.DIRECTORY_API_URL = url
    settings.DJSYNC = {
        **settings.DJSYNC,
        "HTTP_BASE_URLS": [url],
        "CREDENTIALS": {"directory": TOKEN},
        "HTTP_BACKOFF": 0.01,
    }
    for cls in (StaffAccounts, StaffGroups, StaffMemberships):
        register(cls)
    yield url
    for cls in (StaffAccounts, StaffGroups, StaffMemberships):
        unregister(cls.name)


STAFF = [
    {"username": "ann", "email": "ann@example.com", "full_name": "Ann Lee", "active": "yes",
     "dept": "eng", "dept_name": "Engineering"},
    {"username": "bob", "email": "bob@example.com", "full_name": "Bob Ray", "active": "yes",
     "dept": "eng", "dept_name": "Engineering"},
    {"username": "cy", "email": "cy@example.com", "full_name": "Cy Twombly", "active": "no",
     "dept": "art", "dept_name": "Art"},
]  # fmt: skip


@pytest.fixture
def staff_job(make_job: Any, write_csv: Any, job_path: Any) -> Any:
    files = iter(range(1, 100))

    def make(rows: list[dict[str, Any]] = STAFF, **fields: Any) -> Any:
        path = job_path(write_csv(rows, name=f"staff-{next(files)}.csv"))
        source = {
            "sources": {
                "staff-accounts": {"path": path},
                "staff-groups": {
                    "kind": "derived",
                    "from": "staff-accounts",
                    "columns": {"name": "dept", "description": "dept_name"},
                },
                "staff-memberships": {
                    "kind": "derived",
                    "from": "staff-accounts",
                    "columns": {"account": "username", "group": "dept"},
                },
            }
        }
        existing = SyncJob.objects.filter(name="staff").first()
        if existing is not None:  # the next day's file for the same job
            existing.source = source
            existing.save()
            return existing
        return make_job(JOB_IMPORTERS, name="staff", source=source, **fields)

    return make


def directory_state() -> tuple[list[tuple[Any, ...]], list[str], list[tuple[str, str]]]:
    accounts = list(
        Account.objects.order_by("username").values_list("username", "full_name", "active")
    )
    groups = list(Group.objects.order_by("name").values_list("name", flat=True))
    members = sorted(Membership.objects.values_list("account__username", "group__name"))
    return accounts, groups, members


@pytest.mark.parametrize("batch_url", ["batch/", None], ids=["batch", "per-item"])
def test_staff_sync_into_the_api_parents_first_then_converges(
    staff_job: Any, batch_url: str | None, monkeypatch: Any
) -> None:
    for target in (DirectoryAccounts, DirectoryGroups, DirectoryMemberships):
        monkeypatch.setattr(target, "batch_url", batch_url)
    job = staff_job()
    run = djsync.run(job)
    assert run.status == "succeeded", run.error
    assert run.stats["directory.accounts"]["created"] == 3
    assert run.stats["directory.groups"]["created"] == 2
    assert run.stats["directory.memberships"]["created"] == 3
    assert directory_state() == (
        [("ann", "Ann Lee", True), ("bob", "Bob Ray", True), ("cy", "Cy Twombly", False)],
        ["art", "eng"],
        [("ann", "eng"), ("bob", "eng"), ("cy", "art")],
    )
    again = djsync.run(job)  # read back through the API's pages: nothing to do
    assert (again.created, again.updated, again.deleted, again.unchanged) == (0, 0, 0, 8)


def test_day_two_updates_moves_and_removes(staff_job: Any, write_csv: Any) -> None:
    job = staff_job()
    djsync.run(job)
    day2 = [
        dict(STAFF[0], full_name="Ann Lee-Smith"),
        dict(STAFF[2], dept="eng", dept_name="Engineering"),  # cy moves; art empties
    ]
    run = djsync.run(staff_job(day2), force=True)
    assert run.status == "succeeded", run.error
    assert directory_state() == (
        [("ann", "Ann Lee-Smith", True), ("cy", "Cy Twombly", False)],
        ["eng"],
        [("ann", "eng"), ("cy", "eng")],
    )
    patch = run.changes.get(model="directory.accounts", key=["ann"])
    assert patch.changed_fields == ["full_name"]


def test_what_the_api_refuses_is_a_row_error_with_its_answer(staff_job: Any) -> None:
    rows = [*STAFF, dict(STAFF[0], username="dan", email="dan@refused.invalid")]
    run = djsync.run(staff_job(rows, on_row_error="skip"))
    assert run.status == "succeeded"
    error = SyncRowError.objects.get(run=run, model="directory.accounts")
    assert error.key == ["dan"] and error.column == "email"
    assert "answered 400: email: this domain is refused by the directory" in error.message
    # dan's membership was refused too: the API knows no account "dan".
    assert SyncRowError.objects.filter(run=run, model="directory.memberships", key=["dan", "eng"])
    assert not Account.objects.filter(username="dan").exists()
    assert Account.objects.count() == 3


def test_a_refusal_fails_a_strict_run_and_says_what_was_written(staff_job: Any) -> None:
    rows = [*STAFF, dict(STAFF[0], username="dan", email="dan@refused.invalid")]
    with pytest.raises(TargetError, match="the target refused 1 of 4 changes") as caught:
        djsync.run(staff_job(rows))
    run = caught.value.run  # type: ignore[attr-defined]
    # 3 accounts, 2 groups, 3 memberships written; dan and his membership refused.
    assert run.status == "failed" and run.rows_applied == 8 and run.errors == 2
    assert Account.objects.count() == 3  # written before the run failed, and they stay


def test_a_preview_is_applied_unless_the_api_moved_meanwhile(staff_job: Any) -> None:
    job = staff_job()
    preview = djsync.run(job, dry_run=True)
    assert preview.status == "previewed" and Account.objects.count() == 0
    assert apply_previewed(preview).status == "succeeded"
    assert Account.objects.count() == 3

    changed = staff_job([dict(STAFF[0], full_name="Ann B."), *STAFF[1:]])
    stale = djsync.run(changed, dry_run=True)
    Account.objects.filter(username="ann").update(full_name="Ann (edited in the directory)")
    with pytest.raises(ConflictError, match="ann"):
        apply_previewed(stale)
    assert Account.objects.get(username="ann").full_name == "Ann (edited in the directory)"
    assert SyncRun.objects.get(pk=stale.pk).status == "failed"


def test_runsync_dry_run_diff_shows_each_request(staff_job: Any, directory: str) -> None:
    staff_job()
    out = io.StringIO()
    call_command("runsync", "staff", "--dry-run", "--diff", stdout=out)
    text = out.getvalue()
    assert "+ create directory.accounts [ann]" in text
    assert f"→ POST {directory}accounts/batch/ (create 'ann')" in text
    assert Account.objects.count() == 0


@override_settings(DIRECTORY_API_FAIL_EVERY=3)
def test_an_api_that_answers_503_now_and_then_is_retried(staff_job: Any) -> None:
    run = djsync.run(staff_job())
    assert run.status == "succeeded" and Account.objects.count() == 3


def test_a_scheduled_run_syncs_through_the_beat_task(staff_job: Any) -> None:
    from djsync.tasks import run_job

    job = staff_job(schedule="every 10 minutes")
    result = run_job.apply(args=[job.pk], kwargs={"trigger": "schedule"}).get()
    run = SyncRun.objects.get(job=job)
    assert run.trigger == "schedule" and run.status == "succeeded", (result, run.error)
    assert Account.objects.count() == 3


def test_the_preview_page_shows_what_will_be_sent(staff_job: Any, admin_client: Any) -> None:
    preview = djsync.run(staff_job(), dry_run=True)
    page = admin_client.get(f"/admin/djsync/syncrun/{preview.pk}/change/?action=create")
    html = page.content.decode()
    assert page.status_code == 200
    assert "djsync-request" in html and "accounts/batch/ (create &#x27;ann&#x27;)" in html


def test_items_are_sent_as_json_the_api_reads(staff_job: Any) -> None:
    djsync.run(staff_job())
    ann = Account.objects.get(username="ann")
    assert (ann.email, ann.department, ann.active) == ("ann@example.com", "eng", True)
    assert sorted(Group.objects.values_list("name", "description")) == [
        ("art", "Art"),
        ("eng", "Engineering"),
    ]


def test_the_admin_applies_a_preview_of_the_api_target(
    staff_job: Any, admin_client: Any, admin_user: Any
) -> None:
    from django.urls import reverse

    preview = djsync.run(staff_job(), dry_run=True, user=admin_user)
    response = admin_client.post(reverse("admin:djsync_syncrun_apply", args=[preview.pk]))
    assert response.status_code == 302
    preview.refresh_from_db()
    assert preview.status == "succeeded", preview.error
    assert directory_state()[1] == ["art", "eng"] and Account.objects.count() == 3

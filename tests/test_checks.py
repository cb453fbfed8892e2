"""``manage.py check`` says at once everything that is wrong: every problem of every
importer, unknown DJSYNC keys, jobs naming an importer nobody registered."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import models

import djsync
from djsync.apps import check_importers
from djsync.checks import check_jobs, check_settings
from djsync.mapping.registry import register, unregister
from djsync.models import SyncJob
from djsync.targets import Target
from tests.testapp.models import Product


class Sloppy(djsync.Importer):
    category = djsync.Field("category_code", lookup="slug")  # Category has no slug

    class Meta:
        name = "sloppy"
        model = Product
        keys = ["skew"]
        fields = ["name", "prize"]


class Remote(Target):
    label = "remote.things"
    fields = {"code": models.CharField(max_length=10)}


class SloppyRemote(djsync.Importer):
    class Meta:
        name = "sloppy-remote"
        target = Remote
        keys = ["code"]
        fields = ["code", "colour"]


@pytest.fixture
def sloppy() -> Iterator[None]:
    register(Sloppy)
    register(SloppyRemote)
    yield
    unregister("sloppy")
    unregister("sloppy-remote")


def test_every_problem_of_every_importer_at_once(sloppy: None) -> None:
    found = {m.msg for m in check_importers() if m.id == "djsync.E001"}
    assert found == {
        "importer 'sloppy': testapp.Product has no field 'prize'",
        "importer 'sloppy': testapp.Product has no field 'skew'",
        "importer 'sloppy': field 'category': testapp.Category has no field 'slug' to look up by",
        "importer 'sloppy-remote': remote.things has no field 'colour'",
    }


def test_the_registered_importers_of_the_suite_are_clean() -> None:
    assert check_importers() == []


@pytest.mark.django_db
def test_an_unknown_djsync_setting_is_named_with_what_it_may_mean(settings: Any) -> None:
    settings.DJSYNC = {**settings.DJSYNC, "BATCH_SIZ": 10, "NOPE": 1}
    messages = check_settings()
    assert [(m.id, m.msg) for m in messages] == [
        ("djsync.E002", "DJSYNC has an unknown setting 'BATCH_SIZ'"),
        ("djsync.E002", "DJSYNC has an unknown setting 'NOPE'"),
    ]
    assert messages[0].hint == "Did you mean 'BATCH_SIZE'?"
    with pytest.raises(SystemCheckError, match="BATCH_SIZ"):
        call_command("check")


@pytest.mark.django_db
def test_a_job_naming_an_unregistered_importer_is_reported() -> None:
    SyncJob.objects.create(name="ghost", importer="no-such-importer")
    SyncJob.objects.create(name="half", importer="test_categories, gone")
    found = {m.msg for m in check_jobs() if m.id == "djsync.W010"}
    assert any(
        m.startswith("job 'ghost' names no registered importer 'no-such-importer'") for m in found
    )
    assert any(m.startswith("job 'half' names no registered importer 'gone'") for m in found)


def test_a_sqlite_file_with_deferred_transactions_is_warned_about(settings):
    """Django's default for SQLite fails a run on a busy lock; the check names the fix."""
    from djsync.checks import check_sqlite_locking

    file = {"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/site.sqlite3"}
    settings.DATABASES = {"default": file, "memory": {**file, "NAME": ":memory:"}}
    (warning,) = check_sqlite_locking()
    assert warning.id == "djsync.W020" and "'default'" in warning.msg
    assert '"transaction_mode": "IMMEDIATE"' in warning.hint

    file["OPTIONS"] = {"transaction_mode": "IMMEDIATE"}
    assert check_sqlite_locking() == []

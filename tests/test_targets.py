"""Custom targets: a system that is not a Django model, written through the target protocol.

The "system" here is a dict in memory, standing for an LDAP directory or a SaaS SDK; a
test target refuses what such a system would refuse. Everything else — the diff, the
preview, the limits, the staleness check of a stored preview, the history — is djsync's.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import models

import djsync
from djsync.exceptions import ConflictError, LimitExceeded, TargetError
from djsync.mapping.registry import register, unregister
from djsync.models import SyncChange, SyncRowError, SyncRun
from djsync.runs.orchestrator import apply_previewed
from djsync.targets import Refused, Target

pytestmark = pytest.mark.django_db

#: The external system: id → record.
SYSTEM: dict[int, dict[str, Any]] = {}
CALLS: list[tuple[str, int]] = []


class People(Target):
    label = "crm.people"
    fields = {
        "email": models.EmailField(),
        "name": models.CharField(max_length=20),
        "born": models.DateField(null=True),
        "score": models.DecimalField(max_digits=5, decimal_places=2, null=True),
    }
    batch_size = 2

    def read(self) -> Iterator[tuple[Any, dict[str, Any]]]:
        for pk, record in SYSTEM.items():
            # As an SDK gives it: dates and decimals as text.
            yield pk, {k: (None if v is None else str(v)) for k, v in record.items()}

    def create(self, batch: list[Any]) -> list[Refused]:
        CALLS.append(("create", len(batch)))
        refused = []
        for action in batch:
            if action.values["name"].startswith("Bad"):
                refused.append(Refused(action, "names may not start with Bad", "name"))
                continue
            SYSTEM[max(SYSTEM, default=0) + 1] = dict(action.values)
        return refused

    def update(self, batch: list[Any]) -> list[Refused]:
        CALLS.append(("update", len(batch)))
        for action in batch:
            SYSTEM[int(action.pk)].update(action.new)
        return []

    def delete(self, batch: list[Any]) -> list[Refused]:
        CALLS.append(("delete", len(batch)))
        for action in batch:
            SYSTEM.pop(int(action.pk), None)
        return []


class PeopleImporter(djsync.Importer):
    class Meta:
        name = "crm-people"
        target = People
        keys = ["email"]
        fields = "__all__"
        delete = True


@pytest.fixture(autouse=True)
def people() -> Iterator[None]:
    SYSTEM.clear()
    CALLS.clear()
    register(PeopleImporter)
    yield
    unregister("crm-people")


@pytest.fixture
def job(make_job: Any, write_csv: Any, job_path: Any) -> Any:
    def make(rows: list[dict[str, Any]], **fields: Any) -> Any:
        path = write_csv(rows)
        return make_job("crm-people", name="people", source={"path": job_path(path)}, **fields)

    return make


ROWS = [
    {"email": "ada@example.com", "name": "Ada", "born": "1815-12-10", "score": "9.50"},
    {"email": "alan@example.com", "name": "Alan", "born": "", "score": "7"},
    {"email": "grace@example.com", "name": "Grace", "born": "1906-12-09", "score": ""},
]


def test_a_csv_syncs_into_the_system_and_a_second_run_changes_nothing(job: Any) -> None:
    the_job = job(ROWS)
    run = djsync.run(the_job)
    assert (run.status, run.created, run.rows_applied) == ("succeeded", 3, 3)
    assert sorted(r["name"] for r in SYSTEM.values()) == ["Ada", "Alan", "Grace"]
    assert CALLS == [("create", 2), ("create", 1)]  # batches of batch_size
    assert run.stats["crm.people"]["path"] == "generic: written by People"
    again = djsync.run(the_job)  # values read back as text compare equal after conversion
    assert (again.created, again.updated, again.deleted, again.unchanged) == (0, 0, 0, 3)


def test_updates_send_only_changed_fields_and_deletes_go(job: Any, write_csv: Any) -> None:
    the_job = job(ROWS)
    djsync.run(the_job)
    changed = [dict(ROWS[0], score="9.75"), ROWS[1]]
    run = djsync.run(the_job, file=write_csv(changed, name="day2.csv"))
    assert (run.updated, run.deleted) == (1, 1)
    change = run.changes.get(action="update")
    assert change.changed_fields == ["score"]
    assert (change.before, change.after) == ({"score": "9.50"}, {"score": "9.75"})
    assert sorted(r["email"] for r in SYSTEM.values()) == ["ada@example.com", "alan@example.com"]


def test_what_the_system_refuses_is_a_row_error_and_the_rest_is_written(job: Any) -> None:
    rows = [*ROWS, {"email": "bad@example.com", "name": "Bad Bob", "born": "", "score": ""}]
    the_job = job(rows, on_row_error="skip")
    run = djsync.run(the_job)
    assert run.status == "succeeded"
    assert (run.created, run.errors, run.rows_applied) == (3, 1, 3)  # what was created
    assert "the target refused 1 of 4 changes" in run.warnings[0]
    error = SyncRowError.objects.get(run=run)
    assert (error.key, error.column) == (["bad@example.com"], "name")
    assert "names may not start with Bad" in error.message
    refused = SyncChange.objects.get(run=run, key=["bad@example.com"])
    assert refused.error == "names may not start with Bad"
    assert run.stats["crm.people"]["refused"] == {"create": 1}
    # A new run tries the refused one again, and only that one.
    again = djsync.run(the_job)
    assert (again.created, again.unchanged, again.errors) == (0, 3, 1)  # refused again


def test_a_refusal_fails_a_run_that_fails_on_row_errors_but_keeps_what_was_written(
    job: Any,
) -> None:
    rows = [{"email": "bad@example.com", "name": "Bad Bob", "born": "", "score": ""}, *ROWS]
    with pytest.raises(TargetError, match="refused 1 of 4") as caught:
        djsync.run(job(rows))
    run = caught.value.run  # type: ignore[attr-defined]
    assert run.status == "failed" and run.rows_applied == 3
    assert len(SYSTEM) == 3  # not transactional: nothing to roll back
    assert SyncRowError.objects.filter(run=run).count() == 1


def test_a_failure_half_way_says_how_much_stays_written(job: Any, monkeypatch: Any) -> None:
    def create(self: People, batch: list[Any]) -> list[Refused]:
        if SYSTEM:
            raise TargetError("the CRM went down")
        SYSTEM.update({i + 1: dict(a.values) for i, a in enumerate(batch)})
        return []

    monkeypatch.setattr(People, "create", create)
    with pytest.raises(TargetError, match="2 of 3 changes were written") as caught:
        djsync.run(job(ROWS))
    run = caught.value.run  # type: ignore[attr-defined]
    assert run.status == "failed" and "the CRM went down" in run.error
    assert run.rows_applied == 2


def test_limits_and_the_delete_guard_hold_before_anything_is_sent(job: Any, write_csv: Any) -> None:
    the_job = job(ROWS)
    djsync.run(the_job)
    CALLS.clear()
    with pytest.raises(LimitExceeded):
        djsync.run(the_job, file=write_csv(ROWS[:1], name="short.csv"))  # 2 of 3 go: guard
    with pytest.raises(LimitExceeded):
        djsync.run(
            the_job, file=write_csv([*ROWS, dict(ROWS[0], email="new@example.com")]), max_create=0
        )
    assert CALLS == []


def test_a_preview_is_applied_later_unless_the_system_moved(job: Any, write_csv: Any) -> None:
    the_job = job(ROWS)
    djsync.run(the_job)
    day2 = [dict(ROWS[0], name="Ada L."), ROWS[1], ROWS[2]]
    preview = djsync.run(the_job, file=write_csv(day2, name="day2.csv"), dry_run=True)
    assert preview.status == "previewed" and preview.updated == 1
    applied = apply_previewed(preview)
    assert applied.status == "succeeded"
    assert any(r["name"] == "Ada L." for r in SYSTEM.values())

    day3 = [dict(ROWS[0], name="Ada K."), ROWS[1], ROWS[2]]
    stale = djsync.run(the_job, file=write_csv(day3, name="day3.csv"), dry_run=True)
    for record in SYSTEM.values():  # someone edits Ada in the CRM meanwhile
        if record["email"] == "ada@example.com":
            record["name"] = "Ada (CRM)"
    with pytest.raises(ConflictError, match="ada@example.com"):
        apply_previewed(stale)
    assert SyncRun.objects.get(pk=stale.pk).status == "failed"
    assert any(r["name"] == "Ada (CRM)" for r in SYSTEM.values())


def test_runsync_dry_run_diff_shows_what_would_be_sent(job: Any) -> None:
    job(ROWS)
    out = io.StringIO()
    call_command("runsync", "people", "--dry-run", "--diff", stdout=out)
    text = out.getvalue()
    assert "ada@example.com" in text and "crm.people" in text
    assert SYSTEM == {}


@pytest.mark.django_db(transaction=True)
def test_writing_to_a_system_holds_no_transaction_of_djsync_s_database(
    job: Any, monkeypatch: Any
) -> None:
    """Nothing to roll back on the system's side, and a transaction held across its writes
    would keep the run's progress and lock renewals uncommitted (on SQLite: the job's lease
    could not be renewed at all)."""
    from django.db import connection

    seen: list[bool] = []
    create = People.create

    def watched(self: People, batch: list[Any]) -> list[Refused]:
        seen.append(connection.in_atomic_block)
        return create(self, batch)

    monkeypatch.setattr(People, "create", watched)
    assert djsync.run(job(ROWS)).status == "succeeded"
    assert seen and not any(seen)

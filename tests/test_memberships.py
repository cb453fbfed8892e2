"""Many-to-many membership sync: members added and removed, shown in the plan as such."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

import djsync
from djsync.engine.apply import apply_plan
from djsync.exceptions import ConfigurationError, RowErrorsFound
from djsync.mapping.memberships import MembershipImporter
from djsync.runs.orchestrator import apply_previewed
from djsync.sources import FileSource
from tests.testapp.models import Employee, Team


def members() -> dict[str, list[int]]:
    return {
        team.code: sorted(team.members.values_list("number", flat=True))
        for team in Team.objects.order_by("code")
    }


@pytest.fixture
def staff(db):
    people = {n: Employee.objects.create(number=n, name=f"E{n}") for n in range(1, 7)}
    sales = Team.objects.create(code="sales")
    ops = Team.objects.create(code="ops")
    sales.members.set([people[1], people[2], people[5]])
    ops.members.set([people[3], people[6]])
    return people


@pytest.fixture
def memberships_csv(write_csv):
    def write(*pairs: tuple[str, int]):
        return write_csv([{"team": t, "employee": n} for t, n in pairs], "members.csv")

    return write


def runsync(*args) -> str:
    out, err = StringIO(), StringIO()
    call_command("runsync", *[str(a) for a in args], stdout=out, stderr=err)
    return out.getvalue()


def test_added_and_removed_members_are_creates_and_deletes(staff, memberships_csv, make_job):
    path = memberships_csv(("sales", 1), ("sales", 3), ("sales", 5), ("ops", 3), ("ops", 4))
    run = djsync.run(make_job("test_team_members"), file=path)
    assert run.status == "succeeded", run.error
    # sales: +3 −2; ops: +4 −6
    assert (run.created, run.deleted, run.updated, run.unchanged) == (2, 2, 0, 3)
    assert members() == {"ops": [3, 4], "sales": [1, 3, 5]}
    added = sorted(run.changes.filter(action="create").values_list("key", flat=True))
    removed = sorted(run.changes.filter(action="delete").values_list("key", flat=True))
    assert added == [["ops", 4], ["sales", 3]]
    assert removed == [["ops", 6], ["sales", 2]]
    assert Employee.objects.count() == 6  # members are linked and unlinked, never deleted


def test_runsync_labels_the_changes_as_membership(staff, memberships_csv, make_job):
    path = memberships_csv(("sales", 1), ("sales", 3), ("sales", 5), ("ops", 3), ("ops", 6))
    make_job("test_team_members", source={"path": path.name})
    out = runsync("test-team-members", "--dry-run", "--diff")
    assert "memberships of testapp.Team.members: 1 added, 1 removed" in out
    assert "+ add membership testapp.Team.members [sales, 3]" in out
    assert "- remove membership testapp.Team.members [sales, 2]" in out
    assert members()["sales"] == [1, 2, 5]  # a dry run


def test_preview_then_apply(staff, memberships_csv, make_job):
    path = memberships_csv(("sales", 1), ("sales", 2), ("ops", 3), ("ops", 6), ("ops", 5))
    run = djsync.run(make_job("test_team_members"), file=path, dry_run=True)
    assert run.status == "previewed" and (run.created, run.deleted) == (1, 1)
    assert members()["ops"] == [3, 6]
    apply_previewed(run)
    assert members() == {"ops": [3, 5, 6], "sales": [1, 2]}


def test_an_unknown_member_or_group_is_a_row_error_and_nothing_changes(
    staff, memberships_csv, make_job
):
    path = memberships_csv(("sales", 1), ("sales", 99), ("hr", 3))
    with pytest.raises(RowErrorsFound) as info:
        djsync.run(make_job("test_team_members"), file=path)
    messages = {(e.row, e.column): e.message for e in info.value.run.row_errors.all()}
    assert messages == {
        (3, "employee"): "no employee with number 99",
        (4, "team"): "no team with code 'hr'",
    }
    assert members() == {"ops": [3, 6], "sales": [1, 2, 5]}


def test_a_scope_limits_which_groups_the_source_is_the_truth_for(staff, memberships_csv):
    class SalesMembers(MembershipImporter):
        class Meta:
            relation = "testapp.Team.members"
            group_column, group_lookup = "team", "code"
            member_column, member_lookup = "employee", "number"
            scope = {"team__code": "sales"}

    importer = SalesMembers()
    importer.fast_path = False
    plan = importer.build_plan(
        FileSource(memberships_csv(("sales", 1), ("sales", 4))), SalesMembers.default_switches()
    )
    apply_plan(plan, importer)
    assert members() == {"ops": [3, 6], "sales": [1, 4]}  # ops untouched


def test_the_relation_must_be_a_forward_many_to_many_field(db):
    with pytest.raises(ConfigurationError, match="reverse side"):

        class Reverse(MembershipImporter):
            class Meta:
                relation = Employee.teams

    with pytest.raises(ConfigurationError, match="no many-to-many field"):

        class Missing(MembershipImporter):
            class Meta:
                relation = "testapp.Team.nobody"


def test_groups_derived_from_a_column_and_memberships_in_one_job(write_csv, make_job):
    """Teams from the employees' department column, the employees, and who is in which
    team: one file, one run; day 2 moves one employee and drops another."""

    def employees(*rows):
        return write_csv([{"number": n, "name": f"E{n}", "dept": d} for n, d in rows], "emp.csv")

    source = {
        "path": employees((1, "sales"), (2, "sales"), (3, "ops"), (4, "ops"), (5, "hr")).name,
        "sources": {
            "test_teams": {
                "kind": "derived",
                "from": "test_employees",
                "columns": {"code": "dept"},
            },
            "test_team_members": {
                "kind": "derived",
                "from": "test_employees",
                "columns": {"team": "dept", "employee": "number"},
            },
        },
    }
    job = make_job("test_team_members, test_employees, test_teams", name="staff", source=source)
    run = djsync.run(job)
    assert run.status == "succeeded", run.error
    assert run.stats["testapp.Team"]["created"] == 3
    assert run.stats["testapp.Employee"]["created"] == 5
    assert run.stats["testapp.Team_members"]["created"] == 5
    assert members() == {"hr": [5], "ops": [3, 4], "sales": [1, 2]}

    source["path"] = employees((1, "sales"), (2, "ops"), (3, "ops"), (5, "hr"), (6, "hr")).name
    job.source = source
    job.save()
    run = djsync.run(job, force=True)
    assert run.status == "succeeded", run.error
    assert run.stats["testapp.Team_members"]["created"] == 2  # (ops, 2), (hr, 6)
    assert run.stats["testapp.Team_members"]["deleted"] == 2  # (sales, 2), (ops, 4)
    assert members() == {"hr": [5, 6], "ops": [2, 3], "sales": [1]}
    assert not Employee.objects.filter(number=4).exists()

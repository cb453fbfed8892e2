"""The run lifecycle (djsync.runs.lifecycle): every (status, transition) pair, and races.

Each transition is tried from every status: where the table allows it, it happens; where
not, it raises RunStateError in one line and the row is left exactly as it was. Races are
decided by the database: of several callers, exactly one wins.
"""

from __future__ import annotations

import ast
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from djsync.exceptions import RunCancelled, RunStateError, TransientSourceError
from djsync.models import SyncJob, SyncRun
from djsync.runs import lifecycle
from djsync.runs.progress import Progress

Q, R, D, P, A = "queued", "reading", "diffing", "previewed", "applying"
S, F, C, X = "succeeded", "failed", "cancelled", "discarded"
STATUSES = [Q, R, D, P, A, S, F, C, X]

#: Written out by hand (not derived from the table it checks): transition, status it goes
#: to → the statuses it may come from.
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("claim", R): {Q},
    ("advance", R): {R},
    ("advance", D): {R},
    ("advance", A): {D, A},
    ("claim_preview", A): {P},
    ("finish", P): {D},
    ("finish", S): {A},  # an export applies like any run (it no longer ends while reading)
    ("fail", F): {Q, R, D, A, P},
    ("stop", C): {R, D, A, P},
    ("requeue", Q): {R, D, A},
    ("cancel", C): {Q},
    ("discard", X): {P},
    ("mark_dead", F): {R, D, A},
}


def test_the_table_is_the_one_written_here() -> None:
    table = {(name, to): set() for name, pairs in lifecycle.TRANSITIONS.items() for _, to in pairs}
    for name, pairs in lifecycle.TRANSITIONS.items():
        for old, to in pairs:
            table[name, to].add(old)
    assert table == EXPECTED
    assert set(lifecycle.STATUSES) == set(SyncRun.Status.values)
    assert set(lifecycle.RUNNING) == {R, D, A}
    assert {s for s in STATUSES if not lifecycle.ALLOWED[s]} == set(SyncRun.DONE)


def _retry(run: SyncRun) -> bool:
    token = lifecycle.retry_pending.set(True)
    try:
        return SyncRun.objects.fail(run, TransientSourceError("the server is busy"))
    finally:
        lifecycle.retry_pending.reset(token)


#: transition, status it goes to, the call that makes it (True when it happened).
CALLS: list[tuple[str, str, Callable[[SyncRun], Any]]] = [
    ("advance", R, lambda run: SyncRun.objects.advance(run, R, source_name="b.csv")),
    ("advance", D, lambda run: SyncRun.objects.advance(run, D)),
    ("advance", A, lambda run: SyncRun.objects.advance(run, A, dry_run=False)),
    ("claim_preview", A, lambda run: SyncRun.objects.claim_preview(run)),
    ("finish", P, lambda run: SyncRun.objects.finish(run, P)),
    ("finish", S, lambda run: SyncRun.objects.finish(run, S)),
    ("fail", F, lambda run: SyncRun.objects.fail(run, ValueError("boom"))),
    ("stop", C, lambda run: SyncRun.objects.fail(run, RunCancelled("cancelled"))),
    ("requeue", Q, _retry),
    ("cancel", C, lambda run: SyncRun.objects.cancel(run)),
    ("discard", X, lambda run: SyncRun.objects.discard(run)),
    ("mark_dead", F, lambda run: SyncRun.objects.mark_dead(run)),
]


@pytest.fixture
def job(db: None) -> SyncJob:
    return SyncJob.objects.create(name="lifecycle", importer="test_products")


def make_run(job: SyncJob, status: str, **fields: Any) -> SyncRun:
    return SyncRun.objects.create(job=job, trigger="api", status=status, **fields)


def row(run: SyncRun) -> dict[str, Any]:
    return SyncRun.objects.filter(pk=run.pk).values().get()


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize(("name", "to", "call"), CALLS, ids=[f"{n}-{t}" for n, t, _ in CALLS])
def test_every_transition_from_every_status(
    job: SyncJob, status: str, name: str, to: str, call: Callable[[SyncRun], Any]
) -> None:
    run = make_run(job, status)
    before = row(run)
    if status in EXPECTED[name, to]:
        assert call(run) is True
        assert run.status == to and row(run)["status"] == to
    elif name == "cancel" and status in lifecycle.RUNNING:
        # Not a status change: the running run is asked to stop at its next check.
        assert call(run) is False
        assert row(run) == {**before, "cancel_requested": True}
    else:
        with pytest.raises(RunStateError) as refused:
            call(run)
        message = str(refused.value)
        assert "\n" not in message and message.startswith(f"run #{run.pk} is {status}; ")
        assert row(run) == before


@pytest.mark.parametrize("status", STATUSES)
def test_claim_takes_only_a_queued_run(job: SyncJob, status: str) -> None:
    """By id, a run in another status is a second delivery or a cancel: None, untouched."""
    run = make_run(job, status)
    before = row(run)
    claimed = SyncRun.objects.claim(run.pk, "task-1")
    if status == Q:
        assert claimed is not None and claimed.status == R
        after = row(run)
        assert (after["attempts"], after["task_id"], after["finished_at"]) == (1, "task-1", None)
        assert after["started_at"] and after["heartbeat_at"]
    else:
        assert claimed is None and row(run) == before


def test_refusals_say_what_the_door_needs(job: SyncJob) -> None:
    done = make_run(job, S)
    for call, rule in [
        (SyncRun.objects.claim_preview, "only a previewed run can be applied"),
        (SyncRun.objects.discard, "only a previewed run can be discarded"),
        (SyncRun.objects.cancel, "only a queued or running run can be cancelled"),
    ]:
        with pytest.raises(RunStateError, match=f"^run #{done.pk} is succeeded; {rule}$"):
            call(done)
    with pytest.raises(RunStateError, match=f"^run #{done.pk} is succeeded; it cannot go to d"):
        SyncRun.objects.advance(done, D)


# -- what a transition writes -----------------------------------------------------------
def test_finish_saves_what_the_run_recorded_and_tells_progress(job: SyncJob) -> None:
    run = make_run(job, A)
    run.created, run.rows_applied, run.stats = 3, 3, {"testapp.Product": {"created": 3}}
    run.warnings = ["a warning"]
    seen: list[str] = []
    assert SyncRun.objects.finish(run, S, progress=Progress(on_status=seen.append))
    saved = SyncRun.objects.get(pk=run.pk)
    assert (saved.status, saved.created, saved.rows_applied) == (S, 3, 3)
    assert saved.stats == {"testapp.Product": {"created": 3}} and saved.warnings == ["a warning"]
    assert saved.finished_at == run.finished_at is not None
    assert seen == [S]


def test_record_saves_the_counts_but_never_over_another_status(job: SyncJob) -> None:
    run = make_run(job, D)
    run.created, run.warnings = 5, ["w"]
    assert SyncRun.objects.record(run) is True
    assert (row(run)["status"], row(run)["created"], row(run)["warnings"]) == (D, 5, ["w"])
    SyncRun.objects.mark_dead(SyncRun.objects.get(pk=run.pk))
    before = row(run)
    run.created = 6
    assert SyncRun.objects.record(run) is False
    assert row(run) == before


def test_advance_writes_its_fields_and_a_heartbeat(job: SyncJob) -> None:
    run = make_run(job, R)
    seen: list[str] = []
    assert SyncRun.objects.advance(
        run, R, progress=Progress(on_status=seen.append), source_name="a.csv"
    )
    saved = row(run)
    assert saved["source_name"] == run.source_name == "a.csv"
    assert saved["heartbeat_at"] == run.heartbeat_at is not None
    assert seen == [R]


def test_fail_records_the_cause_on_one_line_and_mails_it(job: SyncJob, mailoutbox: list) -> None:
    job.notify_on_failure = ["ops@example.com"]
    job.save()
    run = make_run(job, D)
    assert SyncRun.objects.fail(run, ValueError("bad\n  DETAIL: row 3"))
    saved = row(run)
    assert (saved["status"], saved["error"]) == (F, "ValueError: bad DETAIL: row 3")
    assert [m.subject for m in mailoutbox] == [f"[djsync] lifecycle: run #{run.pk} failed"]


def test_cancel_a_queued_run_and_ask_a_running_one(job: SyncJob) -> None:
    queued = make_run(job, Q)
    assert SyncRun.objects.cancel(queued) is True
    saved = row(queued)
    assert (saved["status"], saved["cancel_requested"]) == (C, True)
    assert saved["error"] == "cancelled before it started" and saved["finished_at"]
    running = make_run(job, D)
    assert SyncRun.objects.cancel(running) is False
    assert row(running)["status"] == D and row(running)["cancel_requested"] is True


def test_cancel_decides_by_the_database_not_by_the_status_it_was_given(job: SyncJob) -> None:
    """A page showed the run running; it is queued again (a retry): cancelled at once."""
    run = make_run(job, Q)
    run.status = R
    assert SyncRun.objects.cancel(run) is True and row(run)["status"] == C


def test_discard_previews_discards_only_previews(job: SyncJob) -> None:
    runs = {status: make_run(job, status) for status in STATUSES}
    assert SyncRun.objects.filter(job=job).discard_previews() == 1
    assert {s: row(r)["status"] for s, r in runs.items()} == {
        **{s: s for s in STATUSES},
        P: X,
    }


def test_a_preview_kept_with_a_note_and_the_note_cleared(job: SyncJob) -> None:
    preview, done = make_run(job, P), make_run(job, S)
    assert SyncRun.objects.keep_preview(preview, "the job is busy") is True
    assert row(preview)["error"] == preview.error == "not applied: the job is busy"
    assert SyncRun.objects.keep_preview(done, "the job is busy") is False
    assert row(done)["error"] == ""
    SyncRun.objects.clear_preview_note(preview)
    assert row(preview)["error"] == ""


# -- races --------------------------------------------------------------------------------
def test_a_stale_caller_loses_and_changes_nothing(job: SyncJob) -> None:
    """Two tabs: the second's copy still says previewed; the database says discarded."""
    first = make_run(job, P)
    second = SyncRun.objects.get(pk=first.pk)
    assert SyncRun.objects.discard(first) is True
    before = row(first)
    assert SyncRun.objects.claim_preview(second) is False
    assert second.status == P and row(second) == before


def test_the_worker_that_was_marked_dead_does_not_end_the_run_again(
    job: SyncJob, mailoutbox: list
) -> None:
    job.notify_on_failure = ["ops@example.com"]
    job.save()
    worker = make_run(job, A)
    reaper = SyncRun.objects.get(pk=worker.pk)
    assert SyncRun.objects.mark_dead(reaper) is True
    assert SyncRun.objects.finish(worker, S) is False
    assert SyncRun.objects.fail(worker, ValueError("late")) is False
    saved = row(worker)
    assert saved["status"] == F and saved["error"].startswith("the worker running it stopped")
    assert len(mailoutbox) == 1


def race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` at the same moment, each in its own thread and database connection
    (PostgreSQL); one after the other on SQLite (one writer at a time)."""
    if connection.vendor == "sqlite":
        return [call() for call in calls]
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def work(index: int) -> None:
        try:
            start.wait()
            results[index] = calls[index]()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.django_db(transaction=True)
def test_two_applies_of_one_preview_exactly_one_wins() -> None:
    job = SyncJob.objects.create(name="lifecycle-race", importer="test_products")
    for _ in range(10):
        run = make_run(job, P)
        copies = [SyncRun.objects.get(pk=run.pk) for _ in range(4)]
        results = race([lambda c=c: SyncRun.objects.claim_preview(c) for c in copies])
        assert sorted(results, key=str) == [False, False, False, True]
        assert row(run)["status"] == A
        assert sorted(c.status for c in copies) == [A, P, P, P]


@pytest.mark.django_db(transaction=True)
def test_two_deliveries_of_one_task_exactly_one_claims() -> None:
    job = SyncJob.objects.create(name="lifecycle-claim", importer="test_products")
    for _ in range(10):
        run = make_run(job, Q)
        results = race(
            [lambda i=i, pk=run.pk: SyncRun.objects.claim(pk, f"t{i}") for i in range(4)]
        )
        won = [r for r in results if r is not None]
        assert len(won) == 1 and isinstance(won[0], SyncRun), results
        assert row(run)["attempts"] == 1 and row(run)["task_id"] == won[0].task_id


@pytest.mark.django_db(transaction=True)
def test_discard_against_apply_one_wins() -> None:
    job = SyncJob.objects.create(name="lifecycle-discard", importer="test_products")
    for _ in range(10):
        run = make_run(job, P)
        tab, other = SyncRun.objects.get(pk=run.pk), SyncRun.objects.get(pk=run.pk)
        results = race(
            [
                lambda tab=tab: SyncRun.objects.claim_preview(tab),
                lambda other=other: SyncRun.objects.discard(other),
            ]
        )
        assert sorted(results) == [False, True]
        assert row(run)["status"] == (A if results[0] else X)


# -- one place ----------------------------------------------------------------------------
def status_writes(source: str) -> list[str]:
    """Where ``source`` changes a run's status other than through a transition: an
    ``update(status=...)``, an assignment to ``<run>.status`` or a ``<run>.save()``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "update" and any(k.arg == "status" for k in node.keywords):
                found.append(f"line {node.lineno}: update(status=...)")
            owner = node.func.value
            if node.func.attr == "save" and isinstance(owner, ast.Name) and "run" in owner.id:
                found.append(f"line {node.lineno}: {owner.id}.save()")
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and target.attr == "status"
                    and isinstance(target.value, ast.Name)
                    and "run" in target.value.id
                ):
                    found.append(f"line {node.lineno}: {target.value.id}.status = ...")
    return found


def test_no_module_but_the_lifecycle_changes_a_run_status() -> None:
    package = Path(lifecycle.__file__).parent
    writes = {
        str(path.relative_to(package)): found
        for path in sorted(package.rglob("*.py"))
        if "migrations" not in path.parts and path.name != "lifecycle.py"
        if (found := status_writes(path.read_text(encoding="utf-8")))
    }
    assert writes == {}


def test_the_status_write_finder_finds_them() -> None:
    source = (
        "SyncRun.objects.filter(pk=1).update(status='failed')\n"
        "sync_run.status = 'failed'\n"
        "run.save()\n"
        "self.status = 'x'\n"
        "task.save()\n"
    )
    assert sorted(status_writes(source)) == [
        "line 1: update(status=...)",
        "line 2: sync_run.status = ...",
        "line 3: run.save()",
    ]

"""Watch modes: an incremental source polled with its saved cursor, a drop folder polled for
new files; polls that find nothing leave no run, overlapping polls are skipped, failures
back off and mail once; ``runsync --watch`` in the foreground."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from djsync.forms import SyncJobForm
from djsync.models import SyncJob, SyncRun
from djsync.runs.schedules import watch_task
from djsync.watch.folder import Drop
from djsync.watch.poll import poll
from tests.httpserver import Reply, Request, allow, serve
from tests.testapp.models import Product

pytestmark = pytest.mark.django_db

HEADER = "sku,name,price,qty,updated,active\n"


def item(sku: str, updated: str, price: str = "1") -> dict[str, Any]:
    return {"sku": sku, "name": sku, "price": price, "qty": 1, "updated": updated, "active": 1}


@pytest.fixture
def feed(settings: Any):
    """An HTTP feed that answers the records updated after ``since``; ``feed.items`` is
    what it holds, ``feed.fail`` makes it answer 500."""
    items: list[dict[str, Any]] = []
    state = {"fail": False}

    def handler(request: Request) -> Reply:
        if state["fail"]:
            return Reply(500, {"detail": "down"})
        since = request.query.get("since", "")
        return Reply(body={"items": [i for i in items if i["updated"] > since]})

    for api in serve():
        allow(settings, api.url("/"), HTTP_RETRIES=0)
        api.route("/changes", handler)
        api.items = items  # type: ignore[attr-defined]
        api.state = state  # type: ignore[attr-defined]
        yield api


@pytest.fixture
def watched(make_job, feed):
    return make_job(
        "test_products",
        name="watched",
        watch=5,
        notify_on_failure=["ops@example.com"],
        source={
            "kind": "http",
            "url": feed.url("/changes"),
            "incremental": {"column": "updated", "param": "since"},
        },
    )


# -- an incremental source -----------------------------------------------------------------
def test_polls_read_from_the_cursor_and_an_empty_poll_leaves_no_run(watched, feed):
    feed.items += [item("A", "2026-01-01"), item("B", "2026-01-02")]
    first = poll(watched)
    assert first.state == "applied"
    (run,) = first.runs
    assert run.trigger == "watch" and run.counts["created"] == 2
    watched.refresh_from_db()
    assert watched.state["cursor"] == "2026-01-02"

    for _ in range(3):  # nothing new: no run in the history
        assert poll(watched).state == "idle"
    assert SyncRun.objects.filter(job=watched).count() == 1
    assert feed.hits("/changes")[-1].query == {"since": "2026-01-02"}

    feed.items[0].update(price="7", updated="2026-01-05")
    feed.items.append(item("C", "2026-01-04"))
    third = poll(watched)
    (run,) = third.runs
    assert run.rows_read == 2
    assert (run.created, run.updated, run.unchanged) == (1, 1, 0)
    assert str(Product.objects.get(sku="A").price) == "7.00"
    assert SyncRun.objects.filter(job=watched).count() == 2


def test_a_bad_record_read_again_by_every_poll_is_recorded_once(watched, feed):
    watched.on_row_error = "skip"
    watched.save()
    feed.items += [item("A", "2026-01-01"), {**item("B", "2026-01-02"), "price": "oops"}]
    first = poll(watched)
    (run,) = first.runs
    assert run.created == 1 and run.errors == 1

    def again() -> str:  # B read again, as from an API that answers "since" inclusively
        SyncJob.objects.filter(pk=watched.pk).update(state={"cursor": "2026-01-01"})
        return poll(watched).state

    assert [again() for _ in range(3)] == ["idle"] * 3
    assert SyncRun.objects.filter(job=watched).count() == 1
    feed.items[1]["sku"] = "C"  # another bad record: news
    assert again() == "applied"
    assert SyncRun.objects.filter(job=watched).count() == 2


def test_a_poll_while_a_run_of_the_job_is_under_way_is_skipped(watched, feed):
    feed.items.append(item("A", "2026-01-01"))
    running = SyncRun.objects.create(job=watched, trigger="admin", status="reading")
    assert poll(watched).state == "busy"
    assert feed.hits("/changes") == [] and not Product.objects.exists()
    assert list(SyncRun.objects.filter(job=watched)) == [running]

    running.status = "succeeded"
    running.save()
    assert poll(watched).state == "applied"


def test_a_disabled_job_is_not_polled(watched, feed):
    watched.enabled = False
    watched.save()
    assert poll(watched).state == "off"
    assert feed.hits("/changes") == []


def test_failing_polls_back_off_and_mail_the_first_failure_only(watched, feed):
    feed.state["fail"] = True
    first = poll(watched)
    assert first.state == "failed" and first.runs[0].status == "failed"
    assert "500" in first.runs[0].error
    assert len(mail.outbox) == 1 and "failed" in mail.outbox[0].subject
    watched.refresh_from_db()
    assert watched.state["watch"]["failures"] == 1

    assert poll(watched).state == "waiting"  # backing off: no request, no run
    assert len(feed.hits("/changes")) == 1

    waits = []
    for failures in (2, 3):
        _end_the_wait(watched)
        assert poll(watched).state == "failed"
        watched.refresh_from_db()
        assert watched.state["watch"]["failures"] == failures
        waits.append(_wait_left(watched))
    assert waits[1] > waits[0] * 1.5  # the pause doubles
    assert len(mail.outbox) == 1  # one mail for the streak
    assert SyncRun.objects.filter(job=watched, status="failed").count() == 3

    feed.state["fail"] = False
    feed.items.append(item("A", "2026-01-01"))
    _end_the_wait(watched)
    assert poll(watched).state == "applied"
    watched.refresh_from_db()
    assert "watch" not in watched.state  # the streak ended

    feed.state["fail"] = True  # a new streak mails again
    _end_the_wait(watched)
    assert poll(watched).state == "failed"
    assert len(mail.outbox) == 2


def test_the_backoff_is_capped(watched, feed, settings):
    settings.DJSYNC = {**settings.DJSYNC, "WATCH_BACKOFF_MAX": 30}
    feed.state["fail"] = True
    for _ in range(5):
        _end_the_wait(watched)
        poll(watched)
    watched.refresh_from_db()
    assert 25 < _wait_left(watched) <= 30


def _end_the_wait(job: SyncJob) -> None:
    job.refresh_from_db()
    if "watch" in job.state:
        job.state["watch"]["retry_at"] = "2000-01-01T00:00:00+00:00"
        SyncJob.objects.filter(pk=job.pk).update(state=job.state)


def _wait_left(job: SyncJob) -> float:
    from django.utils import timezone
    from django.utils.dateparse import parse_datetime

    when = parse_datetime(job.state["watch"]["retry_at"])
    assert when is not None
    return (when - timezone.now()).total_seconds()


# -- settings and beat ----------------------------------------------------------------------
def test_a_watched_job_gets_a_periodic_task_on_its_interval(watched):
    task = watch_task(watched)
    assert task.task == "djsync.watch_job" and json.loads(task.args) == [watched.pk]
    assert (task.interval.every, task.interval.period) == (5, "seconds")
    assert task.expire_seconds == 5 and task.enabled
    watched.watch = 30
    watched.save()
    assert watch_task(watched).interval.every == 30
    watched.watch = None
    watched.save()
    assert watch_task(watched) is None
    assert not PeriodicTask.objects.filter(task="djsync.watch_job").exists()


def test_the_watch_task_polls(watched, feed):
    from djsync.tasks import watch_job

    feed.items.append(item("A", "2026-01-01"))
    result = watch_job.delay(watched.pk).get()
    assert result["state"] == "applied" and len(result["runs"]) == 1
    assert Product.objects.filter(sku="A").exists()


def _form(job: SyncJob, **changes: Any) -> SyncJobForm:
    data = {
        "name": job.name,
        "importer": [job.importer],
        "source": json.dumps(job.source),
        "target": "{}",
        **changes,
    }
    return SyncJobForm(data, instance=job)


def test_the_form_refuses_a_short_interval_or_a_source_it_cannot_poll(watched, make_job):
    form = _form(watched, watch="2")
    assert not form.is_valid()
    assert "At least 5 seconds" in form.errors["watch"][0]
    form = _form(watched, watch="10")
    assert form.is_valid(), form.errors

    plain = make_job("test_products", name="plain", source={"kind": "http", "url": "x"})
    plain.source = {"path": "products.csv"}
    form = _form(plain, watch="10")
    assert not form.is_valid()
    assert "can be watched" in form.errors["watch"][0]


# -- a drop folder --------------------------------------------------------------------------
@pytest.fixture
def inbox(settings: Any, tmp_path: Path) -> Path:
    folder = tmp_path / "inbox" / "orders"
    folder.mkdir(parents=True)
    settings.DJSYNC = {
        **settings.DJSYNC,
        "DROP_ROOTS": {"inbox": str(tmp_path / "inbox")},
        "WATCH_SETTLE": 2,
    }
    return folder


@pytest.fixture
def dropjob(make_job, inbox):
    return make_job(
        "test_products",
        name="dropped",
        watch=5,
        on_row_error="fail",
        notify_on_failure=["ops@example.com"],
        source={"kind": "drop", "root": "inbox", "folder": "orders", "pattern": "*.csv"},
    )


def drop(folder: Path, name: str, text: str, *, age: float = 60) -> Path:
    path = folder / name
    path.write_text(text)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def listing(folder: Path) -> dict[str, list[str]]:
    return {sub: sorted(os.listdir(folder / sub)) for sub in ("processing", "done", "failed")}


def test_a_dropped_file_is_applied_and_moved_to_done(dropjob, inbox):
    drop(inbox, "orders-1.csv", HEADER + "A,Saw,5,1,2026-01-01,1\nB,Axe,7,2,2026-01-01,1\n")
    outcome = poll(dropjob)
    assert outcome.state == "applied"
    (run,) = outcome.runs
    assert run.trigger == "watch" and run.status == "succeeded" and run.created == 2
    assert run.source_name == "orders-1.csv"
    assert outcome.moved == [f"done/{run.pk}-orders-1.csv"]
    assert listing(inbox) == {"processing": [], "done": [f"{run.pk}-orders-1.csv"], "failed": []}
    assert not (inbox / "orders-1.csv").exists()
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["A", "B"]
    assert poll(dropjob).state == "idle"  # an empty folder: no run
    assert SyncRun.objects.filter(job=dropjob).count() == 1


def test_a_bad_file_fails_writes_nothing_and_goes_to_failed(dropjob, inbox):
    drop(inbox, "bad.csv", HEADER + "A,Saw,5,1,2026-01-01,1\nB,Axe,not-a-price,2,2026-01-01,1\n")
    outcome = poll(dropjob)
    assert outcome.state == "failed"
    (run,) = outcome.runs
    assert run.status == "failed" and run.errors == 1
    assert run.row_errors.get().column == "price"
    assert not Product.objects.exists()
    assert listing(inbox)["failed"] == [f"{run.pk}-bad.csv"]
    assert len(mail.outbox) == 1  # every failed file is mailed
    # The next file is taken at once: a bad file is no failed poll.
    drop(inbox, "good.csv", HEADER + "C,Cup,1,1,2026-01-01,1\n")
    assert poll(dropjob).state == "applied"


def test_a_file_still_being_written_is_left_for_later(dropjob, inbox):
    path = drop(inbox, "late.csv", HEADER + "A,Saw,5,1,2026-01-01,1\n", age=0)
    drop(inbox, ".hidden.csv", HEADER + "H,Hid,1,1,2026-01-01,1\n")
    drop(inbox, "upload.csv.part", HEADER + "P,Part,1,1,2026-01-01,1\n")
    drop(inbox, "notes.txt", "not a csv")
    assert poll(dropjob).state == "idle"
    assert path.exists() and not Product.objects.exists()
    then = time.time() - 5
    os.utime(path, (then, then))
    outcome = poll(dropjob)
    assert outcome.state == "applied" and len(outcome.runs) == 1
    assert sorted(os.listdir(inbox)) == [
        ".hidden.csv",
        "done",
        "failed",
        "notes.txt",
        "processing",
        "upload.csv.part",
    ]


def test_two_pollers_never_take_the_same_file(dropjob, inbox):
    from djsync.watch.poll import _drop_folder

    drop(inbox, "one.csv", HEADER)
    folder = _drop_folder(dropjob)
    drops = [Drop(folder) for _ in range(8)]
    start = threading.Barrier(len(drops))
    claims: list[Any] = []

    def take(each: Drop) -> None:
        start.wait()
        claims.append(each.claim("one.csv"))

    threads = [threading.Thread(target=take, args=(each,)) for each in drops]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for each in drops:
        each.close()
    assert len([c for c in claims if c is not None]) == 1
    assert len(os.listdir(inbox / "processing")) == 1


def test_a_claim_whose_worker_died_is_taken_again_after_its_lease(dropjob, inbox):
    stale = f"{int(time.time()) - 400}-0123abcd-stale.csv"
    fresh = f"{int(time.time())}-89abcdef-fresh.csv"
    (inbox / "processing").mkdir()
    (inbox / "processing" / stale).write_text(HEADER + "S,Stale,1,1,2026-01-01,1\n")
    (inbox / "processing" / fresh).write_text(HEADER + "F,Fresh,1,1,2026-01-01,1\n")
    outcome = poll(dropjob)  # WATCH_LEASE: 300 s
    (run,) = outcome.runs
    assert list(Product.objects.values_list("sku", flat=True)) == ["S"]
    assert listing(inbox) == {
        "processing": [fresh],
        "done": [f"{run.pk}-stale.csv"],
        "failed": [],
    }


def test_a_symlink_is_refused_never_followed(dropjob, inbox, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text(HEADER + "X,Secret,1,1,2026-01-01,1\n")
    (inbox / "link.csv").symlink_to(secret)
    then = time.time() - 60
    os.utime(inbox / "link.csv", (then, then), follow_symlinks=False)
    outcome = poll(dropjob)
    (run,) = outcome.runs
    assert run.status == "failed" and "symbolic link" in run.error
    assert not Product.objects.exists()
    assert listing(inbox)["failed"] == [f"{run.pk}-link.csv"]
    assert (inbox / "failed" / f"{run.pk}-link.csv").is_symlink() and secret.exists()


def test_a_file_over_the_size_limit_is_refused(dropjob, inbox, settings):
    settings.DJSYNC = {**settings.DJSYNC, "MAX_FILE_SIZE": 20}
    drop(inbox, "big.csv", HEADER + "A,Saw,5,1,2026-01-01,1\n")
    (run,) = poll(dropjob).runs
    assert run.status == "failed" and "MAX_FILE_SIZE" in run.error
    assert not Product.objects.exists()
    assert listing(inbox)["failed"] == [f"{run.pk}-big.csv"]


def test_a_planted_symlink_subfolder_is_refused(dropjob, inbox, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (inbox / "processing").symlink_to(elsewhere)
    drop(inbox, "one.csv", HEADER + "A,Saw,5,1,2026-01-01,1\n")
    outcome = poll(dropjob)
    assert outcome.state == "failed" and "processing/" in outcome.error
    assert (inbox / "one.csv").exists() and os.listdir(elsewhere) == []


def test_a_folder_outside_its_root_or_an_undeclared_root_is_refused(make_job, inbox, settings):
    from djsync.checks import source_problem

    problem = source_problem("test_products", {"kind": "drop", "root": "inbox", "folder": "../x"})
    assert "leaves its root" in problem
    problem = source_problem("test_products", {"kind": "drop", "root": "etc", "folder": "x"})
    assert "no drop root 'etc'" in problem
    problem = source_problem("test_products", {"kind": "drop", "pattern": "../*.csv"})
    assert "file name pattern" in problem
    settings.DJSYNC = {**settings.DJSYNC, "DROP_ROOTS": {}}
    problem = source_problem("test_products", {"kind": "drop", "folder": "orders"})
    assert 'DJSYNC["DROP_ROOTS"] declares one' in problem


def test_a_drop_job_run_without_a_file_says_how_it_runs(dropjob, inbox):
    import djsync

    with pytest.raises(Exception, match="is a drop folder"):
        djsync.run(dropjob)
    run = djsync.run(dropjob, file=drop(inbox, "given.csv", HEADER + "G,Given,1,1,2026-01-01,1\n"))
    assert run.status == "succeeded" and run.created == 1


def test_files_per_poll_are_bounded(dropjob, inbox, settings):
    settings.DJSYNC = {**settings.DJSYNC, "WATCH_FILES_PER_POLL": 2}
    dropjob.allow_delete = False  # each file carries some rows, not the whole table
    dropjob.save()
    for number in range(3):
        drop(inbox, f"f{number}.csv", HEADER + f"F{number},N,1,1,2026-01-01,1\n", age=60 - number)
    assert [run.status for run in poll(dropjob).runs] == ["succeeded", "succeeded"]
    assert sorted(name.split("-")[1] for name in os.listdir(inbox / "done")) == ["f0.csv", "f1.csv"]
    assert len(poll(dropjob).runs) == 1
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["F0", "F1", "F2"]


# -- runsync --watch ------------------------------------------------------------------------
def test_runsync_watch_polls_in_the_foreground_and_stops_on_ctrl_c(dropjob, inbox, capsys):
    drop(inbox, "orders.csv", HEADER + "A,Saw,5,1,2026-01-01,1\n")
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        call_command("runsync", "dropped", "--watch")
    finally:
        timer.cancel()
    output = capsys.readouterr().out
    assert "Watching job dropped every 5 s" in output
    assert "1 created" in output and "done/" in output
    assert "Stopping after this poll" in output and "Stopped." in output
    assert Product.objects.filter(sku="A").exists()


def test_runsync_watch_refuses_a_job_with_nothing_to_watch(make_job):
    make_job("test_products", name="plain")
    with pytest.raises(Exception, match="nothing to watch"):
        call_command("runsync", "plain", "--watch")

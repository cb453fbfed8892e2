"""Runs carried out in this process, without Celery: a background thread or the request.

The core install (no ``djsync[celery]``) and an eager Celery (no broker, the in-process
default) do the admin's and the API's work here: the same claim, run lifecycle, job lock,
heartbeat and progress as a worker's task (:mod:`djsync.tasks` wraps these functions).
A long-lived web process runs it in a thread started on commit (BACKGROUND_THREADS), so
the request returns at once and the progress page follows the run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django import db

from djsync.exceptions import RunCancelled
from djsync.models import SyncRun
from djsync.runs import monitor
from djsync.runs import orchestrator as services
from djsync.runs.lifecycle import RUNNING

__all__ = [
    "BACKGROUND_RUNS",
    "apply_stored",
    "fail_left_over",
    "run_in_thread",
    "wait_for_background_runs",
    "work_on",
    "working_on",
]

logger = logging.getLogger("djsync")

#: Runs working in background threads of this process (see run_in_thread); a thread leaves
#: it when done.
BACKGROUND_RUNS: set[threading.Thread] = set()


def work_on(
    run_id: int,
    task_id: str = "",
    *,
    task: Any = None,
    retry_pending: bool = False,
    service: Callable[[SyncRun], SyncRun] = services.execute_queued,
) -> SyncRun | None:
    """Claim a queued run (queued → reading) and carry it out: read and diff, then apply
    unless it is a dry run. None when it is not queued any more (cancelled, or taken by
    another delivery of the same task). ``task``: the Celery task doing it, if any (its
    state shows the progress); ``retry_pending``: Celery will retry a transient failure;
    ``service``: what carries it out (a Celery task may split it into partitions)."""
    sync_run = monitor.claim(run_id, task_id)
    if sync_run is None:
        return None
    tokens = (monitor.current_task.set(task), monitor.retry_pending.set(retry_pending))
    try:
        service(sync_run)
    except RunCancelled:
        pass
    finally:
        monitor.current_task.reset(tokens[0])
        monitor.retry_pending.reset(tokens[1])
    return sync_run


def apply_stored(run_id: int, user_id: int | None = None, *, task: Any = None) -> SyncRun:
    """Apply the plan stored on a previewed run (if the target has not moved since)."""
    sync_run = SyncRun.objects.select_related("job").get(pk=run_id)
    token = monitor.current_task.set(task)
    try:
        services.apply_previewed(sync_run, user=_user(user_id))
    except RunCancelled:
        pass
    finally:
        monitor.current_task.reset(token)
    return sync_run


def run_in_thread(run_id: int, work: Callable[[], object]) -> threading.Thread:
    """Call ``work`` (which carries out the run) in a background thread of this process.

    Called once the request's transaction has committed (the thread's own connection must
    see the run). The run records its own failure; anything that escapes it (an error
    before the run could record one) fails the run here, so that none is left queued or
    running. The thread closes its database connections when done.
    """

    def target() -> None:
        try:
            work()
        except BaseException as exc:  # never let a thread die with a traceback on stderr
            logger.exception("djsync: run %s in a thread failed", run_id)
            fail_left_over(run_id, exc)
        finally:
            db.connections.close_all()
            BACKGROUND_RUNS.discard(threading.current_thread())

    thread = threading.Thread(target=target, name=f"djsync-run-{run_id}", daemon=True)
    BACKGROUND_RUNS.add(thread)
    thread.start()
    return thread


def fail_left_over(run_id: int, exc: BaseException) -> None:
    """After its thread ended: a run still queued or running has nobody working on it any
    more; it ends failed with ``exc`` as its cause (the lifecycle's fail transition)."""
    try:
        sync_run = SyncRun.objects.select_related("job").filter(pk=run_id).first()
        if sync_run is not None and sync_run.status in (SyncRun.Status.QUEUED, *RUNNING):
            SyncRun.objects.fail(sync_run, exc)
    except Exception:  # the database itself is gone: the stale-run reaper ends it later
        logger.exception("djsync: could not record the failure of run %s", run_id)


def working_on(run_id: int) -> bool:
    """Whether a thread of this process works on the run now (it is alive, whatever its
    heartbeat says: on SQLite a long apply writes none until it commits)."""
    name = f"djsync-run-{run_id}"
    return any(thread.name == name and thread.is_alive() for thread in list(BACKGROUND_RUNS))


def wait_for_background_runs(timeout: float | None = None) -> bool:
    """Wait until the runs this process started in threads (:func:`run_in_thread`) end;
    False if some still work after ``timeout`` seconds. For tests and a clean shutdown."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for thread in list(BACKGROUND_RUNS):
        left = None if deadline is None else max(deadline - time.monotonic(), 0)
        thread.join(left)
    return not any(thread.is_alive() for thread in list(BACKGROUND_RUNS))


def _user(user_id: int | None) -> Any:
    if user_id is None:
        return None
    from django.contrib.auth import get_user_model

    return get_user_model()._default_manager.filter(pk=user_id).first()

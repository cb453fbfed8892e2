"""Signals djsync sends: ``run_finished`` once a run has ended (succeeded, previewed, failed,
cancelled), sent by the one place a run's status changes (djsync.runs.lifecycle)."""

from django.dispatch import Signal

#: Sent with ``run=<SyncRun>`` after the run's end is saved. djsync's own mail
#: (djsync.runs.notifications) listens; so may a project, e.g. to post to a chat.
run_finished = Signal()

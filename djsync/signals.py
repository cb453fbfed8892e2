"""Signals djsync sends: ``run_finished`` once a run has ended (succeeded, previewed, failed,
cancelled), sent by the one place a run's status changes (djsync.runs.lifecycle); and, for a
model target, ``batch_deleting`` and ``batch_applied`` around each batch it writes
(djsync.targets.notify), on the generic and the staged paths alike."""

from django.dispatch import Signal

#: Sent with ``run=<SyncRun>`` after the run's end is saved. djsync's own mail
#: (djsync.runs.notifications) listens; so may a project, e.g. to post to a chat.
run_finished = Signal()

#: Sent with ``sender=<model class>``, ``run`` (the SyncRun, or None outside a run),
#: ``importer``, ``using`` (the database alias) and ``created``, ``updated`` and ``deleted``
#: (lists of primary keys, one of them non-empty) after a batch of a model's rows was
#: written: inside the run's transaction, so a receiver may write in it (and a receiver's
#: error rolls the run back); use ``transaction.on_commit`` for side effects. Bulk writes
#: send no ``post_save``: this is the signal that sees synced rows. Sent only to receivers
#: of that model, and the primary keys are read only when someone listens.
batch_applied = Signal()

#: Sent with ``sender=<model class>``, ``run``, ``importer``, ``using`` and ``pks`` before a
#: batch of a model's rows is deleted, while they can still be read.
batch_deleting = Signal()

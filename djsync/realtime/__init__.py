"""Real-time sync: changes on a job's source model captured as they happen, consumed soon after.

- :mod:`djsync.realtime.capture` writes each change of the source model into the
  ``PendingChange`` table in the change's own transaction: a database trigger on PostgreSQL
  (django-pgtrigger, the ``djsync[realtime]`` extra), ``post_save``/``post_delete``
  elsewhere (which misses bulk updates and raw SQL).
- :mod:`djsync.realtime.queue` claims a batch of pending changes, coalesces them per key,
  and deletes them once applied, or backs them off and parks them when they keep failing.
- :mod:`djsync.realtime.consumer` applies a batch as one run of the job, through the same
  orchestrator, importer, limits and history as every other run.
- Inbound, :mod:`djsync.realtime.views` takes a signed webhook delivery of changed records
  (:mod:`djsync.realtime.webhooks`: declared webhooks, signatures, replays) and applies it
  as one small run (:mod:`djsync.realtime.deliveries`).

See docs/realtime.md for the guarantees and their limits.
"""

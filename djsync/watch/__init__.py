"""Watch modes: a job polled every ``SyncJob.watch`` seconds — its incremental source read
from the saved cursor, or its drop folder for new files (docs/realtime.md, "Watch modes")."""

"""Settings of djsync: DEFAULTS, overridden by the project's ``DJSYNC`` dict, read lazily."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed

DEFAULTS: dict[str, Any] = {
    # Share of the rows in scope that one run may delete before it needs --force.
    "DELETE_GUARD": 0.5,
    # Rows per INSERT/UPDATE/DELETE statement and per batch of stored changes.
    "BATCH_SIZE": 2000,
    # Export jobs compare row by row only when the previous file and the model's rows in
    # scope both hold at most this many rows; larger ones are rewritten whole, streamed,
    # in flat memory (docs/exports.md). None: always compare.
    "EXPORT_COMPARE_MAX_ROWS": 100_000,
    # Formats date and datetime converters accept besides ISO 8601 (always tried first).
    # ISO only by default: 01/02/2024 is no guess. An importer or a Field declares others
    # (date_formats=...); a value two formats read differently is a row error.
    "DATE_FORMATS": ["%Y-%m-%d"],
    "DATETIME_FORMATS": ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"],
    # Time zone that naive datetimes in a source are read in (None: the project's TIME_ZONE).
    "SOURCE_TIME_ZONE": None,
    # Default file encoding of text sources.
    "ENCODING": "utf-8",
    # How many changes per model the diff summary and notifications show.
    "SAMPLE_CHANGES": 10,
    # Folder where uploaded source files wait between upload and apply when the project
    # defines no STORAGES["djsync_uploads"]: private (0o700 folders, 0o600 files), never
    # under MEDIA_ROOT. None: "djsync-uploads" in the project's BASE_DIR.
    "UPLOAD_ROOT": None,
    # Largest file the admin's upload pages accept, in bytes: checked on Content-Length
    # before the body is read, then counted while it streams in.
    "MAX_UPLOAD_SIZE": 200 * 1024 * 1024,
    # Seconds an uploaded file (and its unapplied preview) is kept before it expires.
    "UPLOAD_MAX_AGE": 2 * 24 * 3600,
    # Diff and apply in SQL through a staging table when the target database is PostgreSQL
    # (COPY, targets/postgres.py) or SQLite (targets/sqlite.py); off: the generic path.
    "FAST_PATH": True,
    # PostgreSQL work_mem of the run's session while the fast path joins and sorts.
    "FAST_PATH_WORK_MEM": "256MB",
    # On PostgreSQL, a run creating at least this many rows into a table that holds none
    # drops the table's indexes it can recreate exactly and builds them after the rows
    # (backends/bulkload.py); readers wait for the run meanwhile. None: never.
    "FAST_PATH_REBUILD_INDEXES": 100_000,
    # On PostgreSQL, a CSV file whose fields PostgreSQL can read exactly is parsed by
    # PostgreSQL itself (COPY of its bytes, backends/rawcsv.py); off: read in Python.
    "FAST_PATH_RAW_CSV": True,
    # A run split across workers (djsync.runs.partitions): the smallest range of a file
    # worth a partition of its own, in bytes (a smaller file gets fewer partitions).
    "PARTITION_MIN_SIZE": 1024 * 1024,
    # Changes stored per action (create, update, delete) and model for a run that applies
    # at once: the first ones by source row (deletes: by primary key). Counts stay exact
    # and the run's warnings say what was left out. Dry runs and previews always store
    # every change (applying a preview reads them). None stores every change of every run.
    "AUDIT_CHANGES": 10_000,
    # -- Celery runs (docs/celery.md) --
    # One run per job at a time: "redis" (a Redis lock), "database" (a lease row in
    # djsync's SyncLock table) or "auto" (Redis when the Celery broker is Redis).
    "LOCK_BACKEND": "auto",
    # Redis URL of the lock; None takes the Celery broker URL.
    "LOCK_REDIS_URL": None,
    # Seconds a lock lives without being renewed: how long a dead worker blocks its job.
    "LOCK_TTL": 60,
    # Seconds a second run of a busy job waits for the lock before it is refused (0: never).
    "LOCK_WAIT": 0,
    # Seconds between heartbeats (lock renewal, progress and heartbeat written to the run).
    "HEARTBEAT_INTERVAL": 5,
    # A running run without a heartbeat for this long, whose lock is gone, is marked failed.
    "STALE_AFTER": 120,
    # Retries of a run whose source failed transiently (TransientSourceError), and their
    # backoff: a random delay of at most RETRY_BACKOFF * 2**n seconds (Celery's full jitter),
    # capped at RETRY_BACKOFF_MAX, in whole seconds; the backoff is read when a worker starts.
    "MAX_RETRIES": 3,
    "RETRY_BACKOFF": 30,
    "RETRY_BACKOFF_MAX": 600,
    # Real-time sync (docs/realtime.md): the most pending changes one consumer batch takes
    # (one run), seconds between the beat's polls for jobs with pending changes, seconds a
    # consumer drains before handing over to a new task, attempts before a failing change
    # is parked, and the first pause after a failed attempt (doubled each time, capped).
    "REALTIME_BATCH": 500,
    "REALTIME_POLL": 5,
    "REALTIME_DRAIN_SECONDS": 30,
    "REALTIME_MAX_ATTEMPTS": 5,
    "REALTIME_BACKOFF": 2,
    "REALTIME_BACKOFF_MAX": 300,
    # Seconds a consumer holds the changes it claimed: a consumer that dies leaves them to
    # be claimed again this long after (make it longer than a batch takes).
    "REALTIME_CLAIM_TTL": 120,
    # The compact history of a real-time job: consecutive successful batches join one open
    # run for this many seconds from its start (0: each batch its own run), up to this many
    # changes (created, updated, deleted and row errors; keep it at most AUDIT_CHANGES so
    # that every change is stored). A failed batch is always a run of its own.
    "REALTIME_RUN_WINDOW": 60,
    "REALTIME_RUN_CHANGES": 10_000,
    # Least seconds between two mails about a job's parked changes.
    "REALTIME_PARKED_MAIL_INTERVAL": 3600,
    # Webhooks (docs/realtime.md, "Webhooks"): the jobs that take signed deliveries, by job
    # name: {"job": {"secret": "…"}}; "secret" may be a list (each one is accepted: rotate by
    # adding the new one first). Secrets live in settings, never in a job (read an
    # environment variable here yourself). A job not listed answers 404, as an unknown one.
    "WEBHOOKS": {},
    # Seconds a delivery's signed timestamp may be off from now, either way: older (or
    # newer) ones are refused, and a delivery is remembered that long to refuse replays.
    "WEBHOOK_TOLERANCE": 300,
    # Bytes of one delivery's body (its Content-Length checked before it is read, then the
    # bytes counted), and records in one delivery ("records" and "deleted" together).
    "WEBHOOK_MAX_BODY": 1024 * 1024,
    "WEBHOOK_MAX_RECORDS": 1000,
    # Database alias progress is written through during the apply transaction; None: a
    # second connection to the run's database (PostgreSQL), the same one on SQLite.
    "PROGRESS_DATABASE": None,
    # Sender of notification mails; None: DEFAULT_FROM_EMAIL.
    "NOTIFY_FROM": None,
    # The site's address (e.g. "https://sync.example.com") put before admin paths in mails;
    # None: the path alone.
    "NOTIFY_BASE_URL": None,
    # HTTP sources: seconds to wait for a response, attempts after a 429/5xx/timeout, the
    # first pause between attempts (doubled each time, Retry-After honoured up to
    # HTTP_MAX_BACKOFF), and the most pages one run may fetch.
    "HTTP_TIMEOUT": 30.0,
    "HTTP_RETRIES": 3,
    "HTTP_BACKOFF": 1.0,
    "HTTP_MAX_BACKOFF": 60.0,
    "HTTP_MAX_PAGES": 100_000,
    # Secrets that sources name (e.g. an API token), by name: the explicit allow-list of
    # what a job may send (no fallback to the environment: read an environment variable
    # here yourself). A value is the secret, or {"value": secret, "base_urls": [...]} to
    # send it only under those URL prefixes. Jobs store names, never secrets.
    "CREDENTIALS": {},
    # -- Trust: what a job definition may reach (docs/security.md) --------------------------
    # Folders a job's file source or export target may name a path in, by name, e.g.
    # {"data": "/srv/data"}. A job gives {"path": "x.csv"} (plus "root" when there are
    # several); paths that leave their root are refused. Empty: jobs name no files.
    "FILE_ROOTS": {},
    # SQL queries a job's sql source may run, by name: {"name": {"query": "SELECT ...",
    # "using": "alias"}} (or just the SELECT, on "default"). One SELECT/WITH statement each,
    # run read-only. A job gives {"kind": "sql", "query": "name", "params": [...]}.
    "SQL_QUERIES": {},
    # How deep a job's derived sources may nest ("from" inside "from").
    "MAX_SOURCE_NESTING": 3,
    # Drop folders (docs/realtime.md, "Watch modes"): folders, by name, under which a job's
    # {"kind": "drop", "root": name, "folder": "orders"} source waits for files and moves
    # them (into processing/, done/ and failed/). Empty: jobs watch no folders.
    "DROP_ROOTS": {},
    # -- Watch modes (docs/realtime.md) -----------------------------------------------------
    # Shortest poll interval a job's watch setting may ask for, in seconds.
    "WATCH_MIN_INTERVAL": 5,
    # Longest pause after failed polls (the pause starts at the job's interval and doubles
    # at each failure in a row).
    "WATCH_BACKOFF_MAX": 3600,
    # Seconds a dropped file must have stayed unchanged before it is taken (a file still
    # being written is left for a later poll).
    "WATCH_SETTLE": 10,
    # Files one poll of a drop folder runs at most, and entries it looks at at most.
    "WATCH_FILES_PER_POLL": 10,
    "WATCH_MAX_LISTED": 10_000,
    # Seconds a file claimed into processing/ belongs to its poller: after this, with no run
    # of the job under way, it is taken again (its worker died).
    "WATCH_LEASE": 300,
    # -- Limits: files (docs/security.md) ---------------------------------------------------
    # Bytes read from one file, counted while reading (a growing file stops) and checked
    # up front for a path. Devices, FIFOs and sockets are refused whatever their size.
    "MAX_FILE_SIZE": 4 * 1024**3,
    # Bytes of a file whose format is parsed whole in memory (xls, yaml), and uncompressed
    # bytes of an ODS workbook (parsed whole as well).
    "MAX_IN_MEMORY_FILE_SIZE": 32 * 1024 * 1024,
    # Bytes of a YAML file: PyYAML builds a document at about 100 KiB a second.
    "MAX_YAML_SIZE": 512 * 1024,
    # Bytes of one row of a CSV/TSV file (quoted line breaks included) or one JSON line.
    "MAX_LINE_SIZE": 8 * 1024 * 1024,
    # Characters of one cell, in every format (a JSON string, a sheet cell, a CSV field).
    "MAX_CELL_SIZE": 1_000_000,
    # Columns of a header or a sheet row, and distinct keys of JSON records.
    "MAX_COLUMNS": 16_384,
    # Rows of a sheet (XLSX, XLS, ODS) counted by their row numbers, blank rows included.
    "MAX_SHEET_ROWS": 1_048_576,
    # XLSX and ODS are zip containers, checked in the zip directory before inflating and
    # counted while inflating: total uncompressed bytes, uncompressed/compressed ratio (of
    # each member above 1 MiB and of the whole), members, and uncompressed bytes of each
    # XLSX part loaded whole (the shared strings table, styles: everything but sheets).
    "MAX_WORKBOOK_SIZE": 1024**3,
    "MAX_COMPRESSION_RATIO": 100,
    "MAX_WORKBOOK_MEMBERS": 1_000,
    "MAX_WORKBOOK_PART_SIZE": 32 * 1024 * 1024,
    # (JSON_MAX_DEPTH, below with the HTTP limits, also bounds JSON, JSON lines and YAML files.)
    # -- Limits: HTTP sources (docs/security.md) --------------------------------------------
    # What a job's HTTP options may hold: entries in headers and in params, characters in a
    # header value, characters in a json body (checked before any request is sent).
    "HTTP_MAX_OPTION_ITEMS": 100,
    "HTTP_MAX_HEADER_VALUE": 8_000,
    "HTTP_MAX_JSON_BODY": 1_000_000,
    # URL prefixes (scheme, host, port, path) an HTTP source may fetch: its URL, every next
    # link and every redirect. Empty: HTTP sources are refused.
    "HTTP_BASE_URLS": [],
    # Seconds one read of an HTTP source may take, all pages, retries and pauses included
    # (not the time the run spends on the records in between).
    "HTTP_DEADLINE": 3600.0,
    # Seconds one response may take from the request to its last byte (a slow drip stops).
    "HTTP_RESPONSE_DEADLINE": 300.0,
    # Bytes one response body may have, once decompressed (Content-Length checked first).
    "HTTP_MAX_BODY": 50 * 1024 * 1024,
    # Redirects one request may follow.
    "HTTP_MAX_REDIRECTS": 10,
    # How deep JSON may nest (arrays and objects), in HTTP responses and JSON files.
    "JSON_MAX_DEPTH": 64,
    # -- Values: what a converter lets through (docs/security.md) ---------------------------
    # Characters of one value kept in a stored row error (its value, each cell of its raw
    # row, its key); longer ones are cut and say how long they were.
    "ROW_ERROR_VALUE_SIZE": 1000,
    # Cells of a row error's raw row kept (a record with more keeps the first ones).
    "ROW_ERROR_COLUMNS": 200,
    # -- Admin and uploads (docs/security.md) -----------------------------------------------
    # Most addresses one job notifies (notify_on_failure): a failure is not a mailing list.
    "MAX_NOTIFY_ADDRESSES": 50,
    # With an eager Celery (no broker: the in-process default), the admin's runs — an
    # upload's preview, an apply, "Run now" — work in a background thread of the web
    # process, started when the request's transaction commits, so the browser lands on the
    # run's progress page at once. False: inside the request (a server without threads).
    "BACKGROUND_THREADS": True,
    # With BACKGROUND_THREADS, an upload of at most this many bytes is previewed inside the
    # request instead. 0: every upload in the background; None: none.
    "BACKGROUND_PREVIEW_SIZE": 0,
    # -- Run history and failures (docs/security.md) ----------------------------------------
    # Row errors stored per run (messages, the first ones found); the run's counts stay
    # exact and a warning says how many were not stored. None stores every one.
    "MAX_ROW_ERRORS": 10_000,
    # Handing a run to Celery: seconds each attempt to reach the broker may take, and how
    # many more attempts follow; a broker that does not answer fails the run.
    "SEND_TIMEOUT": 3.0,
    "SEND_RETRIES": 1,
    # runsync --wait: seconds a run may stay queued before the workers are asked whether
    # any is alive; none answering fails the run (it would never start).
    "WAIT_NO_WORKER": 20.0,
    # Days of run history prunesyncruns and the djsync.prune_sync_runs task keep by
    # default, and rows deleted per statement while pruning.
    "KEEP_RUNS_DAYS": 90,
    "PRUNE_BATCH_SIZE": 5000,
    # -- The HTTP API (docs/api.md) ----------------------------------------------------------
    # Items per page of its lists (jobs, changes, row errors), and the most ``?page_size=``
    # may ask for (more is a 400).
    "API_PAGE_SIZE": 100,
    "API_MAX_PAGE_SIZE": 1000,
}


class Settings:
    """Reads ``settings.DJSYNC`` on first use; reset when tests override the setting."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._cache is None:
            user = getattr(django_settings, "DJSYNC", {}) or {}
            unknown = set(user) - set(DEFAULTS)
            if unknown:
                from django.core.exceptions import ImproperlyConfigured

                raise ImproperlyConfigured(f"Unknown DJSYNC settings: {', '.join(sorted(unknown))}")
            self._cache = {**DEFAULTS, **user}
        return self._cache

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._load()[name]
        except KeyError:
            raise AttributeError(f"No DJSYNC setting {name!r}") from None

    def reset(self) -> None:
        self._cache = None


settings = Settings()


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "DJSYNC":
        settings.reset()


setting_changed.connect(_reset)

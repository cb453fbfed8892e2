"""Private storage for uploaded source files, between upload, preview and apply.

The storage is the project's ``STORAGES["djsync_uploads"]`` when it defines one, else a
FileSystemStorage in ``DJSYNC["UPLOAD_ROOT"]`` (default: ``djsync-uploads`` in the
project's ``BASE_DIR``) whose folders are 0o700 and files 0o600. Never under MEDIA_ROOT
(an uploaded price list must not be served at a public URL), never a shared folder in the
system's temporary directory. Clean-up only deletes names djsync made (:data:`NAME_RE`)
in this storage, so another project's files are never touched.
"""

from __future__ import annotations

import re
import sys
import unicodedata
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings as django_settings
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.utils import timezone

from djsync.conf import settings
from djsync.models import SyncRun

#: The alias of the project's own upload storage in ``STORAGES``, if it defines one.
STORAGE_ALIAS = "djsync_uploads"
#: Every name djsync gives a stored upload: a prefix, a random id and the format.
NAME_RE = re.compile(r"djsync-[0-9a-f]{32}(\.[a-z0-9]{1,10})?")
#: Longest upload name kept for display (SyncRun.source_name holds 500 characters).
MAX_NAME_LENGTH = 255


def upload_root() -> Path:
    """The upload folder when no ``STORAGES["djsync_uploads"]`` is defined."""
    if settings.UPLOAD_ROOT:
        return Path(settings.UPLOAD_ROOT)
    base = getattr(django_settings, "BASE_DIR", None)
    if base is None:  # the folder a startproject layout calls BASE_DIR
        module = sys.modules.get(django_settings.SETTINGS_MODULE or "")
        file = getattr(module, "__file__", None)
        base = Path(file).resolve().parent.parent if file else Path.cwd()
    return Path(base) / "djsync-uploads"


def storage() -> Storage:
    if STORAGE_ALIAS in django_settings.STORAGES:
        return storages[STORAGE_ALIAS]
    return FileSystemStorage(
        location=upload_root(),
        base_url=None,
        file_permissions_mode=0o600,
        directory_permissions_mode=0o700,
    )


def display_name(name: str | None) -> str:
    """An uploaded file's name as shown on its run: its last path part, printable
    characters only, at most MAX_NAME_LENGTH characters (the extension kept)."""
    text = re.split(r"[/\\]", name or "")[-1]
    text = "".join(c for c in text if c.isprintable() and unicodedata.category(c) != "Cf")
    if len(text) > MAX_NAME_LENGTH:
        stem, dot, ext = text.rpartition(".")
        ext = ext[:10] if dot and stem else ""
        text = text[: MAX_NAME_LENGTH - len(ext) - 2] + "…" + (f".{ext}" if ext else "")
    return text.strip() or "upload"


def save_upload(file: IO[bytes], name: str) -> str:
    """Store ``file`` under a name djsync makes (the format of ``name``'s extension kept
    when it is a plain one); return the storage name. Nothing of ``name`` but a checked
    extension reaches the storage."""
    suffix = Path(display_name(name)).suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,10}", suffix):
        suffix = ""
    return storage().save(f"djsync-{uuid.uuid4().hex}{suffix}", file)


def open_upload(stored_name: str) -> IO[bytes]:
    return storage().open(stored_name, "rb")


def delete_upload(stored_name: str) -> None:
    if stored_name:
        storage().delete(stored_name)


def release_upload(run: SyncRun) -> None:
    """Delete a run's uploaded file once it is applied or discarded (the plan is stored)."""
    if run.upload:
        delete_upload(run.upload)
        run.upload = ""
        SyncRun.objects.filter(pk=run.pk).update(upload="")


def expire_uploads(now: datetime | None = None) -> int:
    """Delete uploads older than ``UPLOAD_MAX_AGE`` seconds; return how many went.

    A preview that still waits for an apply is discarded with them: its target has most
    likely moved on, so it is previewed again from a fresh file. Files in the upload storage
    that no run refers to (a crash between save and record) are removed too — only names
    djsync made.
    """
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.UPLOAD_MAX_AGE)
    old = SyncRun.objects.exclude(upload="").filter(created_at__lt=cutoff)
    old = old.exclude(status__in=SyncRun.ACTIVE)
    count = 0
    for run in old.only("pk", "upload", "status"):
        if run.status == SyncRun.Status.PREVIEWED:
            SyncRun.objects.discard(run)  # unless an apply took it meanwhile
        release_upload(run)
        count += 1
    return count + _delete_orphans(cutoff)


def _delete_orphans(cutoff: datetime) -> int:
    """Delete djsync's own old files that no run refers to; never another name."""
    store = storage()
    if isinstance(store, FileSystemStorage) and not Path(store.location).is_dir():
        return 0
    try:
        names = store.listdir("")[1]
    except (NotImplementedError, FileNotFoundError):
        return 0
    ours = [name for name in names if NAME_RE.fullmatch(name)]
    if not ours:
        return 0
    referenced = set(SyncRun.objects.exclude(upload="").values_list("upload", flat=True))
    count = 0
    for name in ours:
        if name not in referenced and store.get_modified_time(name) < cutoff:
            store.delete(name)
            count += 1
    return count


class LimitedUploadHandler(FileUploadHandler):
    """Counts the bytes of a request's files as they stream in and stops the upload past
    ``limit``: the rest of the body is never read, nothing is kept. Installed first by the
    djsync upload views only (:func:`djsync.views.upload`); the view then sees
    ``exceeded`` and answers with a page that names DJSYNC["MAX_UPLOAD_SIZE"]."""

    def __init__(self, request: Any, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.exceeded = True
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler (memory or temporary file) keeps the file

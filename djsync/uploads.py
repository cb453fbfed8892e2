"""Private storage for uploaded source files, between upload, preview and apply.

Never under MEDIA_ROOT: an uploaded price list must not be served at a public URL.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

from django.core.files.storage import FileSystemStorage
from django.utils import timezone

from .conf import settings
from .models import SyncRun


def storage() -> FileSystemStorage:
    return FileSystemStorage(location=settings.UPLOAD_ROOT, base_url=None)


def save_upload(file: IO[bytes], name: str) -> str:
    """Store ``file`` under a random name that keeps its extension; return the storage name."""
    suffix = Path(name).suffix.lower()
    return storage().save(f"{uuid.uuid4().hex}{suffix}", file)


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
    likely moved on, so it is previewed again from a fresh file. Files in the upload folder
    that no run refers to (a crash between save and record) are removed too.
    """
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.UPLOAD_MAX_AGE)
    old = SyncRun.objects.exclude(upload="").filter(created_at__lt=cutoff)
    old = old.exclude(status__in=SyncRun.ACTIVE)
    count = 0
    for run in old.only("pk", "upload", "status"):
        if run.status == SyncRun.Status.PREVIEWED:
            SyncRun.objects.filter(pk=run.pk, status=run.status).update(
                status=SyncRun.Status.DISCARDED, finished_at=timezone.now()
            )
        release_upload(run)
        count += 1
    return count + _delete_orphans(cutoff)


def _delete_orphans(cutoff: datetime) -> int:
    store = storage()
    if not Path(store.location).is_dir():
        return 0
    referenced = set(SyncRun.objects.exclude(upload="").values_list("upload", flat=True))
    count = 0
    for name in store.listdir("")[1]:
        if name not in referenced and store.get_modified_time(name) < cutoff:
            store.delete(name)
            count += 1
    return count

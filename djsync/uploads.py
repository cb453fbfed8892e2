"""Private storage for uploaded source files, between upload, preview and apply.

Never under MEDIA_ROOT: an uploaded price list must not be served at a public URL.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import IO

from django.core.files.storage import FileSystemStorage

from .conf import settings


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

"""A drop folder's files: listed, claimed one at a time, and moved once their run ended.

A poll lists the folder (at most WATCH_MAX_LISTED entries) for names that match the job's
pattern, skipping dotfiles, partial uploads (``.part``, ``.tmp``, ``~``…) and files
changed less than WATCH_SETTLE seconds ago. It claims a file by renaming it into
``processing/`` under a name that carries the claim time — a rename is atomic, so of two
pollers one gets the file and the other finds it gone — and after the run moves it into
``done/<run id>-<name>`` or ``failed/<run id>-<name>``. A claim older than WATCH_LEASE
seconds, while no run of the job is under way, is taken again: its worker died.

Every name is opened relative to the folder's open descriptor, never through a symlink
(O_NOFOLLOW): a symlink, a device or a file over MAX_FILE_SIZE dropped there fails its run
and is moved into ``failed/`` as it is, never followed.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import re
import stat
import time
import uuid
from dataclasses import dataclass
from typing import IO, Any

from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.exceptions import SourceError
from djsync.sources.bounds import open_regular
from djsync.sources.drops import SUBFOLDERS, DropFolder
from djsync.uploads import display_name

logger = logging.getLogger("djsync")

#: Endings of files still being uploaded (browsers, rsync, editors name them so).
PARTIAL = (".part", ".partial", ".tmp", ".crdownload", ".download", ".filepart", "~")
#: A claimed file in processing/: claim time, a random token, the name it was dropped as.
_CLAIMED = re.compile(r"^(\d{1,12})-([0-9a-f]{8})-(.+)$", re.S)
#: The longest dropped name kept (a claim's prefix must fit the file system's 255 bytes).
_LONGEST = 200
_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)


@dataclass
class Claim:
    """A file this poller took: ``name`` in processing/, ``original`` as it was dropped."""

    drop: Drop
    name: str
    original: str

    def open(self) -> IO[bytes]:
        """The file, opened for its run; a symlink, a device or a file over MAX_FILE_SIZE
        is refused (SourceError), never followed."""
        fd = self.drop.fds["processing"]

        def fail(message: str) -> SourceError:
            return SourceError(message, source=display_name(self.original))

        try:
            mode = os.stat(self.name, dir_fd=fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            raise fail(_("file not found")) from None
        if stat.S_ISLNK(mode):
            raise fail(_("is a symbolic link: files of a drop folder are never followed"))
        return open_regular(self.name, fail, follow=False, dir_fd=fd)

    def finish(self, run_id: int | None, *, ok: bool) -> str | None:
        """Move the file into done/ (``ok``) or failed/, named after its run; the new
        name relative to the folder, or None when it is gone (taken again meanwhile)."""
        where = "done" if ok else "failed"
        name = f"{run_id or 0}-{self.original}"
        try:
            os.rename(
                self.name,
                name,
                src_dir_fd=self.drop.fds["processing"],
                dst_dir_fd=self.drop.fds[where],
            )
        except FileNotFoundError:
            logger.warning("djsync: %s left processing/ before its run ended", self.original)
            return None
        return f"{where}/{name}"

    def release(self) -> None:
        """Give the file back untouched (its run could not start): the next poll takes it."""
        self.drop.claim(self.name, claimed=True, at=0)


class Drop:
    """A drop folder opened for a poll: descriptors of the folder and of its subfolders
    (made on first use, refused if a symlink stands in their place)."""

    def __init__(self, source: DropFolder) -> None:
        self.source = source
        self.path = source.location()
        try:
            self.fd = os.open(self.path, _DIRECTORY)
        except OSError as exc:
            raise SourceError(
                _("cannot open the drop folder: %(error)s") % {"error": _reason(exc)},
                source=source.name,
            ) from None
        self.fds: dict[str, int] = {}
        try:
            for name in SUBFOLDERS:
                self.fds[name] = self._subfolder(name)
        except BaseException:
            self.close()
            raise

    def _subfolder(self, name: str) -> int:
        try:
            os.mkdir(name, 0o750, dir_fd=self.fd)
        except FileExistsError:
            pass
        except OSError as exc:
            raise SourceError(
                _("cannot make %(name)s/ in the drop folder: %(error)s")
                % {"name": name, "error": _reason(exc)},
                source=self.source.name,
            ) from None
        try:
            return os.open(name, _DIRECTORY, dir_fd=self.fd)
        except OSError as exc:
            raise SourceError(
                _("%(name)s/ in the drop folder is not a folder: %(error)s")
                % {"name": name, "error": _reason(exc)},
                source=self.source.name,
            ) from None

    def close(self) -> None:
        for fd in [*self.fds.values(), self.fd]:
            os.close(fd)
        self.fds = {}

    def __enter__(self) -> Drop:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def ready(self, *, now: float | None = None) -> list[str]:
        """Names of the dropped files ready to take, oldest first (see the module)."""
        now = time.time() if now is None else now
        settle = float(settings.WATCH_SETTLE)
        pattern = self.source.pattern.lower()
        found: list[tuple[float, str]] = []
        with os.scandir(self.fd) as entries:
            for count, entry in enumerate(entries):
                if count >= settings.WATCH_MAX_LISTED:
                    break
                name = entry.name
                if name.startswith(".") or name.lower().endswith(PARTIAL):
                    continue
                if not fnmatch.fnmatchcase(name.lower(), pattern):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        continue
                    changed = entry.stat(follow_symlinks=False).st_mtime
                except FileNotFoundError:
                    continue  # taken meanwhile
                if now - changed >= settle:
                    found.append((changed, name))
        return [name for _changed, name in sorted(found)]

    def expired(self, *, now: float | None = None) -> list[str]:
        """Names in processing/ whose claim is older than WATCH_LEASE seconds."""
        now = time.time() if now is None else now
        lease = float(settings.WATCH_LEASE)
        found: list[tuple[int, str]] = []
        with os.scandir(self.fds["processing"]) as entries:
            for count, entry in enumerate(entries):
                if count >= settings.WATCH_MAX_LISTED:
                    break
                match = _CLAIMED.match(entry.name)
                if match and now - int(match[1]) >= lease:
                    found.append((int(match[1]), entry.name))
        return [name for _at, name in sorted(found)]

    def claim(self, name: str, *, claimed: bool = False, at: float | None = None) -> Claim | None:
        """Take ``name`` (in the folder, or in processing/ when ``claimed``) by renaming
        it into processing/ with the claim time ``at`` (now); None if another took it."""
        match = _CLAIMED.match(name) if claimed else None
        original = match[3] if match else _shortened(name)
        stamp = int(time.time() if at is None else at)
        new = f"{stamp}-{uuid.uuid4().hex[:8]}-{original}"
        source_fd = self.fds["processing"] if claimed else self.fd
        try:
            os.rename(name, new, src_dir_fd=source_fd, dst_dir_fd=self.fds["processing"])
        except FileNotFoundError:
            return None
        return Claim(self, new, original)


def _shortened(name: str) -> str:
    """A dropped name short enough to carry a claim's prefix, its extension kept."""
    if len(name.encode()) <= _LONGEST:
        return name
    stem, dot, ext = name.rpartition(".")
    ext = f".{ext[:10]}" if dot and stem else ""
    base = stem if ext else name
    while len((base + ext).encode()) > _LONGEST:
        base = base[:-8]
    return base + ext


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return _("it is a symbolic link")
    return exc.strerror or str(exc)

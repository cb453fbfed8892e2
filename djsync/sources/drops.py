"""Drop folders: a folder under ``DJSYNC["DROP_ROOTS"]`` where files arrive, each read by a
run of its own (the watch mode: djsync.watch.folder).

A job's source ``{"kind": "drop", "root": "inbox", "folder": "orders", "pattern": "*.csv"}``
names the folder relative to a root that settings declare, and which file names count; the
format options (``format``, ``encoding``, ``delimiter``, ``sheet``) are a file source's and
apply to each file. The source reads nothing itself: a run reads the file the watch claimed
for it, or a file given for the run (an upload, ``runsync --file``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.exceptions import ConfigurationError
from djsync.sources.base import JobContext, Source, refuse
from djsync.sources.policy import check_file_format, check_keys, check_text

#: What a job's drop folder source may set.
DROP_JOB_OPTIONS = frozenset(
    {"root", "folder", "pattern", "format", "encoding", "delimiter", "sheet"}
)
#: The subfolders a watch moves files into: claimed, applied, refused.
SUBFOLDERS = ("processing", "done", "failed")


def drop_roots() -> dict[str, str]:
    roots = settings.DROP_ROOTS or {}
    if not isinstance(roots, dict):
        raise ConfigurationError(_('DJSYNC["DROP_ROOTS"] maps names to folders: {"inbox": "/srv"}'))
    return {str(name): str(folder) for name, folder in roots.items()}


class DropFolder(Source):
    """A folder where files arrive (see the module's docstring)."""

    may_be_empty = True

    def __init__(
        self,
        *,
        root: str | None = None,
        folder: str = "",
        pattern: str = "*",
        **file_options: Any,
    ) -> None:
        self.root = root
        self.folder = folder or ""
        self.pattern = pattern or "*"
        #: Format options for each file (encoding, delimiter, sheet, format).
        self.file_options = file_options
        self.name = f"{root or ''}:{self.folder or '.'}/{self.pattern}"

    def location(self, context: JobContext | None = None) -> str:
        """The folder's real path, checked to be inside its root."""
        context = context or JobContext()
        roots = drop_roots()
        if not roots:
            raise refuse(
                context,
                _(
                    'jobs cannot watch folders until DJSYNC["DROP_ROOTS"] declares one, e.g. '
                    '{"inbox": "/srv/inbox"}'
                ),
            )
        root = self.root
        if root is None and len(roots) == 1:
            root = next(iter(roots))
        if root not in roots:
            raise refuse(
                context,
                _('no drop root %(root)s in DJSYNC["DROP_ROOTS"] (roots: %(map)s)')
                % {"root": format(repr(root), ".60"), "map": ", ".join(map(repr, sorted(roots)))},
            )
        folder = self.folder
        if os.path.isabs(folder) or folder.startswith(("~", "\\")) or "\x00" in folder:
            raise refuse(
                context,
                _("drop folder %(folder)r: give a folder relative to its root")
                % {"folder": folder[:200]},
            )
        base = os.path.realpath(roots[str(root)])
        real = os.path.realpath(os.path.join(base, folder))
        if os.path.commonpath([base, real]) != base:
            raise refuse(
                context,
                _('drop folder %(folder)r leaves its root %(root)r (DJSYNC["DROP_ROOTS"])')
                % {"folder": folder[:200], "root": root},
            )
        return real

    def read(self) -> Iterator[dict[str, Any]]:
        raise ConfigurationError(
            _(
                "%(name)s is a drop folder: each file that arrives there is read by a run of "
                "its own (the job's watch setting, runsync --watch); give a file to run it now"
            )
            % {"name": self.name}
        )

    @classmethod
    def from_job(
        cls, options: dict[str, Any], *, base: dict[str, Any], context: JobContext
    ) -> DropFolder:
        """A job names a root of DJSYNC["DROP_ROOTS"], a folder inside it and a pattern."""
        check_keys(options, DROP_JOB_OPTIONS, kind="drop", context=context)
        kwargs = {k: v for k, v in base.items() if k in DROP_JOB_OPTIONS}
        for name in ("root", "folder"):
            if name in options:
                kwargs[name] = check_text(options[name], name, context=context, longest=255)
        if "pattern" in options:
            pattern = check_text(options["pattern"], "pattern", context=context)
            if not pattern or "/" in pattern or "\\" in pattern:
                raise refuse(
                    context,
                    _('pattern %(pattern)r is a file name pattern, such as "*.csv"')
                    % {"pattern": pattern},
                )
            kwargs["pattern"] = pattern
        source = cls(**check_file_format(options, kwargs, context=context))
        source.location(context)  # a folder that leaves its root is refused now
        return source

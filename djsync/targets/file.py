"""The file target: an export, a file that holds its source's rows, rewritten whole.

It reads the file already at its path (the previous export, if any) through the bounded file
sources, so the diff says which rows the export adds, changes and removes. Its writes
collect nothing per row: :meth:`FileTarget.write` streams the source's rows, as they are
when the apply runs, into a hidden file beside the destination, flushed to disk;
:meth:`FileTarget.finish` renames it into place once every write of the run went
through, and :meth:`FileTarget.discard` removes it when the apply fails. The destination
is replaced whole or not at all; a run with nothing to change does not touch it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from pathlib import Path
from typing import Any, cast

from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.engine.diff import Key, Plan, TargetRow, WholePlan
from djsync.exceptions import ConflictError, SourceError, TargetError
from djsync.exports.files import replace_file, stage_rows
from djsync.sources.files import FORMATS, FileSource
from djsync.targets.base import Mapper, Target, WriteResult

__all__ = ["FileTarget"]


class FileTarget(Target):
    """The file at ``path`` in ``format``, holding the rows ``rows()`` gives under
    ``headers``: the importer's mapping in reverse, so it reads back through the importer.

    ``rows`` is called once per apply, and streamed: the file equals the source as it is
    then. ``count`` (one COUNT query) says how many rows it gives: an export compares row
    by row only when the previous file and the source both hold at most
    ``EXPORT_COMPARE_MAX_ROWS``; else, and for a first export and formats the file sources
    cannot read (html, latex…), the run's plan is a :class:`WholePlan` of counts, flat in
    memory (:meth:`plan_whole`).
    """

    #: The file is replaced whole or not at all: a failed apply leaves the previous one.
    transactional = True

    def __init__(
        self,
        path: str | Path,
        *,
        format: str,
        headers: Sequence[str],
        rows: Callable[[], Iterable[Sequence[Any]]],
        label: str,
        neutralize_formulas: bool = True,
        compared: dict[str, Any] | None = None,
        count: Callable[[], int] | None = None,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.format = format
        self.headers = list(headers)
        self.rows = rows
        self.label = label
        self.neutralize_formulas = neutralize_formulas
        #: The file a stored preview compared with (:meth:`report`): when it is given, a file
        #: that changed since (edited, replaced, removed) stops the apply.
        self.expected = compared
        #: Size and modification time of the file :meth:`read_rows` read (None: no file).
        self.compared: dict[str, Any] | None = None
        #: Whether the apply writes the file even with nothing to change: it is missing,
        #: cannot be compared (its format or its columns differ), set by :meth:`read_rows`.
        self.rewrite = True
        #: Rows written by the last apply (None: not written).
        self.exported: int | None = None
        self._staged: Path | None = None
        self.count = count
        #: How the run writes the file without comparing (:meth:`plan_whole`; None: compared).
        self.whole: dict[str, Any] | None = None
        #: The previous file's rows, read by :meth:`plan_whole` within the cap, for the diff.
        self._previous: dict[Key, TargetRow] | None = None

    @property
    def readable(self) -> bool:
        """Whether the previous file can be read back to compare (the file sources' formats)."""
        return self.format in FORMATS

    # -- reading the previous file -------------------------------------------------------
    def read_rows(self, importer: Mapper) -> dict[Key, TargetRow]:
        """The rows of the file at ``path`` by key, converted as the importer converts a
        source (the file is one: it syncs back), or none when there is no file yet. A file
        that cannot be read, or is not this export's (no key column), stops the run: its
        error names the file; move it away to start afresh."""
        if self._previous is not None:  # read by plan_whole just now, within the cap
            rows, self._previous = self._previous, None
            return rows
        self._check_version()
        if self.whole is not None or not self._exists():
            return {}
        return self._read(importer) or {}

    def _check_version(self) -> None:
        self.rewrite = True
        self.compared = _version(self.path)
        if self.expected is not None and self.compared != self.expected.get("version"):
            raise ConflictError(
                f"{self.path}: the file changed since the preview (it is rewritten whole, so "
                "an edit made since would be lost). Nothing written; preview again."
            )

    def _exists(self) -> bool:
        return self.readable and self.compared is not None and bool(self.compared["size"])

    def _read(self, importer: Mapper, most: int | None = None) -> dict[Key, TargetRow] | None:
        """The previous file's rows by key; None (what was read dropped) past ``most`` rows."""
        source = FileSource(self.path, format=self.format)
        fields = importer.active_fields
        keys = [f for f in fields if f.name in getattr(importer, "keys", ())]
        rows: dict[Key, TargetRow] = {}
        # A generator: closed below, and the file with it.
        records = cast(Generator[dict[str, Any], None, None], source.read())
        try:
            columns: dict[str, str] = {}
            for number, record in enumerate(records, start=source.first_row):
                if not columns:
                    columns = self._columns(source.columns or [], fields, keys)
                row = source.row or number
                values = {
                    f.name: self._value(f, record.get(columns.get(f.name, "")), row) for f in fields
                }
                values = importer.normalize_target_row(values)
                rows[importer.key_of(values)] = TargetRow(pk=row, values=values)
                if most is not None and len(rows) > most:
                    rows.clear()
                    return None
            if not columns and source.columns is not None:
                columns = self._columns(source.columns, fields, keys)
        except SourceError as exc:
            raise TargetError(
                f"{self.path}: the file there cannot be read as the previous export "
                f"({exc}); move it away to write a new export"
            ) from None
        finally:
            records.close()
        self.rewrite = list(source.columns or []) != self.headers
        return rows

    def plan_whole(
        self, importer: Mapper, stored: dict[str, Any] | None = None
    ) -> WholePlan | None:
        """The plan of an export written whole without comparing, in flat memory: none of
        the source's rows is read here (one COUNT) and the previous file's only up to the
        cap. None when both are within ``EXPORT_COMPARE_MAX_ROWS``: the diff compares them.

        The delete guard weighs what is known cheaply: a previous file read past the cap
        holds more rows than it, so a source under the cap removes at least the difference.
        A source over the cap is not weighed (the previous file is not read at all)."""
        if stored is not None:  # applying a preview: as it was planned, the file unchanged
            self._check_version()
            self.whole = stored.get("whole")
            return self._whole_plan() if self.whole else None
        self.whole = self._previous = None
        self._check_version()
        most = settings.EXPORT_COMPARE_MAX_ROWS
        rows = self.count() if self.count is not None else None
        if rows is None:
            return None
        name, reason, previous = self.path.name, "", 0
        if not self.readable:
            reason = _("%(format)s files are not read back to compare") % {"format": self.format}
        elif not self._exists():
            reason = _("no previous file to compare with")
        elif most is not None and rows > most:
            reason = _("over EXPORT_COMPARE_MAX_ROWS, %(most)s") % {"most": most}
        else:
            self._previous = self._read(importer, most)
            if self._previous is not None:
                return None
            reason = _("over EXPORT_COMPARE_MAX_ROWS, %(most)s") % {"most": most}
            previous = (most or 0) + 1  # at least: reading stopped there
        new = not self.readable or not self._exists()
        if new:
            note = _("%(name)s will be created with %(rows)s rows (%(reason)s)")
        else:
            note = _(
                "%(name)s will be rewritten with %(rows)s rows (not compared row by row: "
                "%(reason)s)"
            )
        self.whole = {
            "rows": rows,
            "new": new,
            "previous": previous,
            "note": note % {"name": name, "rows": rows, "reason": reason},
        }
        return self._whole_plan()

    def _whole_plan(self) -> WholePlan:
        whole = self.whole or {}
        rows, previous = int(whole.get("rows", 0)), int(whole.get("previous", 0))
        return WholePlan(
            model=self.label,
            rows=rows,
            new=bool(whole.get("new")),
            removed=max(0, previous - rows),
            rows_read=rows,
            rows_in_scope=previous,
            warnings=[str(whole.get("note", ""))],
            path="whole: streamed, not compared",
        )

    def _columns(self, have: Sequence[str], fields: Sequence[Any], keys: Sequence[Any]) -> dict:
        """The file's column of each field (as a source matches them: exact, else folded)."""
        exact = set(have)
        folded = {c.strip().lower(): c for c in have}
        found = {}
        for f in fields:
            column = f.column if f.column in exact else folded.get(f.column.strip().lower())
            if column is not None:
                found[f.name] = column
        missing = [f.column for f in keys if f.name not in found]
        if missing:
            raise TargetError(
                f"{self.path}: the file there has no column {', '.join(map(repr, missing))} "
                f"(it has: {', '.join(map(repr, have[:20]))}): it is not this export's; move "
                "it away to write a new export"
            )
        return found

    def _value(self, field: Any, raw: Any, row: int) -> Any:
        if raw is None:  # a column the previous file lacks: compares unequal to a value
            return None
        try:
            return field.convert(raw)
        except (ValueError, TypeError) as exc:
            raise TargetError(
                f"{self.path}: row {row}, column {field.column!r}: {str(raw)[:80]!r} cannot be "
                f"read back ({exc}); move the file away to write a new export"
            ) from None

    # -- writing -------------------------------------------------------------------------
    def write(
        self,
        plan: Plan,
        importer: Mapper,
        *,
        progress: Callable[[int], None] | None = None,
        actions: tuple[str, ...] = ("create", "update", "delete"),
        result: WriteResult | None = None,
    ) -> WriteResult:
        """Stage the new file (once per apply, whichever actions are asked): every row of
        the source streamed to a temporary file beside the destination. Nothing to change
        in a file that compares: nothing written."""
        result = result if result is not None else WriteResult()
        if self._staged is None and (plan.total or self.rewrite):
            self._staged, self.exported = stage_rows(
                self.path,
                self.format,
                self.headers,
                self.rows(),
                neutralize_formulas=self.neutralize_formulas,
            )
        if isinstance(plan, WholePlan):  # no action per row: the rows written
            result.written += self.exported or 0
        else:
            result.written += sum(len(getattr(plan, f"{action}s")) for action in actions)
        if progress is not None:
            progress(result.written)
        return result

    def finish(self) -> None:
        """Rename the staged file over the destination."""
        staged, self._staged = self._staged, None
        if staged is not None:
            replace_file(staged, self.path)

    def discard(self) -> None:
        """Remove the staged file: the destination keeps its previous content."""
        staged, self._staged = self._staged, None
        if staged is not None:
            staged.unlink(missing_ok=True)
            self.exported = None

    # -- what the run shows --------------------------------------------------------------
    def restore_pk(self, text: str) -> Any:
        return int(text) if text.isdigit() else text

    def describe(self, action: str, key: Key, pk: Any) -> str:
        name = self.path.name
        if action == "create":
            return f"add a row to {name}"
        verb = "rewrite" if action == "update" else "remove"
        return f"{verb} row {pk} of {name}"

    def report(self) -> dict[str, Any]:
        """What the run records about the file in its stats."""
        found: dict[str, Any] = {
            "file": str(self.path),
            "format": self.format,
            "version": self.compared,
        }
        if self.whole is not None:
            found["whole"] = self.whole
        if self.exported is not None:
            found["exported"] = self.exported
        return found


def _version(path: Path) -> dict[str, Any] | None:
    """What tells one state of the file from another: its size and modification time (None:
    no file). A file of no bytes has no previous rows (an export that never got written)."""
    try:
        found = path.stat()
    except (FileNotFoundError, NotADirectoryError):  # not there: the write says if it can be
        return None
    except OSError as exc:
        raise TargetError(f"{path}: cannot read the previous export: {exc.strerror}") from None
    return {"size": found.st_size, "mtime_ns": found.st_mtime_ns}

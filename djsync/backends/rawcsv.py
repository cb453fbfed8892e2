"""A CSV file parsed by PostgreSQL itself: COPY of its bytes straight into staging.

Reading a million CSV rows in Python (the csv module, then each cell's conversion and its
COPY text) cost more than PostgreSQL's whole COPY of the same file. Here, for a CSV file
whose fields all take cells PostgreSQL reads to the value the field's converter makes, the
file's bytes go to ``COPY … (FORMAT csv)`` into the staging table as they are, and Python
only checks them meanwhile, a chunk at a time with one regular expression of the whole
row (:func:`row_pattern`) at C speed: every row must be one whose every cell is written
"as is" for its field (the rules of djsync.backends.copytext: plain text without
surrounding space, a decimal or whole number within the column, an ISO date; never empty,
never a quote opening a formula), fields either unquoted without quotes or wholly quoted,
no line break inside quotes (so rows are lines and row numbers are the csv module's),
nothing the file source refuses (NUL bytes, bad UTF-8, lines or files over their limits).

Any row outside those forms, or anything PostgreSQL refuses (a cell too long for its
column, an impossible date, short or long rows, mixed line ends), rolls the staging back
to a savepoint and the caller reads the file in Python as before: the same staged rows,
row errors and counts in every case; only a file of well-formed rows takes this path.
"""

from __future__ import annotations

import codecs
import re
from typing import TYPE_CHECKING, Any

from django.db import models, transaction

from djsync.backends.copytext import as_written, number_pattern
from djsync.conf import settings
from djsync.engine.rows import plain_text
from djsync.mapping.fields import BoundField

if TYPE_CHECKING:
    from djsync.backends.staged import StagedSqlPlan
    from djsync.engine.rows import RowConverter
    from djsync.sources.base import Source

#: Bytes read, checked and sent per step. A line inside one chunk is no longer than the
#: chunk, so only a line running across chunks needs its length measured.
CHUNK = 256 * 1024

#: A text cell as written: no space or quote around it, not opening with ' (a neutralized
#: formula the reader would unquote), unquoted without quotes, or quoted with doubled ones.
TEXT = (
    r"(?:[^\s,\"'](?:[^,\"\r\n]*[^\s,\"])?"
    r"|\"(?:[^\"\s']|\"\")(?:(?:[^\"\r\n]|\"\")*(?:[^\"\s]|\"\"))?\")"
)
#: Any cell of a column no field reads.
ANY = r"(?:[^,\"\r\n]*|\"(?:[^\"\r\n]|\"\")*\")"
#: An ISO date, as ``date.fromisoformat`` reads it first (an impossible day: PostgreSQL
#: refuses the COPY, and the file is read in Python).
DATE = r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"

_BOM = codecs.BOM_UTF8

#: Row numbers the staging table's identity takes from its sequence at a time. One at a
#: time (the default) cost about a third of the COPY; the table and its sequence are this
#: session's alone, so the numbers still follow each other without gaps.
NUMBERS_CACHED = 100_000


class Refused(Exception):
    """The file is one only the Python path reads exactly."""


# -- which files ---------------------------------------------------------------------------
def cell_pattern(f: BoundField, using: str) -> str | None:
    """The regular expression of a cell the field's converter takes as written and that
    PostgreSQL's input function reads to the same value, or None (no such form)."""
    if not as_written(f):
        return None
    mf = f.model_field
    if isinstance(mf, models.CharField | models.TextField):
        return TEXT if plain_text(f)[0] else None
    if isinstance(mf, models.DateField) and not isinstance(mf, models.DateTimeField):
        return DATE
    return number_pattern(f, using)


def row_pattern(fields: list[BoundField], columns: list[str], using: str) -> str | None:
    """A row of ``columns`` whose every cell a field reads is written as is (None: some
    field has no such form, reads no column of the file, or shares its column)."""
    by_column: dict[str, str] = {}
    for f in fields:
        pattern = cell_pattern(f, using)
        if pattern is None or f.source_column not in columns or f.source_column in by_column:
            return None
        by_column[str(f.source_column)] = pattern
    return ",".join(by_column.get(c, ANY) for c in columns)


def applies(source: Source, plan: StagedSqlPlan, converter: RowConverter) -> bool:
    """Whether this path may read ``source`` for ``plan`` (it may still refuse the file)."""
    from djsync.sources.files import FileSource

    if not settings.FAST_PATH_RAW_CSV or type(source) is not FileSource:
        return False
    columns = list(source.columns or [])
    if source.format != "csv" or source.delimiter != "," or len(columns) < 2:
        return False
    if codecs.lookup(source.encoding).name != "utf-8":
        return False
    if converter.hooked or converter.prepared or converter.related:
        return False
    if min(settings.MAX_LINE_SIZE, settings.MAX_CELL_SIZE) < CHUNK:
        return False
    return row_pattern(plan.fields, columns, plan.importer.using) is not None


# -- the rows ------------------------------------------------------------------------------
class Rows:
    """Checks the file's data a chunk at a time and counts its rows: every row must match
    the row pattern; no NUL byte, no ``\\.`` (PostgreSQL's end of data), valid UTF-8, no
    line longer than the line and cell limits, no more bytes than MAX_FILE_SIZE. (Keys are
    not read here: the duplicate check runs in SQL, as for keys that arrive unsorted.)"""

    def __init__(self, row: str, total: int) -> None:
        self.rows = re.compile(rf"(?:{row}\r?\n)*")
        self.last_row = re.compile(row)
        self.total = total
        self.size_limit = settings.MAX_FILE_SIZE
        self.line_limit = min(settings.MAX_LINE_SIZE, settings.MAX_CELL_SIZE)
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.carry = ""
        self.before = b""  # the last byte of the previous chunk
        self.count = 0

    def __call__(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self.total > self.size_limit:
            raise Refused("larger than MAX_FILE_SIZE")
        if b"\x00" in chunk or b"\\." in chunk or (self.before == b"\\" and chunk[:1] == b"."):
            raise Refused("a NUL byte or \\.")
        self.before = chunk[-1:]
        try:
            text = self.carry + self.decoder.decode(chunk)
        except UnicodeDecodeError:
            raise Refused("not UTF-8") from None
        end = self.rows.match(text).end()  # type: ignore[union-attr]  # * matches always
        self.count += text.count("\n", 0, end)
        self.carry = text[end:]
        if "\n" in self.carry:
            raise Refused(f"row {self.count + 2} is not one PostgreSQL reads as written")
        if len(self.carry) * 4 > self.line_limit:  # UTF-8: at most 4 bytes a character
            raise Refused("a long line")

    def finish(self) -> int:
        """The number of rows, once the data ended (the last one without a line end)."""
        try:
            tail = self.carry + self.decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise Refused("not UTF-8") from None
        if tail:
            if not self.last_row.fullmatch(tail):
                raise Refused("the last row is not one PostgreSQL reads as written")
            self.count += 1
        return self.count


def _header(handle: Any, width: int) -> int:
    """Skip the header line (one line of ``width`` cells without quotes, as the reader
    found, a byte-order mark skipped); its size in bytes."""
    head = handle.readline(CHUNK + 1)
    body = head[len(_BOM) :] if head.startswith(_BOM) else head
    body = body[:-2] if body.endswith(b"\r\n") else body[:-1]
    if not head.endswith(b"\n") or b'"' in body or b"\r" in body or b"\x00" in body:
        raise Refused("the header line")
    if body.count(b",") + 1 != width:
        raise Refused("the header's width")
    return len(head)


# -- staging --------------------------------------------------------------------------------
def copy_file(plan: StagedSqlPlan, source: Source) -> int | str:
    """COPY ``source``'s bytes into ``plan``'s staging table: how many rows; or why not,
    with nothing left behind (a savepoint rolled back) for the Python path."""
    import psycopg

    try:
        with transaction.atomic(using=plan.importer.using):
            good = _copy(plan, source)
    except (Refused, psycopg.errors.DataError, psycopg.errors.QueryCanceled) as exc:
        return "refused: " + (str(exc).splitlines() or [type(exc).__name__])[0]
    plan.importer.rows_read += good
    source.row = source.first_row + good - 1 if good else None
    return good


def _copy(plan: StagedSqlPlan, source: Source) -> int:
    """The staging table, its rows COPY'd from the file's bytes; how many."""
    columns = list(source.columns or [])
    row = row_pattern(plan.fields, columns, plan.importer.using)
    assert row is not None  # applies() said so
    where = {f.source_column: i for i, f in enumerate(plan.fields)}
    targets = [f"c{where[c]}" if c in where else f"x{j}" for j, c in enumerate(columns)]
    with plan.connection.cursor() as cursor:
        plan.create_src(cursor)
        src = plan.src
        # Row numbers in file order from the first data row; unread columns land in x….
        alter = [
            "ALTER COLUMN _row SET NOT NULL",
            f"ALTER COLUMN _row ADD GENERATED ALWAYS AS IDENTITY (START WITH {source.first_row} "
            f"CACHE {NUMBERS_CACHED})",
            "ALTER COLUMN _skip SET DEFAULT false",
            *(f"ADD COLUMN {t} text" for t in targets if t.startswith("x")),
        ]
        cursor.execute(f"ALTER TABLE {src} " + ", ".join(alter))
        with source._open() as handle:  # type: ignore[attr-defined]  # a FileSource
            rows = Rows(row, _header(handle, len(columns)))
            copy_sql = f"COPY {src} ({', '.join(targets)}) FROM STDIN (FORMAT csv)"
            with cursor.cursor.copy(copy_sql) as copy:
                while chunk := handle.read(CHUNK):
                    copy.write(chunk)
                    rows(chunk)
                count = rows.finish()
        if cursor.cursor.rowcount != count:
            raise Refused(f"{cursor.cursor.rowcount} rows copied, {count} read")
    return count


__all__ = ["Refused", "Rows", "applies", "cell_pattern", "copy_file", "row_pattern"]

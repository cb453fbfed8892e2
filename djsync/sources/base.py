"""The source contract: a small class whose ``read()`` yields one dict per record."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class Source:
    """Base class of every source.

    Subclasses implement :meth:`read`, a generator of dicts (column → raw value). Before it
    yields its first record (or finishes, for an empty source) it sets :attr:`columns` to
    the column names the source provides, so an importer can tell a missing key column from
    an empty file. Sources stream: they never hold the whole data set when the format allows.
    """

    #: Human-readable name used in error messages (a file name, a URL).
    name: str = "source"
    #: Number the first record gets in row errors: 2 for tables with a header row (as a
    #: spreadsheet shows it), 1 for record formats such as JSON.
    first_row: int = 2
    #: Column names, known once reading has started.
    columns: list[str] | None = None
    #: Row number of the record last yielded, for sources whose rows are not simply
    #: consecutive (blank lines skipped); None lets the importer count.
    row: int | None = None

    def read(self) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.name

"""The source contract: a small class whose ``read()`` yields one dict per record."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from django.utils.translation import gettext as _

from djsync.exceptions import ConfigurationError
from djsync.runs.progress import Extent

#: A cell that a row does not have at all (a CSV row shorter than its header), as opposed to
#: an empty one: the importer reports it as a row error, never fills it with a default.
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<missing cell>"})()

TRUTHY = frozenset({"1", "true", "t", "yes", "y", "on", "x", "deleted"})


@dataclass(frozen=True)
class JobContext:
    """What a job's source options are checked against: the job (for messages), its
    importer (for its declared querysets), and how deep in derived sources we are."""

    job: str = ""
    importer: Any = None
    depth: int = 0
    #: In a multi-model job: another importer's (trusted base options, job options, class),
    #: by name, for a derived source whose ``"from"`` names it; or its source itself when
    #: the run gives it one (an uploaded file, from the site's code, not the job's data).
    sibling: Callable[[str], tuple[dict[str, Any], dict[str, Any], Any] | Source] | None = field(
        default=None, compare=False
    )

    def prefix(self) -> str:
        return f"job {self.job!r}: " if self.job else ""

    def deeper(self) -> JobContext:
        return replace(self, depth=self.depth + 1)


def refuse(context: JobContext, message: str) -> ConfigurationError:
    """A one-line refusal naming the job."""
    return ConfigurationError(f"{context.prefix()}{message}")


#: How a job's options build each kind of source that a job may use, by class: filled by
#: djsync.sources.policy for the built-in kinds (a custom kind overrides ``from_job``).
JOB_RULES: dict[type, Callable[..., Any]] = {}


class Source:
    """Base class of every source.

    Subclasses implement :meth:`read`, a generator of dicts (column → raw value). Before it
    yields its first record (or finishes, for an empty source) it sets :attr:`columns` to
    the column names the source provides, so an importer can tell a missing key column from
    an empty file. Sources stream: they never hold the whole data set when the format allows.

    A source that supports incremental sync takes ``incremental={"column": ...}`` and passes
    its records through :meth:`track`, which remembers the largest cursor value seen and
    holds back the records the source marks as deleted.
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
    #: True when an empty result is a normal answer (an incremental read with nothing new),
    #: not a sign of a broken source.
    may_be_empty: bool = False
    #: Database alias this source reads through (a SQL or queryset source), None for files
    #: and HTTP: a staged plan cannot write to the connection a source is still reading.
    database: str | None = None

    #: Incremental options: ``column`` (the cursor column, e.g. ``updated_at``), ``deleted``
    #: (a column whose true value marks a deleted record), and source-specific ones.
    incremental: dict[str, Any] | None = None
    #: The cursor saved on the job by the last successful apply; set before :meth:`read`.
    cursor: Any = None
    #: The cursor to save on the job once this run is applied (largest value read).
    next_cursor: Any = None
    #: Records the source marked as deleted (incremental mode), held back from :meth:`read`.
    deleted_records: list[dict[str, Any]] = []  # noqa: RUF012 - replaced per instance
    #: Cells that count as empty ("NA", "\\N"), set on a source whose job or code gives
    #: ``null_tokens``; unset otherwise (the importer reads it with a default).
    null_tokens: list[str]

    def read(self) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    @classmethod
    def from_job(
        cls, options: dict[str, Any], *, base: dict[str, Any], context: JobContext
    ) -> Source:
        """Build this source from a job's options: data typed into the admin, untrusted.

        ``options`` are the job's (without ``kind``); ``base`` the trusted defaults from
        code (the importer's ``source`` attribute), of this kind. Check every job option
        (refuse unknown keys with :func:`djsync.sources.policy.check_keys`), resolve names
        into what they stand for, and never let a job reach what a developer did not
        declare. The built-in kinds follow djsync.sources.policy; a kind registered with
        ``register_source`` that does not override this method cannot be used from a job.
        """
        rule = JOB_RULES.get(cls)
        if rule is None:
            raise refuse(
                context,
                f"source class {cls.__name__} cannot be used from a job: it does not say "
                "which job options are safe (it needs a from_job() classmethod)",
            )
        return rule(cls, options, base=base, context=context)

    def scope_keys(self, importer: Any) -> set[tuple[Any, ...]] | None:
        """The keys this source is the truth for, when it holds only some rows of the
        scope (djsync.realtime: the rows that changed); None (the default): all of it.
        The run then reads, updates and deletes only target rows under these keys."""
        return None

    def extent(self) -> Extent | None:
        """Optional: how far :meth:`read` has got, for the run's progress and its estimate
        (a file: bytes read of its size; an API: pages). Called between batches of rows
        while the read goes on; None (the default) when the source cannot tell cheaply."""
        return None

    def read_rows(self) -> Iterator[list[Any]] | None:
        """Optional, for speed: the records as lists of cells in :attr:`columns` order (the
        same records :meth:`read` yields, without a dict each), or None when the source
        reads dicts only. :attr:`columns` and :attr:`row` are kept up as by :meth:`read`."""
        return None

    def __str__(self) -> str:
        return self.name

    # -- incremental sync ----------------------------------------------------------------
    def setup_incremental(self, incremental: dict[str, Any] | None) -> None:
        """Validate and keep the ``incremental`` option; call from ``__init__``."""
        self.deleted_records = []
        if not incremental:
            self.incremental = None
            return
        if not isinstance(incremental, dict) or not incremental.get("column"):
            raise ConfigurationError(
                _('%(name)s: incremental needs a cursor column, e.g. {"column": "updated_at"}')
                % {"name": self.name}
            )
        self.incremental = dict(incremental)
        self.may_be_empty = True

    @property
    def marks_deletions(self) -> bool:
        return bool(self.incremental and self.incremental.get("deleted"))

    def track(self, records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Pass records through, noting the cursor and holding back deletion marks."""
        if not self.incremental:
            yield from records
            return
        column = self.incremental["column"]
        deleted = self.incremental.get("deleted")
        for record in records:
            value = record.get(column)
            if value is not None and value != "":
                if self.next_cursor is None or _later(value, self.next_cursor):
                    self.next_cursor = value
            if deleted and _is_true(record.get(deleted)):
                self.deleted_records.append(record)
                continue
            yield record


def _later(a: Any, b: Any) -> bool:
    try:
        return a > b
    except TypeError:
        return str(a) > str(b)


def _is_true(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    return str(value).strip().lower() in TRUTHY

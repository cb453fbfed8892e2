"""What a job definition may reach: the rules that turn a job's source options (data, typed
into the admin) into a source built only from what the site's developers declared.

A job's ``source`` (and an export job's ``target``) is untrusted, whoever wrote it. It may
pick a file under ``DJSYNC["FILE_ROOTS"]``, a query of ``DJSYNC["SQL_QUERIES"]``, a
queryset of its importer's ``querysets``, and set safe parameters (an encoding, a page
size, bound SQL parameters). Options from code (an importer's ``source`` attribute, a file
given to ``djsync.run()`` or ``runsync --file``, a source built in Python) stay trusted.
See docs/security.md.
"""

from __future__ import annotations

import codecs
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from djsync.conf import settings
from djsync.exceptions import ConfigurationError
from djsync.sources.base import JOB_RULES, JobContext, Source, refuse
from djsync.sources.derived import DerivedSource
from djsync.sources.files import FileSource
from djsync.sources.http import HttpSource
from djsync.sources.kinds import source_kinds
from djsync.sources.querysets import QuerySetSource
from djsync.sources.ranges import check_column
from djsync.sources.sql import SqlSource

#: Incremental options a job may set, and what a cursor column may look like: one plain
#: column name (no ``__`` relation path, no quotes: it is put into SQL and filters).
INCREMENTAL_OPTIONS = frozenset({"column", "deleted"})
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_FIRST_WORD = re.compile(r"^\s*([A-Za-z]+)")


# -- building ------------------------------------------------------------------------------


def build(
    kinds: Mapping[str, type[Source]],
    options: Any,
    *,
    base: Mapping[str, Any] | None = None,
    context: JobContext,
) -> Source:
    """Build the source a job's ``options`` pick, over the trusted ``base`` options (an
    importer's ``source`` attribute). A ``kind`` the job gives that differs from the base's
    leaves the base out: its options belong to another kind of source."""
    if not isinstance(options, dict):
        raise refuse(context, _('source options are a JSON object, e.g. {"path": "x.csv"}'))
    base = dict(base or {})
    kind = options.get("kind", base.get("kind", "file"))
    if not isinstance(kind, str) or kind not in kinds:
        raise refuse(
            context,
            _("unknown source kind %(kind)r (known: %(sorted)s)")
            % {"kind": kind, "sorted": ", ".join(sorted(kinds))},
        )
    if base.get("kind", "file") != kind:
        base = {}
    base.pop("kind", None)
    # Null tokens are options of every kind: cells that count as empty (issue 9, values).
    tokens = check_null_tokens(options.get("null_tokens", base.pop("null_tokens", None)), context)
    job_options = {k: v for k, v in options.items() if k not in ("kind", "null_tokens")}
    try:
        source = kinds[kind].from_job(job_options, base=base, context=context)
    except TypeError as exc:
        raise refuse(
            context, _("bad options for a %(kind)s source: %(exc)s") % {"kind": kind, "exc": exc}
        ) from None
    if tokens:
        source.null_tokens = tokens
    return source


#: Most null tokens a source may declare, and their longest length.
MAX_NULL_TOKENS = 20


def check_null_tokens(value: Any, context: JobContext) -> list[str]:
    """A source's ``null_tokens`` option: a short list of short texts, e.g. ["NA", "\\N"]."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_NULL_TOKENS:
        raise refuse(
            context,
            _(
                'null_tokens is a list of at most %(max_null_tokens)s texts, e.g. ["NA", '
                '"\\\\N"], not %(value)s'
            )
            % {"max_null_tokens": MAX_NULL_TOKENS, "value": format(repr(value), ".60")},
        )
    if any(token is None for token in value):
        raise refuse(context, _("a null token must be a short text, not None"))
    return [check_text(token, _("a null token"), context=context, longest=20) for token in value]


def check_keys(
    options: Mapping[str, Any],
    allowed: Iterable[str],
    *,
    kind: str,
    context: JobContext,
    what: str | None = None,
) -> None:
    """Refuse option keys a job may not set for this kind, naming them and the allowed."""
    allowed = set(allowed)
    unknown = sorted(str(k) for k in options if k not in allowed)
    if unknown:
        shown = sorted(allowed) if what else sorted(allowed | {"kind"})
        subject = what or _("a job's %(kind)s source") % {"kind": kind}
        raise refuse(
            context,
            _("%(subject)s cannot set %(map)s (it may set: %(shown)s)")
            % {"subject": subject, "map": ", ".join(map(repr, unknown)), "shown": ", ".join(shown)},
        )


def check_incremental(
    value: Any, *, context: JobContext, extra: Iterable[str] = (), plain: bool = True
) -> dict[str, Any] | None:
    """A job's incremental options. ``plain``: the columns go into SQL or queryset filters,
    so each is one plain column name (no quotes, no ``__`` relation path)."""
    if value in (None, {}, False):
        return None
    if not isinstance(value, dict):
        raise refuse(context, _('incremental is an object, e.g. {"column": "updated_at"}'))
    check_keys(
        value, INCREMENTAL_OPTIONS | set(extra), kind="", context=context, what="incremental"
    )
    for name in ("column", "deleted", *extra):
        item = value.get(name)
        if item is None:
            continue
        if not isinstance(item, str) or len(item) > 100 or "\x00" in item:
            raise refuse(
                context,
                _("incremental %(name)s must be a short text, not %(item)s")
                % {"name": name, "item": format(repr(item), ".60")},
            )
        if plain and name != "param" and (not _COLUMN.match(item) or "__" in item):
            raise refuse(
                context,
                _(
                    "incremental %(name)s %(item)r is not a plain column name (letters, digits "
                    "and _, no relation path)"
                )
                % {"name": name, "item": item},
            )
    return dict(value)


def check_chunk_size(value: Any, *, context: JobContext) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
        raise refuse(
            context,
            _("chunk_size must be a whole number from 1 to 100000, not %(value)r")
            % {"value": value},
        )
    return value


def check_text(value: Any, name: str, *, context: JobContext, longest: int = 100) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > longest or "\x00" in value:
        raise refuse(
            context,
            _("%(name)s must be a short text, not %(value)s")
            % {"name": name, "value": format(repr(value), ".60")},
        )
    return value


# -- files ---------------------------------------------------------------------------------

FILE_JOB_OPTIONS = frozenset({"root", "path", "format", "encoding", "delimiter", "sheet"})


def file_roots() -> dict[str, str]:
    roots = settings.FILE_ROOTS or {}
    if not isinstance(roots, dict):
        raise ConfigurationError(_('DJSYNC["FILE_ROOTS"] maps names to folders: {"data": "/srv"}'))
    return {str(name): str(folder) for name, folder in roots.items()}


def resolve_path(
    path: Any, root: Any = None, *, context: JobContext, what: str = gettext_noop("source path")
) -> str:
    """The real path of a job's ``path`` under one of ``DJSYNC["FILE_ROOTS"]``.

    Refuses absolute paths, ``~``, NUL, a path that leaves its root once resolved (``..``,
    symlinks pointing out: the check is made on the real path), and an existing entry that
    is not a regular file (a device, a FIFO, a folder). Returns the resolved path, which is
    what gets opened.
    """
    roots = file_roots()
    if not isinstance(path, str) or not path.strip():
        raise refuse(
            context,
            _("%(what)s must be a file name, not %(path)s")
            % {"what": _(what), "path": format(repr(path), ".60")},
        )
    shown = repr(path[:200])
    if not roots:
        raise refuse(
            context,
            _(
                '%(what)s %(shown)s: jobs cannot name files until DJSYNC["FILE_ROOTS"] declares a '
                'folder for them, e.g. {"data": "/srv/data"}'
            )
            % {"what": _(what), "shown": shown},
        )
    if "\x00" in path:
        raise refuse(
            context,
            _("%(what)s %(shown)s contains a NUL character") % {"what": _(what), "shown": shown},
        )
    if root is None:
        if len(roots) > 1:
            raise refuse(
                context,
                _(
                    '%(what)s %(shown)s: say which root ("root": one of %(map)s, from '
                    'DJSYNC["FILE_ROOTS"])'
                )
                % {"what": _(what), "shown": shown, "map": ", ".join(map(repr, sorted(roots)))},
            )
        root = next(iter(roots))
    if not isinstance(root, str) or root not in roots:
        raise refuse(
            context,
            _('no file root %(root)s in DJSYNC["FILE_ROOTS"] (roots: %(map)s)')
            % {"root": format(repr(root), ".60"), "map": ", ".join(map(repr, sorted(roots)))},
        )
    if os.path.isabs(path) or path.startswith(("~", "\\")) or re.match(r"^[A-Za-z]:", path):
        raise refuse(
            context,
            _(
                "%(what)s %(shown)s is absolute; give a path relative to the root %(root)r "
                '(DJSYNC["FILE_ROOTS"])'
            )
            % {"what": _(what), "shown": shown, "root": root},
        )
    folder = os.path.realpath(roots[root])
    real = os.path.realpath(os.path.join(folder, path))
    if os.path.commonpath([folder, real]) != folder:
        raise refuse(
            context,
            _('%(what)s %(shown)s leaves its root %(root)r (DJSYNC["FILE_ROOTS"])')
            % {"what": _(what), "shown": shown, "root": root},
        )
    try:
        mode = os.stat(real).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None  # not there (yet): reading says so; an export creates it
    except OSError as exc:
        raise refuse(context, f"{what} {shown}: {exc.strerror}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise refuse(
            context,
            _("%(what)s %(shown)s is not a regular file") % {"what": _(what), "shown": shown},
        )
    return real


def relative_to_root(
    path: str | Path, roots: Mapping[str, str] | None = None
) -> tuple[str, str] | None:
    """``(root name, relative path)`` for a server path inside one of the roots (default:
    DJSYNC["FILE_ROOTS"]), else None (used to migrate stored jobs to the new form)."""
    real = os.path.realpath(str(path))
    for name, folder in sorted((file_roots() if roots is None else roots).items()):
        folder = os.path.realpath(folder)
        if real != folder and os.path.commonpath([folder, real]) == folder:
            return name, os.path.relpath(real, folder)
    return None


def file_from_job(
    cls: type[FileSource], options: dict[str, Any], *, base: dict[str, Any], context: JobContext
) -> Source:
    check_keys(options, FILE_JOB_OPTIONS, kind="file", context=context)
    kwargs = dict(base)
    if "path" in options:
        kwargs["path"] = resolve_path(options["path"], options.get("root"), context=context)
        kwargs.pop("file", None)
        kwargs.setdefault("name", options["path"])
    elif "root" in options:
        raise refuse(context, _('a file source with "root" needs a "path" inside it'))
    elif "path" not in kwargs and "file" not in kwargs:
        raise refuse(context, _('a file source needs a "path" (under DJSYNC["FILE_ROOTS"])'))
    source = cls(**check_file_format(options, kwargs, context=context))
    if "path" in options:
        source.checked_path = True  # opened without following a symlink swapped in since
    return source


def check_file_format(
    options: Mapping[str, Any], kwargs: dict[str, Any], *, context: JobContext
) -> dict[str, Any]:
    """``kwargs`` with a job's file format options checked and added: ``format``,
    ``encoding``, ``delimiter`` and ``sheet`` (a file source's, a drop folder's)."""
    for name in ("format", "encoding", "delimiter"):
        if name in options:
            kwargs[name] = check_text(options[name], name, context=context, longest=40)
    if kwargs.get("encoding") and not is_text_encoding(kwargs["encoding"]):
        raise refuse(
            context,
            _("encoding %(encoding)r is not a text encoding (e.g. utf-8, latin-1, cp1252)")
            % {"encoding": kwargs["encoding"]},
        )
    delimiter = kwargs.get("delimiter")
    if delimiter and delimiter != "auto" and len(delimiter) != 1:
        raise refuse(
            context,
            _('delimiter must be one character or "auto", not %(delimiter)r')
            % {"delimiter": delimiter},
        )
    if "sheet" in options:
        sheet = options["sheet"]
        if not isinstance(sheet, int) or isinstance(sheet, bool):
            sheet = check_text(sheet, "sheet", context=context)
        kwargs["sheet"] = sheet
    return kwargs


def is_text_encoding(name: str) -> bool:
    """Whether ``name`` is a codec that decodes bytes to text (not rot13, zlib, base64)."""
    try:
        info = codecs.lookup(name)
    except LookupError:
        return False
    return getattr(info, "_is_text_encoding", True)


# -- HTTP ----------------------------------------------------------------------------------

#: What a job may set on an HTTP source. The URL and credential names are further checked
#: by the source itself against DJSYNC["HTTP_BASE_URLS"] and DJSYNC["CREDENTIALS"].
HTTP_JOB_OPTIONS = frozenset(
    {
        "url",
        "method",
        "params",
        "json",
        "headers",
        "auth",
        "records",
        "pagination",
        "timeout",
        "retries",
        "backoff",
        "max_pages",
        "incremental",
    }
)


def http_from_job(
    cls: type[Source], options: dict[str, Any], *, base: dict[str, Any], context: JobContext
) -> Source:
    check_keys(options, HTTP_JOB_OPTIONS, kind="http", context=context)
    kwargs = {**base, **options}
    if "incremental" in options:
        kwargs["incremental"] = check_incremental(
            options["incremental"], context=context, extra=("param",), plain=False
        )
    return cls(**kwargs)


# -- SQL -----------------------------------------------------------------------------------

SQL_JOB_OPTIONS = frozenset({"query", "params", "chunk_size", "incremental", "partition"})


def declared_query(name: Any, *, context: JobContext) -> tuple[str, str]:
    """``(query, using)`` of the query named ``name`` in ``DJSYNC["SQL_QUERIES"]``."""
    queries = settings.SQL_QUERIES or {}
    if not isinstance(name, str) or name not in queries:
        known = ", ".join(map(repr, sorted(queries))) or _(
            'none: declare them in DJSYNC["SQL_QUERIES"]'
        )
        if isinstance(name, str) and _FIRST_WORD.match(name) and " " in name.strip():
            raise refuse(
                context,
                _(
                    'a job cannot run its own SQL; name a query of DJSYNC["SQL_QUERIES"] '
                    "(declared: %(known)s)"
                )
                % {"known": known},
            )
        raise refuse(
            context,
            _('no SQL query %(name)s in DJSYNC["SQL_QUERIES"] (declared: %(known)s)')
            % {"name": format(repr(name), ".60"), "known": known},
        )
    spec = queries[name]
    if isinstance(spec, str):
        spec = {"query": spec}
    query, using = spec.get("query"), spec.get("using", "default")
    problem = query_problem(query)
    if problem:
        raise refuse(context, f'DJSYNC["SQL_QUERIES"][{name!r}]: {problem}')
    return query, using


def query_problem(query: Any) -> str | None:
    """Why a declared query is not one SELECT (or WITH … SELECT) statement, or None."""
    if not isinstance(query, str) or not query.strip():
        return _("the query is empty")
    text = query.strip().rstrip(";").strip()
    if ";" in text:
        return _("one statement only (no ; inside the query)")
    match = _FIRST_WORD.match(text)
    if not match or match.group(1).upper() not in ("SELECT", "WITH"):
        return _("the query must be a SELECT (or WITH … SELECT)")
    return None


def sql_from_job(
    cls: type[Source], options: dict[str, Any], *, base: dict[str, Any], context: JobContext
) -> Source:
    check_keys(options, SQL_JOB_OPTIONS, kind="sql", context=context)
    kwargs = dict(base)
    if "query" in options:
        kwargs["query"], kwargs["using"] = declared_query(options["query"], context=context)
        kwargs.setdefault("name", f"query {options['query']!r}")
    elif "query" not in kwargs:
        raise refuse(context, _('a sql source needs "query": the name of a DJSYNC["SQL_QUERIES"]'))
    if "params" in options:
        params = options["params"]
        scalar = (str, int, float, bool, type(None))
        if not isinstance(params, list) or not all(isinstance(p, scalar) for p in params):
            raise refuse(context, _("params must be a list of plain values (text, numbers, null)"))
        kwargs["params"] = params
    if "chunk_size" in options:
        kwargs["chunk_size"] = check_chunk_size(options["chunk_size"], context=context)
    if "incremental" in options:
        kwargs["incremental"] = check_incremental(options["incremental"], context=context)
    if "partition" in options:  # one plain column name (it goes into SQL), or null
        kwargs["partition"] = check_column(options["partition"], context.prefix())
    return cls(**kwargs)


# -- querysets -----------------------------------------------------------------------------

QUERYSET_JOB_OPTIONS = frozenset({"queryset", "chunk_size", "incremental", "partition"})


def declared_queryset(name: Any, *, context: JobContext) -> dict[str, Any]:
    """The trusted QuerySetSource options of the importer's queryset named ``name``."""
    from django.db.models import QuerySet

    declared = dict(getattr(context.importer, "querysets", None) or {})
    owner = getattr(context.importer, "name", None) or _("the importer")
    if not isinstance(name, str) or name not in declared:
        known = ", ".join(map(repr, sorted(declared))) or "none"
        raise refuse(
            context,
            _("no queryset %(name)s declared on importer %(owner)s (querysets: %(known)s)")
            % {"name": format(repr(name), ".60"), "owner": owner, "known": known},
        )
    spec = declared[name]
    if isinstance(spec, dict):
        spec = dict(spec)
        if callable(spec.get("queryset")) and not isinstance(spec["queryset"], QuerySet):
            spec["queryset"] = spec["queryset"]()
        return spec
    value = spec() if callable(spec) and not isinstance(spec, QuerySet) else spec
    if not isinstance(value, QuerySet):
        raise refuse(
            context,
            _("importer %(owner)s: querysets[%(name)r] did not give a queryset")
            % {"owner": owner, "name": name},
        )
    return {"queryset": value.all()}


def queryset_from_job(
    cls: type[Source], options: dict[str, Any], *, base: dict[str, Any], context: JobContext
) -> Source:
    check_keys(options, QUERYSET_JOB_OPTIONS, kind="queryset", context=context)
    kwargs = dict(base)
    if "queryset" in options:
        kwargs = {**declared_queryset(options["queryset"], context=context)}
        kwargs.setdefault("name", f"queryset {options['queryset']!r}")
    elif "model" not in kwargs and "queryset" not in kwargs:
        raise refuse(
            context,
            _('a queryset source needs "queryset": a name from its importer\'s querysets'),
        )
    if "chunk_size" in options:
        kwargs["chunk_size"] = check_chunk_size(options["chunk_size"], context=context)
    if "incremental" in options:
        kwargs["incremental"] = check_incremental(options["incremental"], context=context)
    if "partition" in options:  # one plain column name (it goes into SQL), or null
        kwargs["partition"] = check_column(options["partition"], context.prefix())
    return cls(**kwargs)


# -- derived -------------------------------------------------------------------------------

DERIVED_JOB_OPTIONS = frozenset({"from", "columns", "distinct", "skip_empty"})


def derived_from_job(
    cls: type[Source], options: dict[str, Any], *, base: dict[str, Any], context: JobContext
) -> Source:
    check_keys(options, DERIVED_JOB_OPTIONS, kind="derived", context=context)
    limit = settings.MAX_SOURCE_NESTING
    if context.depth >= limit:
        raise refuse(
            context,
            _('derived sources nest deeper than DJSYNC["MAX_SOURCE_NESTING"] (%(limit)s)')
            % {"limit": limit},
        )
    kwargs = dict(base)
    inner = options.get("from", kwargs.get("from"))
    if isinstance(inner, str):
        if context.sibling is None:
            raise refuse(
                context,
                _(
                    "a derived source takes %(inner)r from another importer only in a multi-model "
                    "job"
                )
                % {"inner": inner},
            )
        found = context.sibling(inner)
        if isinstance(found, Source):  # the run's own file for that importer (an upload)
            kwargs["from"] = found
        else:  # checked as that importer's source: its declared querysets, not this one's
            inner_base, inner_options, owner = found
            kwargs["from"] = build(
                source_kinds(),
                inner_options,
                base=inner_base,
                context=replace(context.deeper(), importer=owner),
            )
    elif "from" in options:
        kwargs["from"] = build(source_kinds(), inner, context=context.deeper())
    columns = options.get("columns", kwargs.get("columns"))
    if "columns" in options:
        ok = isinstance(columns, list) and all(isinstance(c, str) for c in columns)
        ok = ok or (
            isinstance(columns, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in columns.items())
        )
        if not ok:
            raise refuse(context, _("derived columns are a list of names or {new: source column}"))
        kwargs["columns"] = columns
    for name in ("distinct", "skip_empty"):
        if name in options:
            if not isinstance(options[name], bool):
                raise refuse(context, _("%(name)s must be true or false") % {"name": name})
            kwargs[name] = options[name]
    return cls(**kwargs)


#: The job rules of the built-in kinds, by class (exactly: a subclass registered as a kind
#: of its own says which of its options are safe by overriding ``Source.from_job``).


JOB_RULES.update(
    {
        FileSource: file_from_job,
        HttpSource: http_from_job,
        SqlSource: sql_from_job,
        QuerySetSource: queryset_from_job,
        DerivedSource: derived_from_job,
    }
)

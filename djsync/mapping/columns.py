"""Which header of a file feeds which column of an importer.

At run time (:func:`match`, every door: admin, ``runsync``, Celery) a field reads the header
a job's saved mapping names for exactly this set of headers, else its column, else one of
its declared ``aliases`` — each exactly, then in any case. For the admin's mapping step,
:func:`propose` goes further (normalized names: case, accents, spaces, underscores and
hyphens; then a conservative similarity) and a person confirms; the confirmed mapping is
saved on the job (``SyncJob.column_mapping``), keyed by the :func:`signature` of the
header set, so the next file with the same headers goes straight to preview.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from djsync.mapping.fields import BoundField

#: Headers the mapping step offers: past this many, a file's columns are renamed in the
#: file, not picked one by one in a form (the run itself reads up to MAX_COLUMNS).
MAX_MAPPED_HEADERS = 500
#: Longest header the mapping step offers and a saved mapping holds, in characters.
MAX_HEADER_LENGTH = 200
#: Saved mappings kept per importer of a job (the oldest goes first).
MAX_SAVED_MAPPINGS = 20
#: Least similarity (0–1, of normalized names) for a proposal by resemblance alone.
SIMILARITY = 0.85
#: How a column was matched; the first three are what a run does by itself.
SAVED, COLUMN, ALIAS, NORMALIZED, SIMILAR = "saved", "column", "alias", "normalized", "similar"
AT_RUN_TIME = frozenset({SAVED, COLUMN, ALIAS})

#: What :func:`signature` gives.
SIGNATURE_RE = re.compile(r"[0-9a-f]{32}")
_SEPARATORS = re.compile(r"[\W_]+")


def normalize(name: str) -> str:
    """``"Prix_unitaire (€)"`` and ``"prix-unitaire €"`` alike: accents dropped, case
    folded, everything but letters and digits removed."""
    decomposed = unicodedata.normalize("NFKD", name)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SEPARATORS.sub("", bare.casefold())


def signature(headers: Iterable[str]) -> str:
    """The identity of a header set, whatever the order of the columns."""
    text = "\x1f".join(sorted(set(headers)))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def saved_for(entries: Any, headers: Sequence[str]) -> dict[str, str] | None:
    """The saved mapping (field name → header, "" for "not in the file") of this header
    set among a job's ``entries`` for one importer, or None."""
    if not isinstance(entries, list) or not headers:
        return None
    wanted = signature(headers)
    for entry in reversed(entries):
        if isinstance(entry, dict) and entry.get("signature") == wanted:
            columns = entry.get("columns")
            if not isinstance(columns, dict):
                return None
            return {k: v for k, v in columns.items() if isinstance(k, str) and isinstance(v, str)}
    return None


def add_run_mapping(importers: Iterable[Any], mapping: Any) -> None:
    """Each importer also reads a run's own column mapping (``SyncRun.column_mapping``, an
    upload mapped for itself only), after the job's saved ones: it wins for its header set."""
    for importer in importers:
        entries = mapping.get(importer.name) if isinstance(mapping, dict) else None
        if isinstance(entries, list):
            importer.column_mappings = [*importer.column_mappings, *entries]


def match(
    fields: Iterable[BoundField], headers: Sequence[str], saved: dict[str, str] | None = None
) -> dict[str, str]:
    """Field name → header, as a run reads the file: the saved mapping, the field's column,
    its aliases (each exactly, then in any case). A field left out has no header."""
    return {name: header for name, (header, _how) in _matched(fields, headers, saved).items()}


def _matched(
    fields: Iterable[BoundField], headers: Sequence[str], saved: dict[str, str] | None
) -> dict[str, tuple[str, str]]:
    exact = set(headers)
    folded = {h.strip().lower(): h for h in headers}
    found: dict[str, tuple[str, str]] = {}
    for f in fields:
        if saved is not None and f.name in saved:
            if saved[f.name] in exact:
                found[f.name] = (saved[f.name], SAVED)
            if saved[f.name] == "" or saved[f.name] in exact:
                continue  # "" was confirmed: this file does not hold that column
        for how, name in [(COLUMN, f.column)] + [(ALIAS, a) for a in f.spec.aliases]:
            hit = name if name in exact else folded.get(name.strip().lower())
            if hit is not None:
                found[f.name] = (hit, how)
                break
    return found


@dataclass
class Proposal:
    """One column of the importer in the mapping step, and the header proposed for it."""

    field: str
    column: str
    required: bool
    aliases: tuple[str, ...] = ()
    header: str | None = None
    #: How the header was found (SAVED, COLUMN, ALIAS, NORMALIZED, SIMILAR), or "".
    how: str = ""
    #: Headers that fit equally well, when none was proposed for that reason.
    ambiguous: list[str] = dataclasses.field(default_factory=list)
    #: The name (the column or an alias) the proposed header resembles.
    via: str = ""

    @property
    def by_alias(self) -> bool:
        return self.via != "" and self.via != self.column


def propose(
    fields: Iterable[BoundField],
    headers: Sequence[str],
    *,
    required: Iterable[str],
    saved: dict[str, str] | None = None,
) -> list[Proposal]:
    """A proposal per field: what a run matches by itself, then a unique header of the same
    normalized name (its column or an alias), then a unique header similar enough. A header
    goes to one field at most; several candidates propose nothing and say so."""
    fields = list(fields)
    needed = set(required)
    found = _matched(fields, headers, saved)
    out = [
        Proposal(f.name, f.column, f.name in needed, f.spec.aliases, *found.get(f.name, (None, "")))
        for f in fields
    ]
    taken = {p.header for p in out if p.header is not None}
    by_name: dict[str, list[str]] = {}
    for header in headers:
        if header not in taken and len(header) <= MAX_HEADER_LENGTH:
            by_name.setdefault(normalize(header), []).append(header)
    open_ = [p for p in out if p.header is None and not (saved and saved.get(p.field) == "")]
    for p in open_:
        names = (p.column, *p.aliases)
        candidates = [(h, n) for n in names for h in by_name.get(normalize(n), [])]
        _settle(p, [(h, n) for h, n in candidates if h not in taken], NORMALIZED, taken)
    if len(headers) <= MAX_MAPPED_HEADERS:
        for p in open_:
            if p.header is None and not p.ambiguous:
                free = [h for names in by_name.values() for h in names if h not in taken]
                _settle(p, _most_similar((p.column, *p.aliases), free), SIMILAR, taken)
    return out


def _settle(p: Proposal, candidates: list[tuple[str, str]], how: str, taken: set[str]) -> None:
    """Propose the one candidate (header, the name it resembles); several: ambiguous."""
    headers = _unique(h for h, _name in candidates)
    if len(headers) == 1:
        p.header, p.how, p.via = headers[0], how, candidates[0][1]
        taken.add(headers[0])
    elif headers:
        p.ambiguous = headers[:5]


def _most_similar(names: Sequence[str], headers: Sequence[str]) -> list[tuple[str, str]]:
    """The headers most similar to one of ``names``, at SIMILARITY or more (several: a
    tie), each with the name it resembles."""
    best, winners = SIMILARITY, []
    wanted = [(normalize(n), n) for n in names]
    for header in headers:
        norm = normalize(header)
        score, name = max((difflib.SequenceMatcher(None, w, norm).ratio(), n) for w, n in wanted)
        if score > best + 1e-9:
            best, winners = score, [(header, name)]
        elif abs(score - best) <= 1e-9 and score >= SIMILARITY:
            winners.append((header, name))
    return winners


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def needs_mapping(proposals: Sequence[Proposal]) -> bool:
    """True when a run would not read the file as the person means it: a required column
    has no header by the run's own rules, or an optional one has a proposal they lack."""
    for p in proposals:
        if p.how not in AT_RUN_TIME and (p.required or p.header is not None):
            return True
    return False


def remember(entries: Any, headers: Sequence[str], columns: dict[str, str]) -> list[dict[str, Any]]:
    """A job's entries for one importer with ``columns`` saved for this header set (the
    same set's earlier mapping replaced, at most MAX_SAVED_MAPPINGS kept, newest last)."""
    sig = signature(headers)
    kept = [e for e in entries or [] if isinstance(e, dict) and e.get("signature") != sig]
    kept.append({"signature": sig, "columns": dict(columns)})
    return kept[-MAX_SAVED_MAPPINGS:]

"""A plan's row errors in bounded memory: the first ones kept whole, every one counted and grouped.

A file of a million bad rows must not cost a million RowError objects: the plan keeps the
first ``keep`` of them (as many as a run stores, MAX_ROW_ERRORS), and counts and groups
every one as it arrives, so counts and the summary's groups stay exact.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

#: Groups of row errors a run keeps in its stats (the largest ones), and sample values each.
ERROR_GROUPS = 20
ERROR_SAMPLES = 3
#: Most distinct groups counted one by one; errors of further groups are counted together
#: (a converter that puts something new in every message must not grow memory per row).
MAX_GROUPS = 1000
OTHER_GROUP = ("", "other messages")
#: What makes two messages "the same but for the value": quoted text, then numbers.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:[.,]\d+)*(?![\w.])")
_UNSEEN = object()
_INF = float("inf")


def message_template(message: str, value: Any = None) -> str:
    """``message`` with the bad value (quoted or not) and any number put as ``…``, so that
    "no plane with tailnum 'N123'" and "… 'N456'" group together."""
    text = message
    shown = "" if value is None else str(value)
    if shown.strip() and len(shown) <= 200 and shown in text:
        text = _replace_word(text.replace(repr(shown), "…"), shown)
    if "'" in text or '"' in text:
        text = _QUOTED.sub("…", text)
    return _NUMBER.sub("…", text)


def _replace_word(text: str, word: str) -> str:
    """``text`` with ``word`` put as ``…`` where it stands alone (not inside a longer word:
    the value "x" leaves "expected" alone). Plain string search: no pattern per value."""
    parts: list[str] = []
    start = 0
    while (at := text.find(word, start)) >= 0:
        end = at + len(word)
        alone = (at == 0 or not _wordy(text[at - 1])) and (
            end == len(text) or not _wordy(text[end])
        )
        parts.append(text[start:at] + ("…" if alone else word))
        start = end
    parts.append(text[start:])
    return "".join(parts)


def _wordy(char: str) -> bool:
    return char.isalnum() or char == "_"


def _keep_sample(kept: list[tuple[float, str]], candidate: tuple[float, str]) -> None:
    """Keep in ``kept`` the ERROR_SAMPLES distinct samples seen at the lowest rows, whatever
    order the errors arrive in (the staged paths find duplicates after the other errors)."""
    row, sample = candidate
    for i, (seen_row, seen) in enumerate(kept):
        if seen == sample:
            if row < seen_row:
                kept[i] = candidate
            return
    if len(kept) < ERROR_SAMPLES:
        kept.append(candidate)
        return
    worst = max(range(len(kept)), key=kept.__getitem__)
    if candidate < kept[worst]:
        kept[worst] = candidate


def _sample(error: Any) -> str | None:
    value = error.value
    if value is None or value == "":
        key = error.key
        if not key:
            return None
        value = key[0] if len(key) == 1 else ", ".join(str(k) for k in key)
    text = str(value)
    return text if len(text) <= 40 else text[:39] + "…"


class ErrorGroups:
    """Row errors (RowError or SyncRowError) counted by column and message template."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], dict[str, Any]] = {}

    def group(self, name: tuple[str, str]) -> dict[str, Any]:
        """The group of (column, message template) ``name``, made when new; past
        MAX_GROUPS groups, a new name counts in OTHER_GROUP."""
        group = self._groups.get(name)
        if group is None:
            if len(self._groups) >= MAX_GROUPS:
                name = OTHER_GROUP
                group = self._groups.get(name)
            if group is None:
                group = self._groups[name] = {
                    "column": name[0],
                    "message": name[1],
                    "rows": 0,
                    "first_row": None,
                    "_samples": [],
                    "_last": _UNSEEN,
                }
        return group

    def add(self, error: Any) -> None:
        column = error.column or ""
        group = self.group((column, message_template(error.message, error.value)))
        row = error.row
        if row is None or row != group["_last"]:
            group["rows"] += 1
            group["_last"] = row
        if row is not None and (group["first_row"] is None or row < group["first_row"]):
            group["first_row"] = row
        sample = _sample(error)
        if sample is not None:
            _keep_sample(group["_samples"], (_INF if row is None else row, sample))

    def result(self) -> list[dict[str, Any]]:
        """Largest group first: ``{"column", "message", "rows", "first_row", "samples"}``;
        ``rows`` counts rows (a row with two errors of one group is one)."""
        groups = [
            {
                **{k: v for k, v in g.items() if not k.startswith("_")},
                "samples": [sample for _, sample in sorted(g["_samples"])],
            }
            for g in self._groups.values()
        ]
        return sorted(groups, key=lambda g: (-g["rows"], g["column"], g["message"]))


def group_errors(errors: Iterable[Any]) -> list[dict[str, Any]]:
    """Row errors grouped by column and message template, largest group first."""
    groups = ErrorGroups()
    for error in errors:
        groups.add(error)
    return groups.result()


class RowErrors:
    """The row errors of one plan: the first ``keep`` whole (None: all), all of them counted
    (:attr:`total` messages, :attr:`rows` rows) and grouped (:attr:`groups`).

    Reads like the list it replaces: iterating, indexing and sorting see the kept errors;
    ``len()`` and truth are about every error, kept or not.
    """

    def __init__(self, errors: Iterable[Any] = (), *, keep: int | None = None) -> None:
        self.keep = keep
        self.kept: list[Any] = []
        self.total = 0
        #: Rows with an error: a row's errors arrive together (one record is converted at a
        #: time), so a row is counted when it differs from the last error's row.
        self.rows = 0
        self.groups = ErrorGroups()
        self._last_row: Any = _UNSEEN
        for error in errors:
            self.append(error)

    def append(self, error: Any) -> None:
        self.total += 1
        row = error.row
        if row is None or row != self._last_row:
            self.rows += 1
        self._last_row = row
        self.groups.add(error)
        if self.keep is None or len(self.kept) < self.keep:
            self.kept.append(error)

    @property
    def left_out(self) -> int:
        """Errors counted but not kept."""
        return self.total - len(self.kept)

    def sort(self, *, key: Callable[[Any], Any]) -> None:
        self.kept.sort(key=key)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.kept)

    def __getitem__(self, index: Any) -> Any:
        return self.kept[index]

    def __len__(self) -> int:
        return self.total

    def __bool__(self) -> bool:
        return self.total > 0

    def __repr__(self) -> str:
        return f"<RowErrors {self.total} in {self.rows} rows, {len(self.kept)} kept>"

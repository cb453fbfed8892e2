"""An importer's options, read from its inner ``class Meta`` (``ImporterOptions``), and the
metaclass that collects its ``Field`` declarations and its ``Meta``, the way Django's forms
and models do: a field may have any name, options live apart from fields."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured
from django.db import models

from djsync.mapping.fields import Field
from djsync.mapping.switches import IMPORTER_SWITCHES, OnRowError, Switches
from djsync.targets.base import Target

__all__ = ["ImporterMetaclass", "ImporterOptions"]


class ImporterOptions:
    """An importer's options, read from its inner ``class Meta``.

    As for a Django ``ModelForm``: a subclass without ``Meta`` keeps its parent's options;
    a subclass's ``Meta`` replaces the parent's, so extend it with
    ``class Meta(ParentImporter.Meta)``. An unknown option is an error naming it. Helpers
    with options of their own (``ResourceImporter``, ``MembershipImporter``) subclass this
    and set ``options_class``.
    """

    #: Every option with its default; see :class:`BaseImporter` for what each means.
    defaults: ClassVar[dict[str, Any]] = {
        "name": None,
        "model": None,
        "target": None,
        "keys": (),
        "fields": (),
        "scope": None,
        "source": None,
        "querysets": {},
        "database": None,
        "databases": (),
        "fast_path": True,
        "history": False,
        **{name: getattr(Switches(), name) for name in IMPORTER_SWITCHES},
        "date_formats": None,
        "datetime_formats": None,
        "null_tokens": (),
    }

    name: str | None
    model: type[models.Model] | None
    target: type[Target] | None
    keys: Sequence[str]
    fields: Sequence[str] | str
    scope: dict[str, Any] | None
    source: dict[str, Any] | None
    querysets: dict[str, Callable[[], models.QuerySet]]
    database: str | None
    databases: Sequence[str]
    fast_path: bool
    history: bool
    create: bool
    update: bool
    delete: bool
    max_create: int | None
    max_update: int | None
    max_delete: int | None
    max_total: int | None
    delete_guard: float | None
    on_row_error: OnRowError
    date_formats: Sequence[str] | None
    datetime_formats: Sequence[str] | None
    null_tokens: Sequence[str]

    def __init__(
        self, importer: str, values: dict[str, Any], *, legacy: Iterable[str] = ()
    ) -> None:
        #: The importer's class name, for messages.
        self.importer = importer
        #: The options declared (in a Meta, or as deprecated class attributes), inherited
        #: ones included; the rest are defaults or derived by ``prepare_options``.
        self.given: frozenset[str] = frozenset(values)
        #: The options given as class attributes (deprecated), inherited ones included.
        self.legacy: frozenset[str] = frozenset(legacy)
        for name, default in self.defaults.items():
            setattr(self, name, values.get(name, default))
        self.validate()

    @classmethod
    def option_names(cls) -> frozenset[str]:
        return frozenset(cls.defaults)

    @classmethod
    def read_meta(cls, importer: str, meta: type) -> dict[str, Any]:
        """The options a ``Meta`` class gives (its bases' too); an unknown one raises."""
        known = cls.option_names()
        values: dict[str, Any] = {}
        for attr in dir(meta):
            if attr.startswith("_"):
                continue
            if attr not in known:
                close = difflib.get_close_matches(attr, sorted(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ImproperlyConfigured(
                    f"{importer}.Meta: unknown option {attr!r}{hint} "
                    f"(options: {', '.join(sorted(known))})"
                )
            values[attr] = getattr(meta, attr)
        return values

    def validate(self) -> None:
        """Mistakes the engine would only notice later, or not at all."""
        if isinstance(self.keys, str):
            raise ImproperlyConfigured(
                f"{self.importer}: keys is a list of field names, e.g. keys = [{self.keys!r}]"
            )
        if isinstance(self.fields, str) and self.fields != "__all__":
            raise ImproperlyConfigured(
                f'{self.importer}: fields is a list of field names or "__all__", '
                f"not {self.fields!r}"
            )
        if self.target is not None and not (
            isinstance(self.target, type) and issubclass(self.target, Target)
        ):
            raise ImproperlyConfigured(
                f"{self.importer}: target is a djsync.targets.Target subclass, not {self.target!r}"
            )
        if self.target is not None and self.model is not None:
            raise ImproperlyConfigured(f"{self.importer}: give a model or a target, not both")
        if self.on_row_error not in ("fail", "skip"):
            raise ImproperlyConfigured(
                f'{self.importer}: on_row_error is "fail" or "skip", not {self.on_row_error!r}'
            )

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.defaults}

    def contribute_to_class(self, cls: type) -> None:
        """Set each option as a plain class attribute, where the engine reads it. ``name``
        only when declared: ``register`` sets it otherwise."""
        for name in self.defaults:
            if name != "name" or name in self.given:
                # ``target`` is the class; an importer's ``target`` is its instance of it.
                setattr(cls, "target_class" if name == "target" else name, getattr(self, name))

    def __repr__(self) -> str:
        given = ", ".join(f"{k}={getattr(self, k)!r}" for k in sorted(self.given))
        return f"<ImporterOptions of {self.importer}: {given}>"


class ImporterMetaclass(type):
    """Collects ``Field`` class attributes into ``declared_fields`` (inherited ones too)
    and the inner ``class Meta`` into ``_meta`` (an :class:`ImporterOptions`)."""

    def __new__(mcs, name: str, bases: tuple[type, ...], attrs: dict[str, Any]) -> type:
        declared: dict[str, Field] = {}
        for base in reversed(bases):
            declared.update(getattr(base, "declared_fields", {}))
        for attr, value in list(attrs.items()):
            if isinstance(value, Field):
                value.name = attr
                declared[attr] = attrs.pop(attr)
        attrs["declared_fields"] = declared
        options_class: type[ImporterOptions] = attrs.get("options_class") or next(
            (b.options_class for b in bases if hasattr(b, "options_class")), ImporterOptions
        )
        known = options_class.option_names()
        # Options as class attributes: the style before class Meta (deprecated).
        legacy = {attr: attrs.pop(attr) for attr in list(attrs) if attr in known}
        cls = super().__new__(mcs, name, bases, attrs)
        if legacy:
            names = ", ".join(sorted(legacy))
            warnings.warn(
                f"{name}: move {names} into class Meta (importer options as class "
                "attributes are deprecated; a field of the same name would change the "
                "importer)",
                DeprecationWarning,
                stacklevel=2,
            )
        values, legacy_names = _resolve(options_class, name, bases, attrs.get("Meta"), legacy)
        opts = options_class(name, values, legacy=legacy_names)
        cls._meta = opts  # type: ignore[attr-defined]
        opts.contribute_to_class(cls)
        cls.prepare_options(opts)  # type: ignore[attr-defined]
        opts.validate()
        opts.contribute_to_class(cls)
        return cls


def _resolve(
    options_class: type[ImporterOptions],
    name: str,
    bases: tuple[type, ...],
    meta: type | None,
    legacy: dict[str, Any],
) -> tuple[dict[str, Any], set[str]]:
    """The declared options of a new importer class, and which came as class attributes.

    Lowest to highest: the parents' options (every declared one when the class has no
    ``Meta`` of its own; else only those given as deprecated class attributes, since its
    ``Meta`` replaces theirs), then the class's own class attributes, then its ``Meta``.
    """
    inherited: dict[str, Any] = {}
    legacy_names = set(legacy)
    for base in reversed(bases):
        parent: ImporterOptions | None = getattr(base, "_meta", None)
        if not isinstance(parent, ImporterOptions):
            continue
        names = parent.legacy if meta is not None else parent.given
        inherited.update({k: getattr(parent, k) for k in names})
        legacy_names |= parent.legacy
    values = {**inherited, **legacy}
    if meta is not None:
        values.update(options_class.read_meta(name, meta))
    return values, legacy_names

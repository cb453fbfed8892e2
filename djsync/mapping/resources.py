"""django-import-export resources as djsync importers: keep a ``ModelResource``'s mapping.

A project that already describes its files with a ``ModelResource`` (fields with
``attribute`` and ``column_name``, widgets, ``Meta.import_id_fields``, ``Meta.fields`` and
``exclude``) gets djsync's deletes of missing rows, preview, history, Celery and speed by
pointing an importer at it::

    @djsync.register
    class BookImporter(ResourceImporter):
        class Meta:
            name = "books"
            resource_class = BookResource
            delete = True

or in one line, ``importer_from_resource(BookResource, name="books", delete=True)``.

Each resource field becomes a djsync field: its widget's ``clean()`` is the converter (its
result checked against the model field, so a too-long text or too many decimal places is a
row error, not a database error), a ``ForeignKeyWidget(Model, field="code")`` becomes a
foreign key looked up by that natural key (one query per run, not one per row), and
``import_id_fields`` become the keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.utils.translation import gettext as _

from djsync.exceptions import ConfigurationError
from djsync.extras import require
from djsync.mapping.converters import NOT_PROVIDED, ConversionError, converter_for, is_empty, to_str
from djsync.mapping.fields import BoundField, Field, concrete_field, related_model
from djsync.mapping.importers import Importer, ImporterOptions
from djsync.mapping.registry import register

__all__ = ["ResourceImporter", "ResourceImporterOptions", "importer_from_resource"]


@dataclass(frozen=True)
class ResourceField:
    """One import field of a resource, as djsync maps it."""

    name: str  # the model field's name
    column: str
    widget: Any
    default: Any = NOT_PROVIDED  # the resource field's ``default``
    lookup: str | None = None  # foreign keys: the related model's natural key field


class WidgetField(BoundField):
    """A field converted by an import-export widget's ``clean()``, then checked against the
    model field; an empty result takes the resource field's default, else the model's."""

    def __init__(self, spec: Field, name: str, model: type[models.Model], *, source: Any) -> None:
        super().__init__(spec, name, model)
        self.widget = source.widget
        self.resource_default = source.default
        #: The plain ``Widget`` converts nothing: djsync's type-based converter does the work.
        plain = type(self.widget).clean is _base_widget().clean
        self.parse = None if plain else self.widget.clean
        # ``converter`` is what a non-empty cell goes through (the fast path may call it
        # directly): the widget, the same as ``convert``.
        self.converter = converter_for(self.model_field) if plain else self.convert
        self.check = _checker(self.model_field)
        self.importer: Any = None  # set by ResourceImporter, for widgets that read the row

    def render(self, value: Any) -> Any:
        """A value as an export writes it: dates and times in the widget's format (so the
        file reads back through the same widget), everything else as it is."""
        from import_export.widgets import DateTimeWidget, DateWidget, TimeWidget

        if isinstance(self.widget, DateWidget | DateTimeWidget | TimeWidget):
            return self.widget.render(value)
        return value

    def convert(self, value: Any) -> Any:
        if self.parse is None:
            if not is_empty(value):
                return self.converter(value)
            value = None
        else:
            row = getattr(self.importer, "current_record", None)
            try:
                value = self.parse(value, row=row)
            except Exception as exc:  # noqa: BLE001 - any widget failure is a row error
                if isinstance(exc, ArithmeticError):  # decimal.InvalidOperation says nothing
                    message = _("not a number")
                else:
                    message = str(exc).strip() or type(exc).__name__
                raise ConversionError(
                    f"{value!r}: {message} ({type(self.widget).__name__})"
                ) from None
        if value in (None, "") and self.resource_default is not NOT_PROVIDED:
            default = self.resource_default
            value = default() if callable(default) else default
        if value is None:
            return None if self.nullable else self.empty_value()
        return self.check(value)


class ResourceImporterOptions(ImporterOptions):
    """A resource importer's ``Meta``: any importer option, and ``resource_class``."""

    defaults: ClassVar[dict[str, Any]] = {**ImporterOptions.defaults, "resource_class": None}
    #: The ``import_export.resources.ModelResource`` subclass that describes the mapping.
    resource_class: type | None


class ResourceImporter(Importer):
    """An importer whose mapping is a django-import-export ``ModelResource``.

    Set ``Meta.resource_class``; ``model`` and ``keys`` come from the resource (its
    ``Meta.model`` and ``Meta.import_id_fields``) unless the importer's ``Meta`` sets
    them. A djsync ``Field`` declared on the subclass replaces the resource field of that
    name. The other importer options (``delete``, ``scope``, limits…) work as on any
    importer.

    Not carried over: the resource's save hooks, ``skip_row``, ``for_delete`` and
    many-to-many fields (see ``djsync.mapping.memberships``). ``before_import_row`` is called on
    each record.
    """

    options_class = ResourceImporterOptions
    _meta: ClassVar[ResourceImporterOptions]
    resource_class: ClassVar[type | None]
    #: What the resource maps, by model field name (filled when the class is created).
    resource_fields: ClassVar[dict[str, ResourceField]] = {}
    #: Resource fields djsync does not import, with the reason (read-only, m2m, …).
    skipped_fields: ClassVar[dict[str, str]] = {}

    @classmethod
    def prepare_options(cls, opts: ImporterOptions) -> None:
        """``model``, ``keys`` and ``database`` from the resource, unless declared."""
        super().prepare_options(opts)
        resource_class = cls.get_resource_class()
        if resource_class is None:
            return
        require("import_export", "ResourceImporter")
        resource = resource_class()
        model = getattr(resource._meta, "model", None)
        if model is None:
            raise ConfigurationError(
                f"{cls.__name__}: {resource_class.__name__} has no Meta.model; "
                "only a ModelResource can serve as an importer"
            )
        if "model" not in opts.given:
            opts.model = model
        cls.resource_fields, cls.skipped_fields = read_resource(resource, opts.model or model)
        if "keys" not in opts.given:
            opts.keys = key_names(resource, cls.resource_fields, cls.__name__)
        if "database" not in opts.given:
            opts.database = getattr(resource._meta, "using_db", None)
        widgets = [f.widget for f in cls.resource_fields.values()]
        if _overrides(resource_class, "before_import_row") or any(map(_reads_row, widgets)):
            # The hook is swapped on the class; its ``self`` is a ResourceImporter.
            cls.prepare_record = _prepare_with_resource  # type: ignore[method-assign,assignment]

    @classmethod
    def get_resource_class(cls) -> type | None:
        return cls.resource_class

    def __init__(self, *, using: str = "default") -> None:
        resource_class = self.get_resource_class()
        if resource_class is None:
            raise ConfigurationError(f"{type(self).__name__}: set Meta.resource_class")
        self.resource = resource_class()
        self.current_record: dict[str, Any] | None = None
        super().__init__(using=using)

    def get_fields(self) -> dict[str, BoundField]:
        """The resource's import fields, then djsync ``Field``s declared on the importer."""
        bound: dict[str, BoundField] = {}
        for name, source in self.resource_fields.items():
            if name in self.declared_fields:
                continue
            required = name in self.keys
            if source.lookup is not None:
                spec = Field(source.column, lookup=source.lookup, required=required)
                bound[name] = spec.bind(name, self.model)
            else:
                # A converter of its own: the fast path neither strips nor remembers the
                # cells (a widget may keep spaces, or read other columns of the row).
                spec = Field(source.column, required=required, converter=_unused)
                field = WidgetField(spec, name, self.model, source=source)
                field.importer = self
                bound[name] = field
        for name, spec in self.declared_fields.items():
            bound[name] = spec.bind(name, self.model)
        return bound


def importer_from_resource(
    resource_class: type,
    *,
    name: str | None = None,
    register_it: bool = True,
    **options: Any,
) -> type[ResourceImporter]:
    """A ``ResourceImporter`` subclass for ``resource_class``, registered under ``name``.

    ``options`` are importer ``Meta`` options: ``delete=True``, ``max_delete=100``,
    ``scope={...}``, ``source={"path": ...}``, ``keys=[...]``. The name defaults to the
    model's label in lower case, as for any importer.
    """
    unknown = set(options) - ResourceImporterOptions.option_names()
    if unknown:
        raise TypeError(f"unknown importer options: {', '.join(sorted(unknown))}")
    meta: dict[str, Any] = {"resource_class": resource_class, **options}
    if name:
        meta["name"] = name
    attrs: dict[str, Any] = {
        "Meta": type("Meta", (), meta),
        "__module__": resource_class.__module__,
        "__doc__": f"djsync importer for {resource_class.__qualname__}.",
    }
    cls = type(f"{resource_class.__name__}Importer", (ResourceImporter,), attrs)
    if register_it:
        register(cls)
    return cls


# -- reading a resource ----------------------------------------------------------------------


def read_resource(
    resource: Any, model: type[models.Model]
) -> tuple[dict[str, ResourceField], dict[str, str]]:
    """The resource's import fields djsync maps, by model field name, and those it skips."""
    from import_export.widgets import ForeignKeyWidget, ManyToManyWidget

    mapped: dict[str, ResourceField] = {}
    skipped: dict[str, str] = {}
    for rf in resource.get_import_fields():
        label = rf.column_name or rf.attribute or "?"
        if rf.readonly or not rf.attribute:
            skipped[label] = "read-only" if rf.readonly else "no attribute"
            continue
        if "__" in rf.attribute:
            skipped[label] = f"{rf.attribute}: a related object's field is not imported"
            continue
        try:
            mf = model._meta.get_field(rf.attribute)
        except FieldDoesNotExist:
            skipped[label] = f"{rf.attribute} is not a model field"
            continue
        if mf.many_to_many or isinstance(rf.widget, ManyToManyWidget):
            skipped[label] = "many-to-many: sync it with djsync.mapping.memberships"
            continue
        if not (isinstance(mf, models.Field) and mf.concrete):
            skipped[label] = f"{rf.attribute} is not a concrete field"
            continue
        lookup = None
        if isinstance(rf.widget, ForeignKeyWidget) or mf.is_relation:
            lookup = fk_lookup(rf, mf, type(resource).__name__)
        mapped[mf.name] = ResourceField(
            name=mf.name,
            column=rf.column_name or rf.attribute,
            widget=rf.widget,
            default=_default(rf.default),
            lookup=lookup,
        )
    return mapped, skipped


def fk_lookup(rf: Any, mf: models.Field, resource_name: str) -> str:
    """The related model's field a ``ForeignKeyWidget`` looks rows up by."""
    from import_export.widgets import ForeignKeyWidget

    widget = rf.widget
    where = f"{resource_name}.{rf.column_name or rf.attribute}"
    if not isinstance(widget, ForeignKeyWidget):
        raise ConfigurationError(f"{where}: a foreign key needs a ForeignKeyWidget")
    custom = [
        m
        for m in ("clean", "get_queryset", "get_lookup_kwargs", "get_instance_by_lookup_fields")
        if getattr(type(widget), m) is not getattr(ForeignKeyWidget, m)
        and not type(widget).__module__.startswith("import_export.")
    ]
    if custom:
        raise ConfigurationError(
            f"{where}: {type(widget).__name__} overrides {', '.join(custom)}; djsync looks a "
            "foreign key up by one field. Declare a djsync Field for it on the importer, "
            'e.g. author = djsync.Field("author", lookup="name")'
        )
    if widget.use_natural_foreign_keys:
        raise ConfigurationError(
            f"{where}: use_natural_foreign_keys is not supported; give the widget field= "
            "the related model's natural key field"
        )
    related = related_model(mf)
    lookup = related._meta.pk.name if widget.field in ("pk", None) or widget.key_is_id else None
    lookup = lookup or widget.field
    try:
        target = concrete_field(related, lookup)
    except FieldDoesNotExist:
        raise ConfigurationError(
            f"{where}: {related.__name__} has no field {lookup!r} to look rows up by"
        ) from None
    if not (target.unique or target.primary_key):
        raise ConfigurationError(
            f"{where}: {related.__name__}.{lookup} is not unique, so it cannot identify a row"
        )
    return lookup


def key_names(resource: Any, fields: dict[str, ResourceField], importer_name: str) -> list[str]:
    """``Meta.import_id_fields`` (resource field names, or column names) as model fields."""
    by_column = {f.column: f.name for f in fields.values()}
    keys: list[str] = []
    for id_field in resource.get_import_id_fields():
        rf = resource.fields.get(id_field)
        name = None
        if rf is not None and rf.attribute:
            try:
                name = resource._meta.model._meta.get_field(rf.attribute).name
            except FieldDoesNotExist:
                name = None
        name = name or by_column.get(id_field)
        if name is None or name not in fields:
            raise ConfigurationError(
                f"{importer_name}: import_id_fields names {id_field!r}, which is not an "
                "imported field of the resource"
            )
        keys.append(name)
    return keys


# -- helpers ---------------------------------------------------------------------------------


def _checker(mf: models.Field) -> Any:
    """Checks a widget's result against the model field (djsync's converter for its type);
    text keeps its spaces, only its length is checked."""
    if isinstance(mf, models.CharField | models.TextField) and not mf.choices:
        limit = mf.max_length

        def check_text(value: Any) -> Any:
            text = value if isinstance(value, str) else to_str(value)
            if limit is not None and len(text) > limit:
                raise ConversionError(
                    _("%(text)s characters; the field allows at most %(limit)s")
                    % {"text": len(text), "limit": limit}
                )
            return text

        return check_text
    conv = converter_for(mf)
    return (lambda value: value) if conv is to_str else conv


def _default(value: Any) -> Any:
    from django.db.models.fields import NOT_PROVIDED as DJANGO_NOT_PROVIDED

    return NOT_PROVIDED if value is DJANGO_NOT_PROVIDED else value


def _base_widget() -> Any:
    from import_export.widgets import Widget

    return Widget


def _overrides(resource_class: type, method: str) -> bool:
    from import_export.resources import Resource

    return getattr(resource_class, method) is not getattr(Resource, method)


def _reads_row(widget: Any) -> bool:
    """Widgets of the project's own may read other columns of the row in ``clean()``."""
    return not type(widget).__module__.startswith("import_export.")


def _prepare_with_resource(self: ResourceImporter, record: dict[str, Any]) -> dict[str, Any]:
    """Run the resource's ``before_import_row`` on a copy; remember the row for widgets."""
    row = dict(record)
    if _overrides(type(self.resource), "before_import_row"):
        self.resource.before_import_row(row)
    self.current_record = row
    return row


def _unused(value: Any) -> Any:  # pragma: no cover - WidgetField.convert replaces it
    return value

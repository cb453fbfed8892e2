"""Many-to-many membership sync: who belongs to which group, as creates and deletes of links.

A membership is one row of a many-to-many field's through table (``Team.members``): the
pair (group, member). A ``MembershipImporter`` syncs that table keyed by the pair of
natural keys, so a member added to a group is a create in the plan and a member who left
is a delete — previewed, limited, applied and recorded like any other change::

    @djsync.register
    class TeamMembers(MembershipImporter):
        class Meta:
            name = "team-members"
            relation = Team.members
            group_lookup = "code"        # Team.code in the column "team"
            member_lookup = "number"     # Employee.number in the column "employee"

A source row is one membership: ``team,employee`` / ``sales,7``. With ``delete`` on (the
default here) a link missing from the source is removed; a ``scope`` such as
``{"team__code__in": ["sales"]}`` limits which groups the source is the truth for.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.db import models

from djsync.exceptions import ConfigurationError
from djsync.mapping.fields import Field
from djsync.mapping.importers import Importer, ImporterOptions

__all__ = ["MembershipImporter", "MembershipOptions", "membership_label"]


class MembershipOptions(ImporterOptions):
    """A membership importer's ``Meta``: the importer options (``delete`` on by default:
    a link missing from the source is removed, within the scope) and the relation."""

    defaults: ClassVar[dict[str, Any]] = {
        **ImporterOptions.defaults,
        "delete": True,
        "relation": None,
        "group_column": None,
        "member_column": None,
        "group_lookup": None,
        "member_lookup": None,
    }
    #: The many-to-many field whose links this importer syncs.
    relation: Any
    group_column: str | None
    member_column: str | None
    group_lookup: str | None
    member_lookup: str | None


class MembershipImporter(Importer):
    """Syncs the through table of a many-to-many field: keys (group, member), no updates.

    ``Meta.relation`` is the many-to-many field: ``Team.members`` (the class attribute),
    ``"app_label.Model.field"`` or the field itself. The group is the model that declares
    the field, the member the model it points to. ``group_column`` / ``member_column`` name
    the source columns (default: the through table's field names, e.g. ``team`` and
    ``employee``); ``group_lookup`` / ``member_lookup`` the natural key field each is looked
    up by (default: the primary key).
    """

    options_class = MembershipOptions
    _meta: ClassVar[MembershipOptions]

    @classmethod
    def prepare_options(cls, opts: ImporterOptions) -> None:
        """``model``, ``keys`` and the two fields from the relation."""
        super().prepare_options(opts)
        assert isinstance(opts, MembershipOptions)
        if opts.relation is None:
            return
        field = resolve_relation(opts.relation, cls.__name__)
        through = field.remote_field.through
        group, member = field.m2m_field_name(), field.m2m_reverse_field_name()
        opts.model = through
        opts.keys = [group, member]
        opts.fields = ()
        declared = {
            group: Field(opts.group_column or group, lookup=opts.group_lookup),
            member: Field(opts.member_column or member, lookup=opts.member_lookup),
        }
        for name, spec in declared.items():
            spec.name = name
        # Fields declared on the class itself win over the derived ones.
        cls.declared_fields = {**declared, **cls.declared_fields}


def resolve_relation(relation: Any, owner: str) -> models.ManyToManyField:
    """The ManyToManyField named by a descriptor, a field or ``"app.Model.field"``."""
    field = getattr(relation, "field", relation)  # ManyToManyDescriptor → field
    if isinstance(relation, str):
        try:
            label, _, name = relation.rpartition(".")
            field = apps.get_model(label)._meta.get_field(name)
        except (LookupError, ValueError, FieldDoesNotExist):
            raise ConfigurationError(f"{owner}: no many-to-many field {relation!r}") from None
    if getattr(relation, "reverse", False):
        raise ConfigurationError(
            f"{owner}: {relation!r} is the reverse side; name the field on the model "
            "that declares it"
        )
    if not isinstance(field, models.ManyToManyField):
        raise ConfigurationError(f"{owner}: relation must be a ManyToManyField, not {relation!r}")
    return field


@lru_cache(maxsize=256)
def membership_label(model_label: str) -> str | None:
    """``"testapp.Team.members"`` when ``model_label`` is the through table of a
    many-to-many field, else None (reports say "add membership" instead of "create")."""
    try:
        through = apps.get_model(model_label)
    except (LookupError, ValueError):
        return None
    for model in apps.get_models():
        for f in model._meta.local_many_to_many:
            if f.remote_field.through is through:
                return f"{model._meta.label}.{f.name}"
    return None

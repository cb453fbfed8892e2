"""The directory's three resources: how an item is shown, checked and saved, one at a time.

Views and batches both go through ``create``, ``update`` and ``delete`` here, so a batch
item gets exactly the answer the same request would get on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction

from .models import Account, Group, Membership
from .routers import directory_database

Errors = dict[str, list[str]]


@dataclass(frozen=True)
class Relation:
    """A foreign key shown and given by the related item's natural key (a username, a name)."""

    model: type[models.Model]
    key: str


@dataclass(frozen=True)
class Outcome:
    """What one create, update or delete came to: an HTTP status and its JSON body."""

    status: int
    body: dict[str, Any] | None = None


NOT_FOUND = Outcome(404, {"detail": "Not found."})


@dataclass(frozen=True)
class Resource:
    """One collection of the API: its model, writable fields and lookup filters."""

    model: type[models.Model]
    #: Writable fields in the order they are shown: str, bool, or a Relation.
    fields: dict[str, type | Relation]
    #: Fields a create must give (a PUT must give every writable field).
    required: tuple[str, ...]
    #: Query parameter → ORM lookup, for ``?username=ann`` (repeat it for several).
    filters: dict[str, str]
    read_only: tuple[str, ...] = ()
    #: Relations to fetch with the items (select_related).
    related: tuple[str, ...] = ()

    def queryset(self) -> models.QuerySet[Any]:
        return self.model._default_manager.select_related(*self.related).order_by("id")

    def represent(self, obj: models.Model) -> dict[str, Any]:
        item: dict[str, Any] = {"id": obj.pk}
        for name, kind in self.fields.items():
            value = getattr(obj, name)
            item[name] = getattr(value, kind.key) if isinstance(kind, Relation) else value
        for name in self.read_only:
            item[name] = _json_value(getattr(obj, name))
        return item

    def assign(self, obj: models.Model, data: dict[str, Any], required: Iterable[str]) -> Errors:
        """Set the given fields on obj; errors for missing, mistyped or unknown related values.

        Other keys (``id``, ``updated_at``, anything unknown) are ignored, as DRF does, so an
        item read from the API can be sent back as it is."""
        errors: Errors = {
            name: ["This field is required."] for name in required if name not in data
        }
        for name, kind in self.fields.items():
            if name not in data:
                continue
            value = data[name]
            if value is None:
                errors[name] = ["This field may not be null."]
            elif isinstance(kind, Relation):
                related = None
                if isinstance(value, str):
                    related = kind.model._default_manager.filter(**{kind.key: value}).first()
                if related is None:
                    errors[name] = [f"Object with {kind.key}={value} does not exist."]
                else:
                    setattr(obj, name, related)
            elif kind is bool and not isinstance(value, bool):
                errors[name] = ["Must be a valid boolean."]
            elif kind is str and not isinstance(value, str):
                errors[name] = ["Not a valid string."]
            else:
                setattr(obj, name, value)
        return errors


def _json_value(value: Any) -> Any:
    if hasattr(value, "astimezone"):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def _errors(error: ValidationError) -> Errors:
    """Django's message_dict in DRF's words: "__all__" is "non_field_errors"."""
    return {
        ("non_field_errors" if name == "__all__" else name): messages
        for name, messages in error.message_dict.items()
    }


def _save(
    resource: Resource, obj: models.Model, data: Any, required: Iterable[str], status: int
) -> Outcome:
    if not isinstance(data, dict):
        kind = type(data).__name__
        return Outcome(400, {"non_field_errors": [f"Expected a JSON object, got {kind}."]})
    errors = resource.assign(obj, data, required)
    if errors:
        return Outcome(400, errors)
    try:
        with transaction.atomic(using=directory_database()):
            obj.full_clean()
            obj.save()
    except ValidationError as error:
        return Outcome(400, _errors(error))
    except IntegrityError as error:  # a concurrent request took the key after full_clean
        try:
            obj.validate_unique()
        except ValidationError as unique:
            return Outcome(400, _errors(unique))
        return Outcome(400, {"non_field_errors": [str(error)]})
    return Outcome(status, resource.represent(obj))


def create(resource: Resource, data: Any) -> Outcome:
    return _save(resource, resource.model(), data, resource.required, status=201)


def update(resource: Resource, pk: Any, data: Any, *, partial: bool) -> Outcome:
    """PATCH (partial: the given fields) or PUT (every writable field must be given)."""
    obj = _get(resource, pk)
    if obj is None:
        return NOT_FOUND
    return _save(resource, obj, data, () if partial else tuple(resource.fields), status=200)


def delete(resource: Resource, pk: Any) -> Outcome:
    with transaction.atomic(using=directory_database()):
        deleted, _ = resource.model._default_manager.filter(pk=_int(pk)).delete()
    return Outcome(204) if deleted else NOT_FOUND


def get(resource: Resource, pk: Any) -> Outcome:
    obj = _get(resource, pk)
    return NOT_FOUND if obj is None else Outcome(200, resource.represent(obj))


def _get(resource: Resource, pk: Any) -> models.Model | None:
    return resource.queryset().filter(pk=_int(pk)).first()


def _int(pk: Any) -> int:
    """An id as given in a URL or a batch; anything but a whole number finds nothing."""
    return pk if isinstance(pk, int) and not isinstance(pk, bool) else -1


RESOURCES: dict[str, Resource] = {
    "accounts": Resource(
        Account,
        fields={"username": str, "email": str, "full_name": str, "active": bool, "department": str},
        required=("username", "full_name"),
        filters={"username": "username"},
        read_only=("updated_at",),
    ),
    "groups": Resource(
        Group,
        fields={"name": str, "description": str},
        required=("name",),
        filters={"name": "name"},
    ),
    "memberships": Resource(
        Membership,
        fields={"account": Relation(Account, "username"), "group": Relation(Group, "name")},
        required=("account", "group"),
        filters={"account": "account__username", "group": "group__name"},
        related=("account", "group"),
    ),
}

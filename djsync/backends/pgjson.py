"""SQL that writes a PostgreSQL column as the JSON the generic path stores for its value.

The staged path stores changes with ``INSERT … SELECT``; these expressions make the stored
old and new values read exactly as ``DjangoJSONEncoder`` writes the Python values, so a
preview is the same whichever path made it.
"""

from __future__ import annotations

from django.conf import settings as django_settings
from django.db import models

__all__ = ["json_sql", "only_changed"]

_DATETIME_TAIL = (
    " || CASE WHEN mod(date_part('microseconds', {0})::bigint, 1000000) <> 0"
    " THEN '.' || lpad((mod(date_part('microseconds', {0})::bigint, 1000000) / 1000)::text,"
    " 3, '0') ELSE '' END"
)


def json_sql(field: models.Field) -> str | None:
    """SQL turning a column of ``field``'s type into the JSON ``DjangoJSONEncoder`` writes
    for the Python value (so stored changes match the generic path), or None."""
    if isinstance(field, models.DecimalField):
        # str(Decimal) switches to exponent notation below 1e-6; numeric::text never does.
        return "to_jsonb(({0})::text)" if (field.decimal_places or 0) <= 6 else None
    if isinstance(field, models.DateTimeField):
        zone = " || 'Z'" if django_settings.USE_TZ else ""
        return (
            "to_jsonb(to_char(({0})::timestamp, 'YYYY-MM-DD\"T\"HH24:MI:SS')"
            + _DATETIME_TAIL
            + zone
            + ")"
        )
    if isinstance(field, models.DateField):
        return "to_jsonb(to_char({0}, 'YYYY-MM-DD'))"
    if isinstance(field, models.TimeField):
        return "to_jsonb(to_char(date '2000-01-01' + {0}, 'HH24:MI:SS')" + _DATETIME_TAIL + ")"
    if isinstance(field, models.UUIDField):
        return "to_jsonb(({0})::text)"
    if isinstance(field, models.JSONField):
        return "{0}" if field.decoder is None else None
    if isinstance(
        field,
        models.CharField
        | models.TextField
        | models.BooleanField
        | models.IntegerField
        | models.FloatField,
    ):
        return "to_jsonb({0})"
    return None


def only_changed(alias: str, obj: str, names: list[str]) -> str:
    """The jsonb object ``obj`` (of fields ``names``) with only the changed fields of the
    action row ``alias``: the others removed (``jsonb - text[]`` passes over the NULLs)."""
    others = ", ".join(
        f"CASE WHEN '{name}' = ANY({alias}.changed) THEN NULL ELSE '{name}' END" for name in names
    )
    return f"({obj} - ARRAY[{others}]::text[])"

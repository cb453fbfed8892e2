"""The directory's settings (read when used, so override_settings works) and its bounds."""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    #: The database alias the directory's models live on (routers.DirectoryRouter).
    "DIRECTORY_DATABASE": "directory",
    #: Keep every other app off that alias (False when the alias is shared, as in the tests).
    "DIRECTORY_DATABASE_EXCLUSIVE": True,
    #: The token clients send as ``Authorization: Token <token>``; unset refuses everyone.
    "DIRECTORY_API_TOKEN": None,
    #: Requests per second this process accepts (a token bucket); None: no limit.
    "DIRECTORY_API_RATE": None,
    #: Every Nth request answers 503 (for retry tests); None: never.
    "DIRECTORY_API_FAIL_EVERY": None,
}

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
#: Items in one batch request (creates + updates + deletes).
MAX_BATCH_ITEMS = 1000
MAX_BODY_BYTES = 1024 * 1024


def setting(name: str) -> Any:
    """The project's value of a DIRECTORY_* setting, or its default."""
    return getattr(settings, name, DEFAULTS[name])

"""djsync's HTTP API, for other systems and CI pipelines: an optional extra.

``pip install "djsync[api]"`` brings Django REST framework and drf-spectacular (the OpenAPI
schema); ``path("api/sync/", include("djsync.api.urls"))`` mounts it (docs/api.md). The
rest of djsync never imports this package, so it works without them.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

#: What to install for the API.
EXTRA = 'pip install "djsync[api]"'


def require_rest_framework() -> None:
    """Raise ImproperlyConfigured, naming the extra, when the API's libraries are missing."""
    try:
        import drf_spectacular  # noqa: F401
        import rest_framework  # noqa: F401
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"djsync's HTTP API needs Django REST framework and drf-spectacular ({exc.name} "
            f"is not installed): {EXTRA}"
        ) from None


require_rest_framework()

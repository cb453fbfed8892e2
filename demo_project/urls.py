"""URLs of the demo project: the admin, where djsync's upload and preview live, and the
directory's JSON API (the demo's stand-in external system)."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # The HTTP API (the djsync[api] extra; docs/api.md).
    path("api/sync/", include("djsync.api.urls")),
    # Webhooks: jobs declared in DJSYNC["WEBHOOKS"] take signed deliveries (docs/realtime.md).
    path("sync/", include("djsync.urls")),
    path("directory/", include("demo_project.directory.urls")),
]

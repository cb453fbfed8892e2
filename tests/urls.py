from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # The HTTP API (the djsync[api] extra; docs/api.md).
    path("api/sync/", include("djsync.api.urls")),
    # Webhooks (docs/realtime.md).
    path("sync/", include("djsync.urls")),
    path("directory/", include("demo_project.directory.urls")),
]

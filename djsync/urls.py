"""djsync's own URLs, for the project's urls.py: ``path("sync/", include("djsync.urls"))``.

Only the webhook endpoint (docs/realtime.md, "Webhooks") lives here: the admin's pages come
with the admin, the HTTP API with ``djsync.api.urls`` (the ``api`` extra).
"""

from __future__ import annotations

from django.urls import path

from djsync.realtime.views import webhook

app_name = "djsync"

urlpatterns = [
    path("webhooks/<str:name>/", webhook, name="webhook"),
]

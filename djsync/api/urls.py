"""The HTTP API's URLs: ``path("api/sync/", include("djsync.api.urls"))`` (docs/api.md).

Needs the ``djsync[api]`` extra and ``rest_framework.authtoken`` in INSTALLED_APPS (the
API's tokens); without them, including these URLs raises ImproperlyConfigured that says so.
"""

from __future__ import annotations

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.urls import path

from djsync.api import EXTRA, views

if not apps.is_installed("rest_framework.authtoken"):
    raise ImproperlyConfigured(
        'djsync\'s HTTP API authenticates with tokens: add "rest_framework.authtoken" to '
        f"INSTALLED_APPS and migrate ({EXTRA} installs it); see docs/api.md."
    )

app_name = "djsync_api"

urlpatterns = [
    path("jobs/", views.JobList.as_view(), name="jobs"),
    path("jobs/<str:name>/", views.JobDetail.as_view(), name="job"),
    path("jobs/<str:name>/runs/", views.JobRuns.as_view(), name="job-runs"),
    path("runs/<str:run_id>/", views.RunDetail.as_view(), name="run"),
    path("runs/<str:run_id>/changes/", views.RunChanges.as_view(), name="run-changes"),
    path("runs/<str:run_id>/errors/", views.RunErrors.as_view(), name="run-errors"),
    path("runs/<str:run_id>/apply/", views.RunApply.as_view(), name="run-apply"),
    path("runs/<str:run_id>/discard/", views.RunDiscard.as_view(), name="run-discard"),
    path("runs/<str:run_id>/cancel/", views.RunCancel.as_view(), name="run-cancel"),
    path("schema/", views.Schema.as_view(), name="schema"),
]

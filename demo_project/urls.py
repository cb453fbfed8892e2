"""URLs of the demo project: the admin, where djsync's upload and preview live."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]

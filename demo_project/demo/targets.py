"""The directory's JSON API (demo_project/directory) as djsync targets: the demo syncs its
employees into it as accounts, groups and memberships (docs/targets.md).

The API's address comes from the ``DIRECTORY_API_URL`` setting, which must be under
``DJSYNC["HTTP_BASE_URLS"]``; the token is the ``directory`` credential of
``DJSYNC["CREDENTIALS"]``.
"""

from typing import ClassVar

from django.conf import settings
from django.db import models

from djsync.targets import HttpApiTarget


class DirectoryTarget(HttpApiTarget):
    """One collection of the directory's API: pages with next links, token auth."""

    resource: ClassVar[str] = ""
    auth = {"type": "bearer", "scheme": "Token", "token": "directory"}
    records = "results"
    pagination = {"style": "next", "path": "next"}
    params = {"page_size": 1000}
    batch_url = "batch/"  # one request per 100 items; set to None to send them one by one

    def get_url(self) -> str:
        return f"{settings.DIRECTORY_API_URL.rstrip('/')}/{self.resource}/"


class DirectoryGroups(DirectoryTarget):
    label = "directory.groups"
    resource = "groups"
    fields = {
        "name": models.CharField(max_length=100),
        "description": models.CharField(max_length=200, blank=True),
    }


class DirectoryAccounts(DirectoryTarget):
    label = "directory.accounts"
    resource = "accounts"
    fields = {
        "username": models.CharField(max_length=150),
        "email": models.EmailField(blank=True),
        "full_name": models.CharField(max_length=200),
        "active": models.BooleanField(default=True),
        "department": models.CharField(max_length=100, blank=True),
    }


class DirectoryMemberships(DirectoryTarget):
    label = "directory.memberships"
    resource = "memberships"
    parents = ("directory.accounts", "directory.groups")
    fields = {
        "account": models.CharField(max_length=150),
        "group": models.CharField(max_length=100),
    }

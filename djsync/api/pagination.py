"""Pages of the API's lists: cursors (no COUNT, no OFFSET), a page size bounded by
``DJSYNC["API_MAX_PAGE_SIZE"]`` — a larger one is a 400, never a larger query."""

from __future__ import annotations

from django.utils.translation import gettext as _
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request

from djsync.conf import settings


class Pages(CursorPagination):
    """Pages in primary-key order: ``?page_size=`` (1 to API_MAX_PAGE_SIZE, default
    API_PAGE_SIZE), then the ``next`` link until it is null."""

    ordering = "pk"
    page_size_query_param = "page_size"

    def get_page_size(self, request: Request) -> int:
        text = request.query_params.get(self.page_size_query_param)
        if text is None:
            return int(settings.API_PAGE_SIZE)
        most = int(settings.API_MAX_PAGE_SIZE)
        size = int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else 0
        if not 1 <= size <= most:
            message = _(
                'A whole number from 1 to %(most)s (DJSYNC["API_MAX_PAGE_SIZE"]), not %(given)s.'
            ) % {"most": most, "given": repr(text[:20])}
            raise ValidationError({"page_size": [message]})
        return size


class JobPages(Pages):
    """Jobs by name."""

    ordering = "name"


class NewestFirst(Pages):
    """A job's runs, the newest first."""

    ordering = "-pk"

"""The directory's JSON API: one view class for every resource, plus its batch endpoint.

``/directory/api/<resource>/`` for ``accounts``, ``groups`` and ``memberships``:

- ``GET`` lists, ordered by id, in DRF's page-number shape ``{"count", "next",
  "previous", "results"}`` (``?page=``, ``?page_size=`` up to 1000); ``?username=`` (accounts),
  ``?name=`` (groups), ``?account=``/``?group=`` (memberships) find items by key.
- ``POST`` creates (201); ``GET``/``PATCH``/``PUT``/``DELETE`` on ``<id>/`` read, change
  and delete one item; ``POST batch/`` does many creates, updates and deletes, each on its
  own, and answers per item.
- Refusals a sync must handle: 400 ``{"field": ["message"]}`` (including a duplicate key
  and the demo's business rule: an email ending in ``@refused.invalid`` is refused), 404,
  401 without the token, 413 past the bounds, 429 past ``DIRECTORY_API_RATE`` and a 503
  every ``DIRECTORY_API_FAIL_EVERY`` requests, both with ``Retry-After``.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from . import resources
from .conf import DEFAULT_PAGE_SIZE, MAX_BATCH_ITEMS, MAX_BODY_BYTES, MAX_PAGE_SIZE
from .guards import detail, refusal
from .resources import RESOURCES, Outcome, Resource


class ApiError(Exception):
    """A request refused as a whole: answered with its status and ``{"detail": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def read_json(request: HttpRequest) -> Any:
    """The request's JSON body, bounded by MAX_BODY_BYTES."""
    content_type = request.content_type or ""
    if content_type != "application/json":
        raise ApiError(415, f'Unsupported media type "{content_type}" in request.')
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        raise ApiError(413, f"The request body is over {MAX_BODY_BYTES} bytes.")
    try:
        return json.loads(request.body)
    except ValueError as error:
        raise ApiError(400, f"JSON parse error - {error}") from error


def answer(outcome: Outcome) -> HttpResponse:
    if outcome.body is None:
        return HttpResponse(status=outcome.status)
    return JsonResponse(outcome.body, status=outcome.status)


def positive_int(value: str | None, default: int, cutoff: int) -> int:
    """DRF's page_size rule: a positive whole number, capped; anything else is the default."""
    try:
        number = int(value) if value is not None else default
    except ValueError:
        return default
    return min(number, cutoff) if number > 0 else default


@method_decorator(csrf_exempt, name="dispatch")
class ApiView(View):
    """Guards (rate, failures, token) and error answers shared by every endpoint."""

    #: Set per URL (urls.py): which collection this view serves.
    resource_name = ""

    @property
    def resource(self) -> Resource:
        return RESOURCES[self.resource_name]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        refused = refusal(request)
        if refused is not None:
            return refused
        try:
            return super().dispatch(request, *args, **kwargs)
        except ApiError as error:
            return detail(error.status, str(error))

    def http_method_not_allowed(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        response = detail(405, f'Method "{request.method}" not allowed.')
        response["Allow"] = ", ".join(m.upper() for m in self.http_method_names if hasattr(self, m))
        return response


class CollectionView(ApiView):
    """``<resource>/``: list a page (optionally filtered by key) or create one item."""

    def get(self, request: HttpRequest) -> HttpResponse:
        items = self.resource.queryset()
        for param, lookup in self.resource.filters.items():
            values = request.GET.getlist(param)
            if len(values) == 1:
                items = items.filter(**{lookup: values[0]})
            elif values:
                items = items.filter(**{f"{lookup}__in": values})
        size = positive_int(request.GET.get("page_size"), DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        try:
            page = Paginator(items, size).page(request.GET.get("page") or 1)
        except (EmptyPage, PageNotAnInteger):
            raise ApiError(404, "Invalid page.") from None

        def link(number: int) -> str:
            query = request.GET.copy()
            query["page"] = str(number)
            return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")

        return JsonResponse(
            {
                "count": page.paginator.count,
                "next": link(page.next_page_number()) if page.has_next() else None,
                "previous": link(page.previous_page_number()) if page.has_previous() else None,
                "results": [self.resource.represent(obj) for obj in page],
            }
        )

    def post(self, request: HttpRequest) -> HttpResponse:
        return answer(resources.create(self.resource, read_json(request)))


class ItemView(ApiView):
    """``<resource>/<id>/``: read, change (PATCH partial, PUT whole) or delete one item."""

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        return answer(resources.get(self.resource, pk))

    def patch(self, request: HttpRequest, pk: int) -> HttpResponse:
        return answer(resources.update(self.resource, pk, read_json(request), partial=True))

    def put(self, request: HttpRequest, pk: int) -> HttpResponse:
        return answer(resources.update(self.resource, pk, read_json(request), partial=False))

    def delete(self, request: HttpRequest, pk: int) -> HttpResponse:
        return answer(resources.delete(self.resource, pk))


class BatchView(ApiView):
    """``<resource>/batch/``: ``{"create": [...], "update": [...], "delete": [...]}`` → per item.

    Every item is done on its own (its own transaction), in the order given, and answered
    as the single request would be: one refused item does not stop the others.
    """

    def post(self, request: HttpRequest) -> HttpResponse:
        body = read_json(request)
        if not isinstance(body, dict) or set(body) - {"create", "update", "delete"}:
            raise ApiError(400, 'Expected {"create": [...], "update": [...], "delete": [...]}.')
        lists = {kind: body.get(kind) or [] for kind in ("create", "update", "delete")}
        if not all(isinstance(items, list) for items in lists.values()):
            raise ApiError(400, "create, update and delete must be lists.")
        total = sum(len(items) for items in lists.values())
        if total > MAX_BATCH_ITEMS:
            raise ApiError(413, f"A batch holds at most {MAX_BATCH_ITEMS} items, not {total}.")
        resource = self.resource
        return JsonResponse(
            {
                "create": [
                    batch_entry(resources.create(resource, item)) for item in lists["create"]
                ],
                "update": [batch_entry(batch_update(resource, item)) for item in lists["update"]],
                "delete": [batch_entry(resources.delete(resource, pk)) for pk in lists["delete"]],
            }
        )


def batch_update(resource: Resource, item: Any) -> Outcome:
    if not isinstance(item, dict) or "id" not in item:
        return Outcome(400, {"id": ["This field is required."]})
    changes = {name: value for name, value in item.items() if name != "id"}
    return resources.update(resource, item["id"], changes, partial=True)


def batch_entry(outcome: Outcome) -> dict[str, Any]:
    """One item's answer in a batch: its status, then the item, its errors or the detail."""
    entry: dict[str, Any] = {"status": outcome.status}
    if outcome.status < 300:
        if outcome.body is not None:
            entry["item"] = outcome.body
    elif outcome.body is not None and set(outcome.body) == {"detail"}:
        entry["detail"] = outcome.body["detail"]
    else:
        entry["errors"] = outcome.body
    return entry

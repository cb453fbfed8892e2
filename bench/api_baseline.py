"""What a user would write instead of djsync to sync a CSV into the directory's API: a
plain httpx script.

django-import-export cannot write to an API, so the alternative is a script: list every
page of the collection (``page_size`` 1000, next links), index it by username, compare
each CSV row with it, then POST the new ones, PATCH the changed fields and DELETE the
missing ones, one request each on one keep-alive client, or 100 items per request to the
batch endpoint. Written to be competent and simple, not clever: no threads, no retries
(the bench's server does not fail), refusals counted and reported.
"""

from __future__ import annotations

import csv
from typing import Any

import httpx

FIELDS = ("username", "email", "full_name", "active", "department")
BATCH = 100
TRUE = {"1", "true", "yes", "y", "t", "on"}


def read_csv(path: str) -> dict[str, dict[str, Any]]:
    """The file's accounts by username, typed as the API gives them back."""
    with open(path, newline="", encoding="utf-8") as handle:
        return {
            row["username"]: {
                "username": row["username"],
                "email": row["email"],
                "full_name": row["full_name"],
                "active": row["active"].strip().lower() in TRUE,
                "department": row["department"],
            }
            for row in csv.DictReader(handle)
        }


def list_all(client: httpx.Client, url: str) -> dict[str, dict[str, Any]]:
    """Every account of the API by username, page after page."""
    remote: dict[str, dict[str, Any]] = {}
    next_url: str | None = url
    params: dict[str, Any] | None = {"page_size": 1000}
    while next_url:
        response = client.get(next_url, params=params)
        response.raise_for_status()
        page = response.json()
        for item in page["results"]:
            remote[item["username"]] = item
        next_url, params = page["next"], None  # the next link carries the query
    return remote


def sync(path: str, url: str, token: str, *, batch: bool) -> dict[str, int]:
    """Make the API's accounts match the file; the counts of what was done and refused."""
    wanted = read_csv(path)
    with httpx.Client(headers={"Authorization": f"Token {token}"}, timeout=30) as client:
        remote = list_all(client, url)
        creates = [record for name, record in wanted.items() if name not in remote]
        updates = []
        for name, record in wanted.items():
            item = remote.get(name)
            if item is not None:
                changed = {f: record[f] for f in FIELDS if item.get(f) != record[f]}
                if changed:
                    updates.append({"id": item["id"], **changed})
        deletes = [item["id"] for name, item in remote.items() if name not in wanted]
        if batch:
            refused = send_batches(client, f"{url}batch/", creates, updates, deletes)
        else:
            refused = send_each(client, url, creates, updates, deletes)
    return {
        "created": len(creates),
        "updated": len(updates),
        "deleted": len(deletes),
        "unchanged": len(wanted) - len(creates) - len(updates),
        "refused": refused,
    }


def send_each(
    client: httpx.Client,
    url: str,
    creates: list[dict[str, Any]],
    updates: list[dict[str, Any]],
    deletes: list[int],
) -> int:
    refused = 0
    for record in creates:
        refused += client.post(url, json=record).status_code >= 400
    for change in updates:
        pk = change.pop("id")
        refused += client.patch(f"{url}{pk}/", json=change).status_code >= 400
    for pk in deletes:
        refused += client.delete(f"{url}{pk}/").status_code not in (204, 404)
    return refused


def send_batches(
    client: httpx.Client,
    url: str,
    creates: list[dict[str, Any]],
    updates: list[dict[str, Any]],
    deletes: list[int],
) -> int:
    refused = 0
    for action, items in (("create", creates), ("update", updates), ("delete", deletes)):
        for start in range(0, len(items), BATCH):
            response = client.post(url, json={action: items[start : start + BATCH]})
            response.raise_for_status()
            for result in response.json()[action]:
                status = result["status"]
                refused += status >= 400 and not (action == "delete" and status == 404)
    return refused

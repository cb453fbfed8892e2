"""The demo's directory (the stand-in external system) answers its JSON API over real HTTP.

The HTTP-target tests sync into this server; here its own contract is pinned: pages, lookups
by key, writes, the refusals a sync must handle (400, 401, 404, 413, 429, 503) and batches.
"""

from __future__ import annotations

import httpx
import pytest
from django.db import connections

from demo_project.directory.models import Account, Group, Membership

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

TOKEN = "tests-directory-token"


@pytest.fixture
def api(live_server):
    with httpx.Client(
        base_url=f"{live_server.url}/directory/api/",
        headers={"Authorization": f"Token {TOKEN}"},
        timeout=30,
    ) as client:
        yield client


def walk(api: httpx.Client, url: str) -> list[dict]:
    """Every item of a collection, following the next links."""
    items = []
    while url:
        page = api.get(url)
        assert page.status_code == 200, page.text
        items += page.json()["results"]
        url = page.json()["next"]
    return items


def account(username: str, **fields) -> dict:
    return {"username": username, "full_name": username.title(), **fields}


def test_the_directory_lives_on_its_own_database():
    Account.objects.create(username="ann", full_name="Ann")
    assert Account.objects.db == "other"
    assert "directory_account" in connections["other"].introspection.table_names()
    assert "directory_account" not in connections["default"].introspection.table_names()


def test_pages_follow_next_links_over_every_item_once(api):
    Account.objects.bulk_create(Account(username=f"u{n:02}", full_name=f"U {n}") for n in range(25))
    first = api.get("accounts/", params={"page_size": 10}).json()
    assert first["count"] == 25
    assert first["previous"] is None
    assert first["next"].startswith("http://")
    items = walk(api, "accounts/?page_size=10")
    assert [item["username"] for item in items] == [f"u{n:02}" for n in range(25)]
    assert [item["id"] for item in items] == sorted(item["id"] for item in items)
    second = api.get(first["next"]).json()
    assert second["previous"] is not None
    assert api.get("accounts/", params={"page": 9}).status_code == 404


def test_page_size_is_capped(api):
    Group.objects.bulk_create(Group(name=f"g{n}") for n in range(1001))
    page = api.get("groups/", params={"page_size": 5000}).json()
    assert len(page["results"]) == 1000
    assert page["next"] is not None
    assert len(api.get("groups/").json()["results"]) == 100  # the default


def test_items_are_found_by_key(api):
    ann, bob = (Account.objects.create(**account(name)) for name in ("ann", "bob"))
    staff, ops = (Group.objects.create(name=name) for name in ("staff", "ops"))
    Membership.objects.create(account=ann, group=staff)
    Membership.objects.create(account=bob, group=staff)
    Membership.objects.create(account=bob, group=ops)

    found = api.get("accounts/", params={"username": "bob"}).json()
    assert [a["username"] for a in found["results"]] == ["bob"]
    assert api.get("accounts/", params={"username": "nobody"}).json()["count"] == 0
    assert api.get("groups/", params={"name": "ops"}).json()["results"] == [
        {"id": ops.pk, "name": "ops", "description": ""}
    ]
    both = api.get("accounts/", params=[("username", "ann"), ("username", "bob")]).json()
    assert both["count"] == 2
    bobs = api.get("memberships/", params={"account": "bob"}).json()["results"]
    assert [(m["account"], m["group"]) for m in bobs] == [("bob", "staff"), ("bob", "ops")]
    one = api.get("memberships/", params={"account": "bob", "group": "ops"}).json()
    assert one["count"] == 1


def test_create_read_patch_put_delete(api):
    created = api.post("accounts/", json=account("ann", email="ann@example.com"))
    assert created.status_code == 201, created.text
    item = created.json()
    assert item == {
        "id": item["id"],
        "username": "ann",
        "email": "ann@example.com",
        "full_name": "Ann",
        "active": True,
        "department": "",
        "updated_at": item["updated_at"],
    }
    url = f"accounts/{item['id']}/"
    assert api.get(url).json() == item

    patched = api.patch(url, json={"active": False, "department": "ENG"})
    assert patched.status_code == 200
    assert (patched.json()["active"], patched.json()["department"]) == (False, "ENG")
    assert patched.json()["full_name"] == "Ann"

    partial_put = api.put(url, json={"full_name": "Ann B"})
    assert partial_put.status_code == 400
    assert partial_put.json()["username"] == ["This field is required."]
    whole = {**account("ann2"), "email": "", "active": True, "department": "OPS"}
    put = api.put(url, json=whole)
    assert put.status_code == 200
    assert Account.objects.get(pk=item["id"]).username == "ann2"

    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404
    assert not Account.objects.exists()


def test_memberships_use_natural_keys_both_ways(api):
    api.post("accounts/", json=account("ann"))
    api.post("groups/", json={"name": "staff", "description": "Everyone"})
    created = api.post("memberships/", json={"account": "ann", "group": "staff"})
    assert created.status_code == 201
    assert created.json() == {"id": created.json()["id"], "account": "ann", "group": "staff"}
    assert Membership.objects.get().group.description == "Everyone"
    unknown = api.post("memberships/", json={"account": "nobody", "group": "staff"})
    assert unknown.status_code == 400
    assert unknown.json() == {"account": ["Object with username=nobody does not exist."]}
    twice = api.post("memberships/", json={"account": "ann", "group": "staff"})
    assert twice.status_code == 400
    assert list(twice.json()) == ["non_field_errors"]


@pytest.mark.parametrize(
    ("resource", "body", "errors"),
    [
        ("accounts", {"username": "ann"}, {"full_name": ["This field is required."]}),
        ("accounts", account("ann", active="yes"), {"active": ["Must be a valid boolean."]}),
        ("accounts", account("ann", email=None), {"email": ["This field may not be null."]}),
        ("accounts", account("ann", email="nope"), {"email": ["Enter a valid email address."]}),
        (
            "accounts",
            account("ann", email="ann@refused.invalid"),
            {"email": ["this domain is refused by the directory"]},
        ),
        (
            "accounts",
            account("x" * 151),
            {"username": ["Ensure this value has at most 150 characters (it has 151)."]},
        ),
        (
            "groups",
            {"name": "Sales & Marketing"},
            {"name": ["Enter a group name of letters, digits, '.', '-' or '_'."]},
        ),
        ("groups", [{"name": "ops"}], {"non_field_errors": ["Expected a JSON object, got list."]}),
    ],
)
def test_invalid_items_are_refused_field_by_field(api, resource, body, errors):
    answer = api.post(f"{resource}/", json=body)
    assert answer.status_code == 400
    assert answer.json() == errors
    assert not Account.objects.exists() and not Group.objects.exists()


def test_a_duplicate_key_is_refused(api):
    assert api.post("accounts/", json=account("ann")).status_code == 201
    again = api.post("accounts/", json=account("ann"))
    assert again.status_code == 400
    assert again.json() == {"username": ["account with this username already exists."]}
    assert Account.objects.count() == 1


def test_unknown_ids_are_not_found(api):
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        answer = api.request(method, "groups/999/", json={"name": "x"})
        assert answer.status_code == 404, method
        assert answer.json() == {"detail": "Not found."}


def test_requests_without_the_token_are_refused(api):
    for headers in ({"Authorization": ""}, {"Authorization": "Token wrong"}):
        answer = api.post("groups/", json={"name": "ops"}, headers=headers)
        assert answer.status_code == 401
        assert "detail" in answer.json()
        assert answer.headers["WWW-Authenticate"] == "Token"
    assert not Group.objects.exists()


def test_bodies_that_are_not_json_are_refused(api):
    as_text = api.post(
        "groups/", content=b'{"name": "ops"}', headers={"Content-Type": "text/plain"}
    )
    assert as_text.status_code == 415
    broken = api.post("groups/", content=b'{"name": ', headers={"Content-Type": "application/json"})
    assert broken.status_code == 400
    assert broken.json()["detail"].startswith("JSON parse error")


def test_a_body_over_one_megabyte_is_refused(api):
    big = {"name": "ops", "description": "x" * (1024 * 1024)}
    answer = api.post("groups/", json=big)
    assert answer.status_code == 413
    assert not Group.objects.exists()


def test_a_batch_answers_each_item_in_order(api):
    ann = Account.objects.create(**account("ann"))
    bob = Account.objects.create(**account("bob"))
    batch = {
        "create": [
            account("cid", email="cid@example.com"),
            account("ann"),
            account("dee", email="dee@refused.invalid"),
        ],
        "update": [
            {"id": ann.pk, "department": "ENG"},
            {"id": 999, "department": "ENG"},
            {"id": bob.pk, "active": "no"},
            {"department": "ENG"},
        ],
        "delete": [bob.pk, 999],
    }
    answer = api.post("accounts/batch/", json=batch)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert [entry["status"] for entry in result["create"]] == [201, 400, 400]
    assert result["create"][0]["item"]["username"] == "cid"
    assert result["create"][1]["errors"] == {
        "username": ["account with this username already exists."]
    }
    assert result["create"][2]["errors"] == {"email": ["this domain is refused by the directory"]}
    assert [entry["status"] for entry in result["update"]] == [200, 404, 400, 400]
    assert result["update"][0]["item"]["department"] == "ENG"
    assert result["update"][1] == {"status": 404, "detail": "Not found."}
    assert result["update"][2]["errors"] == {"active": ["Must be a valid boolean."]}
    assert result["update"][3]["errors"] == {"id": ["This field is required."]}
    assert result["delete"] == [{"status": 204}, {"status": 404, "detail": "Not found."}]
    assert sorted(Account.objects.values_list("username", "department")) == [
        ("ann", "ENG"),
        ("cid", ""),
    ]


def test_a_batch_over_the_cap_is_refused_whole(api):
    answer = api.post("groups/batch/", json={"create": [{"name": f"g{n}"} for n in range(1001)]})
    assert answer.status_code == 413
    assert not Group.objects.exists()
    shape = api.post("groups/batch/", json={"create": {"name": "ops"}})
    assert shape.status_code == 400


def test_over_the_rate_the_directory_answers_429_with_retry_after(api, settings):
    settings.DIRECTORY_API_RATE = 0.01  # one request now, the next in 100 s
    assert api.get("groups/").status_code == 200
    throttled = api.get("groups/")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "1"
    settings.DIRECTORY_API_RATE = None
    assert api.get("groups/").status_code == 200


def test_every_nth_request_fails_with_503_when_asked(api, settings):
    settings.DIRECTORY_API_FAIL_EVERY = 3
    statuses = [api.get("groups/") for _ in range(6)]
    assert [answer.status_code for answer in statuses] == [200, 200, 503, 200, 200, 503]
    assert statuses[2].headers["Retry-After"] == "0"


def test_a_batch_gives_back_items_as_a_get_does(api):
    result = api.post("groups/batch/", json={"create": [{"name": "ops"}]}).json()
    item = result["create"][0]["item"]
    assert item == {"id": item["id"], "name": "ops", "description": ""}
    assert api.get(f"groups/{item['id']}/").json() == item

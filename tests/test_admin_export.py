"""Export from a model's changelist (SyncImportMixin): the selected rows by an action, the
filtered list by a button; CSV, XLSX and JSON downloads; formulas neutralized; view
permission needed."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from openpyxl import load_workbook

from tests.testapp.models import Category, Product

CHANGELIST = "admin:testapp_product_changelist"
EXPORT = "admin:testapp_product_sync_export"


@pytest.fixture
def products(db):
    tools = Category.objects.create(code="tools", name="Tools")
    return [
        Product.objects.create(sku="A1", name="Lamp", price=Decimal("1.50"), qty=3, category=tools),
        Product.objects.create(sku="B2", name='=HYPERLINK("http://x")', price=2, qty=1),
        Product.objects.create(sku="C3", name="Desk lamp", price=Decimal("80"), qty=0),
    ]


@pytest.fixture
def client_with(django_user_model):
    def login(*codenames: str) -> Client:
        user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
        for codename in codenames:
            user.user_permissions.add(Permission.objects.get(codename=codename))
        client = Client()
        client.force_login(user)
        return client

    return login


def body(response) -> bytes:
    assert response.status_code == 200, response.content[:500]
    return b"".join(response.streaming_content)


def csv_rows(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body(response).decode("utf-8"))))


def run_action(client: Client, action: str, *items: Product):
    return client.post(
        reverse(CHANGELIST), {"action": action, "_selected_action": [p.pk for p in items]}
    )


def test_export_selected_to_csv_follows_the_importer_mapping(admin_client, products):
    response = run_action(admin_client, "djsync_export_csv", products[0], products[1])
    assert response["Content-Disposition"].startswith('attachment; filename="products-')
    assert response["Content-Disposition"].endswith('.csv"')
    rows = csv_rows(response)
    # Only the selected rows, in the changelist's order (newest first).
    assert [r["sku"] for r in rows] == ["B2", "A1"]
    assert rows[1] == {
        "sku": "A1",
        "name": "Lamp",
        "price": "1.50",
        "qty": "3",
        "updated": "",
        "active": "true",
        "category_code": "tools",  # the foreign key by its natural key, as the importer reads it
    }
    assert rows[0]["name"] == '\'=HYPERLINK("http://x")'  # a formula stays text


def test_export_selected_to_xlsx_and_json(admin_client, products):
    book = load_workbook(
        io.BytesIO(body(run_action(admin_client, "djsync_export_xlsx", *products)))
    )
    sheet = list(book.active.iter_rows(values_only=True))
    assert sheet[0][:3] == ("sku", "name", "price")
    assert [row[0] for row in sheet[1:]] == ["C3", "B2", "A1"]
    assert sheet[2][1] == '\'=HYPERLINK("http://x")'
    assert sheet[3][2] == 1.5  # a number, not text

    data = json.loads(body(run_action(admin_client, "djsync_export_json", products[2])))
    assert data == [
        {
            "sku": "C3",
            "name": "Desk lamp",
            "price": "80.00",
            "qty": 0,
            "updated": None,
            "active": True,
            "category_code": None,
        }
    ]


def test_the_button_exports_the_filtered_changelist(admin_client, products):
    page = admin_client.get(reverse(CHANGELIST), {"q": "lamp", "o": "-1"}).content.decode()
    assert 'class="djsync-export-link"' in page
    url = reverse(EXPORT) + "?q=lamp&amp;o=-1&amp;_djsync_format=csv"
    assert url in page
    response = admin_client.get(reverse(EXPORT), {"q": "lamp", "o": "-1", "_djsync_format": "csv"})
    assert [r["sku"] for r in csv_rows(response)] == ["C3", "A1"]  # search and order kept
    everything = admin_client.get(reverse(EXPORT), {"_djsync_format": "xlsx"})
    sheet = list(load_workbook(io.BytesIO(body(everything))).active.iter_rows(values_only=True))
    assert len(sheet) == 4


def test_an_unknown_format_is_refused(admin_client, products):
    response = admin_client.get(reverse(EXPORT), {"_djsync_format": "exe"})
    assert response.status_code == 400


def test_view_permission_is_enough(client_with, products):
    client = client_with("view_product")
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert "djsync_export_csv" in page and 'class="djsync-export-link"' in page
    assert [r["sku"] for r in csv_rows(run_action(client, "djsync_export_csv", products[0]))] == [
        "A1"
    ]
    response = client.get(reverse(EXPORT), {"_djsync_format": "csv"})
    assert len(csv_rows(response)) == 3


def test_without_view_permission_there_is_no_export(client_with, products):
    client = client_with("view_category")
    assert client.get(reverse(EXPORT), {"_djsync_format": "csv"}).status_code == 403
    response = run_action(client, "djsync_export_csv", products[0])
    assert response.status_code == 403

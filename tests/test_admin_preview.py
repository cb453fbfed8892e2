"""The admin's preview of a run: search by key, filter by changed field, paging at the top."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse

import djsync
from tests.testapp.models import Product

pytestmark = pytest.mark.django_db


@pytest.fixture
def preview(make_job: Any, write_csv: Any, job_path: Any, admin_user: Any) -> Any:
    for sku, price, qty in (("LAMP-1", "1.00", 1), ("LAMP-2", "1.00", 1), ("SAW-1", "5.00", 3)):
        Product.objects.create(sku=sku, name=sku, price=Decimal(price), qty=qty)
    rows = [
        {"sku": "LAMP-1", "name": "LAMP-1", "price": "2.00", "qty": 1, "updated": "", "active": "1"},
        {"sku": "LAMP-2", "name": "LAMP-2", "price": "1.00", "qty": 7, "updated": "", "active": "1"},
        {"sku": "SAW-1", "name": "SAW-1", "price": "6.00", "qty": 3, "updated": "", "active": "1"},
        {"sku": "ÉTAU-1", "name": "Étau", "price": "9.00", "qty": 1, "updated": "", "active": "1"},
    ]  # fmt: skip
    job = make_job("test_products", source={"path": job_path(write_csv(rows))})
    return djsync.run(job, dry_run=True, user=admin_user)


def listed(admin_client: Any, run: Any, **params: Any) -> list[str]:
    url = reverse("admin:djsync_syncrun_change", args=[run.pk])
    page = admin_client.get(url, params)
    assert page.status_code == 200
    return re.findall(r'<td class="djsync-key">([^<]+)', page.content.decode())


def test_search_by_any_part_of_the_key_in_any_case(admin_client: Any, preview: Any) -> None:
    assert sorted(listed(admin_client, preview)) == ["LAMP-1", "LAMP-2", "SAW-1", "ÉTAU-1"]
    assert listed(admin_client, preview, q="lamp") == ["LAMP-1", "LAMP-2"]
    assert listed(admin_client, preview, q="étau") == ["ÉTAU-1"]
    assert listed(admin_client, preview, q="nothing") == []


def test_filter_by_the_field_an_update_changes(admin_client: Any, preview: Any) -> None:
    assert sorted(listed(admin_client, preview, field="price", action="update")) == [
        "LAMP-1",
        "SAW-1",
    ]
    assert listed(admin_client, preview, field="qty", action="update") == ["LAMP-2"]
    assert listed(admin_client, preview, field="price", q="saw") == ["SAW-1"]
    assert len(listed(admin_client, preview, field="no-such-field")) == 4  # ignored


def test_paging_links_above_the_table_keep_the_filter(
    admin_client: Any, preview: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr("djsync.views.PER_PAGE", 1)
    url = reverse("admin:djsync_syncrun_change", args=[preview.pk])
    html = admin_client.get(url, {"q": "lamp"}).content.decode()
    table = html.index('id="djsync-changes"')
    first_pager = html.index("djsync-paginator")
    assert first_pager < table  # at the top, not only at the bottom
    assert "q=lamp" in html[first_pager:table] and "page=2" in html[first_pager:table]

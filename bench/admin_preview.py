"""Admin preview speed: a preview of a 100,000-row file must open in under a second.

Seeds N products, uploads a CSV of N rows in which every price changed (N updates), 1% new
rows and 1% missing rows through the admin's upload page, then times the preview pages
(first, middle, last, filtered by action) the way a browser asks for them.

    DJSYNC_PG_NAME=adminbench .venv/bin/python bench/admin_preview.py [N]   # PostgreSQL
    DJSYNC_TEST_DB=sqlite .venv/bin/python bench/admin_preview.py [N]      # SQLite
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import (  # noqa: E402
    setup_databases,
    setup_test_environment,
    teardown_databases,
)
from django.urls import reverse  # noqa: E402


def timed(client: Client, url: str, repeat: int = 3) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(url)
        content = b"".join(response.streaming_content) if response.streaming else response.content
        times.append(time.perf_counter() - start)
        assert response.status_code == 200, (url, response.status_code)
        size = len(content)
    return statistics.median(times), size


def main(rows: int) -> None:
    from django.contrib.auth import get_user_model

    from djsync.models import SyncJob, SyncRun
    from tests.testapp.models import Product

    settings.DJSYNC = {"UPLOAD_ROOT": tempfile.mkdtemp(prefix="djsync-bench-")}
    user = get_user_model().objects.create_superuser("admin", "a@example.com", "pw")
    job = SyncJob.objects.create(name="products", importer="test_products", max_delete=None)
    gone = rows // 100
    Product.objects.bulk_create(
        Product(sku=f"S{i:07}", name=f"Product {i}", price=Decimal("10.00"), qty=i % 50)
        for i in range(rows)
    )
    csv = io.StringIO()
    csv.write("sku,name,price,qty,updated,active\n")
    for i in range(gone, rows + gone):  # the first 1% are missing, 1% are new
        csv.write(f"S{i:07},Product {i},11.50,{i % 50},,yes\n")
    data = csv.getvalue().encode()

    client = Client()
    client.force_login(user)
    start = time.perf_counter()
    upload = io.BytesIO(data)
    upload.name = "products.csv"
    response = client.post(reverse("admin:djsync_syncjob_upload", args=[job.pk]), {"file": upload})
    took = time.perf_counter() - start
    run = SyncRun.objects.get()
    assert response.status_code == 302 and run.status == "previewed", (run.status, run.error)
    print(f"{rows:,} rows on {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}")
    print(f"upload + preview (eager worker): {took:.2f} s — {run.counts}")
    base = reverse("admin:djsync_syncrun_change", args=[run.pk])
    last = (run.created + run.updated + run.deleted + 49) // 50
    last_update = (run.updated + 49) // 50
    pages = {
        "first page": base,
        "middle page": f"{base}?page={last // 2}",
        "last page": f"{base}?page={last}",
        "updates, last page": f"{base}?action=update&page={last_update}",
        "creates": f"{base}?action=create",
        "deletes, page 2": f"{base}?action=delete&page=2",
        "status JSON": reverse("admin:djsync_syncrun_status", args=[run.pk]),
        "run history list": reverse("admin:djsync_syncrun_changelist"),
        "job list": reverse("admin:djsync_syncjob_changelist"),
    }
    for label, url in pages.items():
        seconds, size = timed(client, url)
        print(f"  {label:<20} {seconds * 1000:7.1f} ms  {size / 1024:6.0f} KiB")


if __name__ == "__main__":
    setup_test_environment()
    old = setup_databases(verbosity=0, interactive=False)
    try:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
    finally:
        teardown_databases(old, verbosity=0)

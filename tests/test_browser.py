"""End to end in headless Chromium: log in, upload a CSV from the model's changelist, wait for
the preview, check it, apply, and find the changed rows; the upload's column mapping step;
search by key, apply skipping the bad rows, force past the delete guard. Saves
docs/img/preview.png and docs/img/columns.png."""

from __future__ import annotations

import os
import re
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connections

from djsync.models import SyncJob, SyncRun
from tests.testapp.models import Product

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
# The docs' screenshot is refreshed on request (DJSYNC_SCREENSHOTS=docs), so that a test
# run leaves the checkout clean; otherwise it goes with the other test artifacts.
ROOT = Path(__file__).resolve().parent.parent
SHOTS = (
    ROOT / "docs" / "img"
    if os.environ.get("DJSYNC_SCREENSHOTS") == "docs"
    else ROOT / "tests" / "artifacts"
)
SCREENSHOT = SHOTS / "preview.png"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CSV = """sku,name,price,qty,updated,active
A1,Desk lamp,1.75,3,2026-01-02,yes
A2,Kite,12.00,5,2026-01-02,yes
A3,Paper cup (pack of 50),4.20,40,2026-01-05,yes
A4,Rug,abc,1,2026-01-02,yes
B1,Stool,39.90,2,2026-03-01,yes
B2,Teapot,18.50,6,2026-03-01,no
"""


@pytest.fixture
def browser(monkeypatch):
    """Debian's Chromium driven by Playwright; under CI a missing browser fails the test."""
    # Playwright's sync API runs an event loop in this thread; the ORM calls of the test
    # (not of the server) then look async to Django.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "the playwright package is not installed (requirements-dev.txt)"
    if missing is None and not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        missing = f"{CHROMIUM} is missing (scripts/install-browser.sh installs it)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
            args=ARGS,
        )
        try:
            yield launched
        finally:
            launched.close()
            # ORM calls made while Playwright ran used their own connection (another
            # context); close it, or the test database cannot be dropped at the end.
            connections.close_all()


@pytest.fixture
def seeded(settings, tmp_path, django_user_model):
    settings.DJSYNC = {**settings.DJSYNC, "UPLOAD_ROOT": str(tmp_path / "uploads")}
    django_user_model.objects.create_superuser("admin", "admin@example.com", "pw")
    rows = [
        ("A1", "Desk lamp", "1.50", 3),
        ("A2", "Kite", "12.00", 5),
        ("A3", "Paper cup", "4.20", 50),
        ("A4", "Rug", "80.00", 1),
        ("Z9", "Fax machine", "99.00", 1),
    ]
    for sku, name, price, qty in rows:
        Product.objects.create(
            sku=sku, name=name, price=Decimal(price), qty=qty, updated="2026-01-02"
        )
    Product.objects.filter(sku="A3").update(updated="2026-01-05")
    job = SyncJob.objects.create(name="products", importer="test_products", on_row_error="skip")
    path = tmp_path / "products.csv"
    path.write_text(CSV, encoding="utf-8")
    return job, path


def test_upload_preview_apply_in_chromium(live_server, browser, seeded):
    job, csv_path = seeded
    page = log_in(browser, live_server, "/admin/testapp/product/", height=1000)

    page.click("text=Import / sync from file")
    page.wait_for_url(re.compile(r"/sync-import/$"))
    page.set_input_files("input[name=file]", str(csv_path))
    if page.locator("select[name=job]").count():
        page.select_option("select[name=job]", f"job:{job.pk}")
    page.click("#djsync-upload")

    # The progress page polls until the preview is ready, then opens the run.
    page.wait_for_url(re.compile(r"/admin/djsync/syncrun/\d+/change/$"))
    counts = {
        name: page.inner_text(f'[data-count="{name}"]')
        for name in ("created", "updated", "deleted", "unchanged", "errors")
    }
    assert counts == {
        "created": "2",
        "updated": "2",
        "deleted": "1",
        "unchanged": "1",
        "errors": "1",
    }
    lamp = page.locator("tr.djsync-change-update", has_text="A1")
    assert lamp.locator('[data-field="price"] del.djsync-old').inner_text() == "1.50"
    assert lamp.locator('[data-field="price"] ins.djsync-new').inner_text() == "1.75"
    assert "Rug" not in page.locator("#djsync-changes").inner_text()
    assert "abc" in page.locator("#djsync-row-errors").inner_text()
    assert Product.objects.get(sku="A1").price == Decimal("1.50")  # a preview writes nothing
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.click("#djsync-apply")
    page.wait_for_url(re.compile(r"/progress/\?step=apply$"))
    page.wait_for_url(re.compile(r"/admin/djsync/syncrun/\d+/change/$"))
    assert page.inner_text("#djsync-status") == "succeeded"
    run = SyncRun.objects.get()
    assert run.status == "succeeded" and run.user.username == "admin"

    page.click("#djsync-changed-link")
    page.wait_for_url(re.compile(r"/admin/testapp/product/\?sku__in="))
    listing = page.inner_text("#result_list")
    for text in ("Desk lamp", "1.75", "Paper cup (pack of 50)", "Stool", "Teapot"):
        assert text in listing
    assert "Fax machine" not in listing
    assert "4 products" in page.inner_text("#changelist-form .paginator")
    assert not Product.objects.filter(sku="Z9").exists()


def log_in(browser, live_server, next_url: str, height: int = 900):
    page = browser.new_page(viewport={"width": 1280, "height": height})
    page.add_init_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
    page.set_default_timeout(30_000)
    page.goto(f"{live_server.url}/admin/login/?next={next_url}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(re.escape(next_url) + "$"))
    return page


def upload_to_job(page, job: SyncJob, path: Path) -> None:
    """The job's upload page: pick the file, upload; the mapping step or the preview follows."""
    page.goto(page.url.split("/admin/")[0] + f"/admin/djsync/syncjob/{job.pk}/upload/")
    page.set_input_files("input[name=file]", str(path))
    page.click("#djsync-upload")


def wait_for_run_page(page) -> None:
    page.wait_for_url(re.compile(r"/admin/djsync/syncrun/\d+/change/(\?.*)?(#.*)?$"))


def test_the_column_mapping_step_in_chromium(live_server, browser, seeded, tmp_path):
    job = SyncJob.objects.create(name="aliased", importer="test_products_aliased")
    path = tmp_path / "prices.csv"
    path.write_text("Item_No,designation,Cost,Notes\nK1,Kite,9.50,blue\nL1,Lamp,1.75,\n")
    page = log_in(browser, live_server, "/admin/djsync/syncjob/")
    upload_to_job(page, job, path)

    page.wait_for_selector("#djsync-column-mapping")
    assert page.input_value("select[name=column-sku]") == "Item_No"
    assert page.input_value("select[name=column-name]") == "designation"
    assert page.input_value("select[name=column-price]") == ""  # "Cost": the person picks
    page.select_option("select[name=column-price]", "Cost")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#content").screenshot(path=str(SHOTS / "columns.png"))
    page.click("#djsync-columns-confirm")

    wait_for_run_page(page)
    assert page.inner_text('[data-count="created"]') == "2"
    assert "Kite" in page.inner_text("#djsync-changes")
    job.refresh_from_db()
    assert job.column_mapping["test_products_aliased"][0]["columns"]["price"] == "Cost"

    # The next file with these headers goes straight to preview.
    path.write_text("Cost,Item_No,designation,Notes\n3,R1,Rug,\n")
    upload_to_job(page, job, path)
    wait_for_run_page(page)
    assert page.inner_text('[data-count="created"]') == "1"


def test_search_skip_bad_rows_and_force_in_chromium(live_server, browser, seeded, tmp_path):
    job, csv_path = seeded
    SyncJob.objects.filter(pk=job.pk).update(on_row_error="fail")
    page = log_in(browser, live_server, "/admin/djsync/syncjob/")
    upload_to_job(page, job, csv_path)
    wait_for_run_page(page)

    # Search by key: any part, any case.
    page.fill("#djsync-search", "b")
    page.press("#djsync-search", "Enter")
    page.wait_for_url(re.compile(r"q=b"))
    keys = page.inner_text("#djsync-changes")
    assert "B1" in keys and "B2" in keys and "A1" not in keys and "Z9" not in keys
    page.click("#djsync-clear-filter")
    page.wait_for_url(re.compile(r"/change/\??(#changes)?$"))
    assert "A1" in page.inner_text("#djsync-changes")

    # The job fails on row errors: Apply is replaced by "apply the good rows".
    assert page.locator("#djsync-apply").count() == 0
    page.click("#djsync-apply-skipping")
    page.wait_for_url(re.compile(r"/progress/\?step=apply$"))
    wait_for_run_page(page)
    assert page.inner_text("#djsync-status") == "succeeded"
    assert Product.objects.get(sku="A1").price == Decimal("1.75")
    assert Product.objects.get(sku="A4").price == Decimal("80.00")  # its bad row skipped

    # A file with one row would delete 5 of 6: the delete guard stops it until forced.
    csv_path.write_text("sku,name,price,qty,updated,active\nA1,Desk lamp,1.75,3,2026-01-02,yes\n")
    upload_to_job(page, job, csv_path)
    wait_for_run_page(page)
    assert page.locator("#djsync-apply").count() == 0
    assert "more than the delete guard" in page.inner_text("#djsync-force-form")
    page.fill("#djsync-force-confirm", "4")
    page.click("#djsync-force")
    wait_for_run_page(page)
    assert "Type 5, the number of rows this apply deletes" in page.inner_text(".messagelist")
    assert Product.objects.count() == 6
    page.fill("#djsync-force-confirm", "5")
    page.click("#djsync-force")
    page.wait_for_url(re.compile(r"/progress/\?step=apply$"))
    wait_for_run_page(page)
    assert page.inner_text("#djsync-status") == "succeeded"
    assert list(Product.objects.values_list("sku", flat=True)) == ["A1"]


def test_the_progress_page_fills_its_bar_while_a_background_preview_reads(
    live_server, browser, seeded, settings, tmp_path
):
    """Without a broker the preview works in a thread: the browser lands on the progress
    page at once, whose bar and line show the bytes read of the file's size and the rows."""
    from djsync import tasks
    from tests.testapp.sync import GATE

    settings.DJSYNC = {**settings.DJSYNC, "BACKGROUND_THREADS": True, "FAST_PATH": False}
    job = SyncJob.objects.create(name="waiting", importer="test_products_waiting")
    lines = [f"S{i:04},Product {i},1.50,{i},2026-01-02,yes" for i in range(3000)]
    lines[1500] = "WAIT,Wait,1.00,1,2026-01-02,yes"  # the run waits here for GATE
    path = tmp_path / "big.csv"
    path.write_text("sku,name,price,qty,updated,active\n" + "\n".join(lines) + "\n")
    GATE.clear()
    page = browser.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(f"{live_server.url}/admin/login/?next=/admin/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", "pw")
        page.click("input[type=submit]")
        page.wait_for_url(re.compile(r"/admin/$"))
        page.goto(f"{live_server.url}/admin/djsync/syncjob/{job.pk}/upload/")
        page.set_input_files("input[name=file]", str(path))
        page.click("#djsync-upload")
        page.wait_for_url(re.compile(r"/progress/\?step=preview$"))
        text = page.locator("#djsync-progress-text")
        text.filter(has_text="1,000 rows").wait_for()
        assert " of " in text.inner_text() and "%" in text.inner_text()
        value = float(page.get_attribute("#djsync-progress-bar", "value") or 0)
        assert 0 < value < 100
        GATE.set()
        page.wait_for_url(re.compile(r"/admin/djsync/syncrun/\d+/change/$"))
        assert page.inner_text("#djsync-status") == "previewed"
    finally:
        GATE.set()
        assert tasks.wait_for_background_runs(timeout=30)
        GATE.clear()


@pytest.fixture
def api_importer(settings):
    """An importer writing to a REST collection on tests/httpserver.py's server (a thread
    of this process, like the live server)."""
    from django.db import models

    import djsync
    from djsync.mapping.registry import register, unregister
    from djsync.targets import HttpApiTarget
    from tests.httpserver import ApiServer, Collection

    with ApiServer() as api:
        settings.DJSYNC = {
            **settings.DJSYNC,
            "HTTP_BASE_URLS": [api.url("/api/")],
            "CREDENTIALS": {"things": "browser-token"},
        }
        target = type(
            "Things",
            (HttpApiTarget,),
            {
                "label": "remote.things",
                "url": api.url("/api/things/"),
                "records": "results",
                "auth": {"type": "bearer", "token": "things"},
                "fields": {
                    "code": models.CharField(max_length=10),
                    "name": models.CharField(max_length=50),
                },
                "backoff": 0.01,
            },
        )
        meta = type(
            "Meta",
            (),
            {
                "name": "remote-things",
                "target": target,
                "keys": ["code"],
                "fields": ["code", "name"],
            },
        )
        importer = type("ThingImporter", (djsync.Importer,), {"Meta": meta, "__module__": __name__})
        register(importer)
        try:
            yield api, Collection(api)
        finally:
            unregister("remote-things")


def test_upload_preview_apply_into_an_http_api_in_chromium(
    live_server, browser, seeded, api_importer, tmp_path
):
    """The admin's preview of a job writing to a JSON API says which request each change
    sends; after Apply the API holds the file's items, and the one it refused is a row
    error with its answer."""
    api, collection = api_importer
    apple = collection.add(code="A", name="Apple")
    collection.add(code="D", name="Date")
    zebra = collection.add(code="Z", name="Zebra")
    job = SyncJob.objects.create(
        name="things", importer="remote-things", on_row_error="skip", allow_delete=True
    )
    path = tmp_path / "things.csv"
    path.write_text("code,name\nA,Apricot\nB,Banana\nC,refuse me\nD,Date\n")
    page = log_in(browser, live_server, "/admin/djsync/syncjob/")
    upload_to_job(page, job, path)
    wait_for_run_page(page)

    counts = {
        name: page.inner_text(f'[data-count="{name}"]')
        for name in ("created", "updated", "deleted", "unchanged", "errors")
    }
    assert counts == {
        "created": "2",
        "updated": "1",
        "deleted": "1",
        "unchanged": "1",
        "errors": "0",
    }
    things = api.url("/api/things/")
    apricot = page.locator("tr.djsync-change-update", has_text="A")
    assert apricot.locator(".djsync-request").inner_text() == f"PATCH {things}{apple}/"
    assert apricot.locator('[data-field="name"] del.djsync-old').inner_text() == "Apple"
    assert apricot.locator('[data-field="name"] ins.djsync-new').inner_text() == "Apricot"
    banana = page.locator("tr.djsync-change-create", has_text="Banana")
    assert banana.locator(".djsync-request").inner_text() == f"POST {things}"
    gone = page.locator("tr.djsync-change-delete", has_text="Zebra")
    assert gone.locator(".djsync-request").inner_text() == f"DELETE {things}{zebra}/"
    assert [r.method for r in api.requests] == ["GET"]  # a preview only reads the API

    page.click("#djsync-apply")
    page.wait_for_url(re.compile(r"/progress/\?step=apply$"))
    wait_for_run_page(page)
    assert page.inner_text("#djsync-status") == "succeeded"
    assert sorted((item["code"], item["name"]) for item in collection.items.values()) == [
        ("A", "Apricot"),
        ("B", "Banana"),
        ("D", "Date"),
    ]
    assert page.inner_text('[data-count="errors"]') == "1"
    refused = page.locator("tr.djsync-change-create", has_text="refuse me")
    assert (
        "answered 400: name: this name is refused"
        in refused.locator(".djsync-refused").inner_text()
    )
    errors = page.inner_text("#djsync-row-errors")
    assert "C" in errors and "this name is refused" in errors
    run = SyncRun.objects.get(job=job)
    assert (run.status, run.created, run.updated, run.deleted, run.errors) == (
        "succeeded",
        1,
        1,
        1,
        1,
    )

"""A first end-to-end run on whichever database the suite uses."""

from decimal import Decimal

import djsync
from tests.testapp.models import Product


def test_products_roundtrip(make_job, write_csv):
    job = make_job("test_products")
    path = write_csv(
        [
            {
                "sku": "A1",
                "name": "Lamp",
                "price": "1.50",
                "qty": "3",
                "updated": "2026-01-02",
                "active": "yes",
            },
            {"sku": "A2", "name": "Kite", "price": "2", "qty": "1", "updated": "", "active": "no"},
        ]
    )
    run = djsync.run(job, file=path)
    assert run.status == "succeeded"
    assert run.counts["created"] == 2
    assert Product.objects.get(sku="A1").price == Decimal("1.50")
    again = djsync.run(job, file=path)
    assert again.counts == {"created": 0, "updated": 0, "deleted": 0, "unchanged": 2, "errors": 0}


def test_preview_then_apply_and_staleness(make_job, write_csv):
    import pytest

    from djsync.exceptions import ConflictError
    from djsync.runs.orchestrator import apply_previewed

    job = make_job("test_products")
    first = write_csv(
        [{"sku": "A1", "name": "Lamp", "price": "1.50", "qty": "3", "updated": "", "active": "yes"}]
    )
    djsync.run(job, file=first)
    second = write_csv(
        [
            {
                "sku": "A1",
                "name": "Lamp",
                "price": "1.75",
                "qty": "3",
                "updated": "",
                "active": "yes",
            },
            {
                "sku": "B1",
                "name": "Kite",
                "price": "9",
                "qty": "1",
                "updated": "2026-03-01",
                "active": "no",
            },
        ],
        name="second.csv",
    )
    preview = djsync.run(job, file=second, dry_run=True)
    assert preview.status == "previewed"
    assert Product.objects.count() == 1
    applied = apply_previewed(preview)
    assert applied.status == "succeeded"
    assert Product.objects.get(sku="A1").price == Decimal("1.75")
    assert Product.objects.get(sku="B1").updated.isoformat() == "2026-03-01"

    third = write_csv(
        [
            {
                "sku": "A1",
                "name": "Lamp",
                "price": "2.00",
                "qty": "3",
                "updated": "",
                "active": "yes",
            },
            {
                "sku": "B1",
                "name": "Kite",
                "price": "9",
                "qty": "1",
                "updated": "2026-03-01",
                "active": "no",
            },
        ],
        name="third.csv",
    )
    stale = djsync.run(job, file=third, dry_run=True)
    Product.objects.filter(sku="A1").update(price=Decimal("5"))
    with pytest.raises(ConflictError, match="A1"):
        apply_previewed(stale)
    assert Product.objects.get(sku="A1").price == Decimal("5")


def test_queue_preview_from_upload_then_apply_task(
    make_job, write_csv, django_capture_on_commit_callbacks, settings, tmp_path
):
    from djsync.queue import queue_preview
    from djsync.tasks import apply_run

    settings.DJSYNC = {**settings.DJSYNC, "UPLOAD_ROOT": str(tmp_path / "uploads")}
    job = make_job("test_products")
    path = write_csv(
        [{"sku": "Z9", "name": "Drum", "price": "12.5", "qty": "2", "updated": "", "active": "1"}]
    )
    with path.open("rb") as handle, django_capture_on_commit_callbacks(execute=True):
        run = queue_preview(job, upload=handle, upload_name="drums.csv")
    run.refresh_from_db()
    assert run.status == "previewed", run.error
    assert run.source_name == "drums.csv"
    assert run.changes.get().after["sku"] == "Z9"
    apply_run.delay(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert Product.objects.filter(sku="Z9").exists()


def test_a_preview_applies_once(make_job, write_csv):
    """A second apply of the same preview (another tab, a duplicate task) is refused and
    leaves the record of the first one as it is."""
    import pytest

    from djsync.exceptions import RunStateError
    from djsync.models import SyncRun
    from djsync.runs.orchestrator import apply_previewed

    job = make_job("test_products")
    path = write_csv(
        [{"sku": "Q1", "name": "Bell", "price": "3", "qty": "1", "updated": "", "active": "yes"}]
    )
    preview = djsync.run(job, file=path, dry_run=True)
    stale_copy = SyncRun.objects.get(pk=preview.pk)  # what a second request loaded earlier
    apply_previewed(preview)
    with pytest.raises(RunStateError, match="succeeded"):
        apply_previewed(stale_copy)
    record = SyncRun.objects.get(pk=preview.pk)
    assert record.status == "succeeded" and record.error == ""
    assert Product.objects.filter(sku="Q1").count() == 1

"""Mails about runs (Django's locmem backend): failures, warn on change, and mail failures."""

from __future__ import annotations

import socket

import pytest
from django.core import mail

import djsync
from djsync.exceptions import SourceError

pytestmark = pytest.mark.django_db


def product_rows(*skus: str, price: str = "1.00") -> list[dict[str, str]]:
    return [
        {"sku": s, "name": f"Product {s}", "price": price, "qty": "1", "updated": "", "active": "1"}
        for s in skus
    ]


def test_a_failed_run_mails_its_recipients(make_job):
    job = make_job(
        "test_products",
        source={"path": "nowhere/products.csv"},
        notify_on_failure=["ops@example.com", "data@example.com"],
    )
    with pytest.raises(SourceError):
        djsync.run(job)
    (message,) = mail.outbox
    run = job.runs.get()
    assert message.subject == f"[djsync] test-products: run #{run.pk} failed"
    assert message.to == ["ops@example.com", "data@example.com"]
    assert "nowhere/products.csv: file not found" in message.body


def test_warn_on_change_mails_the_first_changes_per_model_and_the_counts(
    make_job, write_csv, settings
):
    settings.DJSYNC = {**settings.DJSYNC, "SAMPLE_CHANGES": 2}
    job = make_job("test_products", notify_on_failure=["ops@example.com"], warn_on_change=True)
    djsync.run(job, file=write_csv(product_rows("A1", "A2", "A3")))
    (message,) = mail.outbox
    assert message.subject.endswith("changed 3 rows")
    assert "testapp.Product: 3 created, 0 updated, 0 deleted, 0 unchanged, 0 row errors" in (
        message.body
    )
    assert "+ create testapp.Product [A1]" in message.body
    assert "+ create testapp.Product [A2]" in message.body
    assert "[A3]" not in message.body and "… and 1 more" in message.body

    mail.outbox.clear()
    djsync.run(job, file=write_csv(product_rows("A1", "A2", "A3")))  # unchanged
    djsync.run(job, file=write_csv(product_rows("A1", price="2")), dry_run=True)  # a preview
    assert mail.outbox == []
    djsync.run(job, file=write_csv(product_rows("A1", "A2", "A3", price="2")))
    assert "~ update testapp.Product [A1] price: '1.00' → '2.00'" in mail.outbox[0].body


def test_changes_send_no_mail_without_warn_on_change(make_job, write_csv):
    job = make_job("test_products", notify_on_failure=["ops@example.com"])
    djsync.run(job, file=write_csv(product_rows("A1")))
    assert mail.outbox == []


def test_a_mail_that_cannot_be_sent_never_fails_the_sync(make_job, write_csv, settings, caplog):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 5
    job = make_job("test_products", notify_on_failure=["ops@example.com"], warn_on_change=True)
    run = djsync.run(job, file=write_csv(product_rows("A1")))
    assert run.status == "succeeded" and run.created == 1
    assert "could not send the notification" in caplog.text

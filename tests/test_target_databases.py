"""A model on another database alias as the target: database → database, on the staged path.

A job (data) picks the alias in its target, ``{"database": "other"}``, only among the
aliases its importer's ``Meta.databases`` (code) allows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connections

import djsync
from djsync.exceptions import ConfigurationError
from djsync.mapping.registry import register, unregister
from djsync.models import SyncJob
from tests.testapp.models import Product
from tests.testapp.sync import ProductImporter

pytestmark = pytest.mark.django_db(databases=["default", "other"], transaction=True)


class MirrorImporter(ProductImporter):
    class Meta(ProductImporter.Meta):
        name = "test_mirror"
        databases = ["other"]


@pytest.fixture(autouse=True)
def mirror() -> Iterator[None]:
    register(MirrorImporter)
    yield
    unregister("test_mirror")


def mirror_rows(count: int) -> list[dict[str, Any]]:
    return [
        {
            "sku": f"P{i}",
            "name": f"Item {i}",
            "price": "1.50",
            "qty": i,
            "updated": "",
            "active": "1",
        }
        for i in range(count)
    ]


def _products(using: str) -> list[tuple[str, str, int]]:
    return list(Product.objects.using(using).order_by("sku").values_list("sku", "name", "qty"))


def test_a_file_syncs_into_the_model_on_the_alias_the_job_picks(
    make_job: Any, write_csv: Any, job_path: Any
) -> None:
    rows = mirror_rows(5)
    job = make_job(
        "test_mirror", source={"path": job_path(write_csv(rows))}, target={"database": "other"}
    )
    run = djsync.run(job)
    assert run.created == 5
    assert len(_products("other")) == 5 and _products("default") == []
    vendor = connections["other"].vendor
    assert run.stats["testapp.Product"]["path"] == f"staged: {vendor}"


def test_database_to_database_with_the_staged_path_and_a_second_run_unchanged(
    make_job: Any, settings: Any
) -> None:
    for i in range(20):
        Product.objects.create(sku=f"S{i:02}", name=f"Source {i}", price=2, qty=i)
    settings.DJSYNC = {
        **settings.DJSYNC,
        "SQL_QUERIES": {
            "catalogue": {
                "query": "SELECT sku, name, price, qty, updated, active FROM testapp_product",
                "using": "default",
            }
        },
    }
    job = make_job(
        "test_mirror",
        source={"kind": "sql", "query": "catalogue"},
        target={"database": "other"},
    )
    first = djsync.run(job)
    assert first.created == 20
    assert _products("other") == _products("default")
    assert first.stats["testapp.Product"]["path"].startswith("staged: ")
    Product.objects.filter(sku="S03").update(name="Renamed")
    Product.objects.filter(sku="S04").delete()
    second = djsync.run(job)
    assert (second.updated, second.deleted, second.unchanged) == (1, 1, 18)
    assert _products("other") == _products("default")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"database": "default"}, "may not write to database 'default'"),
        ({"database": "nowhere"}, "may not write to database 'nowhere'"),
        ({"db": "other"}, "not db"),
    ],
)
def test_a_job_picks_only_an_alias_the_importer_allows(
    make_job: Any, target: dict[str, Any], message: str
) -> None:
    job = make_job("test_mirror", source={"path": "x.csv"}, target=target)
    with pytest.raises(ConfigurationError, match=message):
        djsync.run(job)
    with pytest.raises(ValidationError) as caught:
        SyncJob(name="x", importer="test_mirror", target=target).full_clean()
    assert "target" in caught.value.message_dict


def test_a_preview_of_the_other_alias_is_stored_and_applied(
    make_job: Any, write_csv: Any, job_path: Any
) -> None:
    from djsync.runs.orchestrator import apply_previewed

    rows = mirror_rows(3)
    job = make_job(
        "test_mirror", source={"path": job_path(write_csv(rows))}, target={"database": "other"}
    )
    preview = djsync.run(job, dry_run=True)
    assert preview.stats["testapp.Product"]["path"].startswith("staged: ")
    stored = list(preview.changes.order_by("key").values_list("action", "key", "after"))
    assert [(a, k) for a, k, _ in stored] == [
        ("create", ["P0"]),
        ("create", ["P1"]),
        ("create", ["P2"]),
    ]
    assert stored[1][2]["name"] == "Item 1" and stored[1][2]["price"] == "1.50"
    assert _products("other") == []
    applied = apply_previewed(preview)
    assert applied.status == "succeeded"
    assert [sku for sku, _, _ in _products("other")] == ["P0", "P1", "P2"]


def test_the_job_form_takes_an_allowed_alias_and_refuses_another() -> None:
    from djsync.forms import SyncJobForm

    def form(target: str) -> SyncJobForm:
        data = {"name": "mirror", "importer": ["test_mirror"], "source": "{}", "target": target}
        return SyncJobForm(data=data)

    good = form('{"database": "other"}')
    assert good.is_valid(), good.errors
    assert good.cleaned_data["target"] == {"database": "other"}
    bad = form('{"database": "default"}')
    assert not bad.is_valid()
    assert "may not write to database 'default'" in " ".join(bad.errors["target"])
    unknown = form('{"db": "other"}')
    assert not unknown.is_valid() and "Unknown target options: db" in str(unknown.errors)

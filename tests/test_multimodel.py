"""Multi-model jobs: parents before children, one transaction, one run; derived sources."""

from __future__ import annotations

import pytest

import djsync
from djsync.exceptions import ConfigurationError, RowErrorsFound
from djsync.runs.orchestrator import apply_previewed
from tests.testapp.models import Category, Product


def products(*rows: tuple) -> list[dict]:
    return [
        {
            "sku": sku,
            "name": name,
            "price": "1",
            "qty": "1",
            "updated": "",
            "active": "yes",
            "category_code": cat,
            "category_name": cat.title() if cat else "",
        }
        for sku, name, cat in rows
    ]


@pytest.fixture
def files(write_csv):
    def write(cats: list[tuple], prods: list[tuple]) -> dict:
        return {
            "sources": {
                "test_categories": {
                    "path": write_csv([{"code": c, "name": n} for c, n in cats], "cats.csv").name
                },
                "test_products": {"path": write_csv(products(*prods), "products.csv").name},
            }
        }

    return write


def test_children_may_refer_to_parents_created_in_the_same_run(make_job, files):
    # Named children first on purpose: the job still runs categories first.
    job = make_job(
        "test_products, test_categories",
        name="catalogue",
        source=files(
            [("tools", "Tools"), ("toys", "Toys")], [("A", "Saw", "tools"), ("B", "Kite", "toys")]
        ),
    )
    run = djsync.run(job)
    assert run.status == "succeeded", run.error
    assert run.stats["testapp.Category"]["created"] == 2
    assert run.stats["testapp.Product"]["created"] == 2
    assert run.counts["created"] == 4
    assert job.runs.count() == 1
    assert Product.objects.get(sku="A").category.code == "tools"
    assert list(run.changes.values_list("model", flat=True).distinct().order_by("model")) == [
        "testapp.Category",
        "testapp.Product",
    ]


def test_a_bad_child_row_writes_nothing_at_all(make_job, files):
    job = make_job(
        "test_categories, test_products",
        name="catalogue",
        source=files([("tools", "Tools")], [("A", "Saw", "tools"), ("B", "Kite", "nope")]),
    )
    with pytest.raises(RowErrorsFound, match="no category with code 'nope'"):
        djsync.run(job)
    assert not Category.objects.exists() and not Product.objects.exists()


def test_preview_then_apply_both_models(make_job, files):
    job = make_job(
        "test_categories, test_products",
        name="catalogue",
        source=files([("tools", "Tools")], [("A", "Saw", "tools")]),
    )
    preview = djsync.run(job, dry_run=True)
    assert preview.status == "previewed", preview.error
    assert preview.counts["created"] == 2
    assert not Category.objects.exists()
    applied = apply_previewed(preview)
    assert applied.status == "succeeded", applied.error
    assert Product.objects.get(sku="A").category.code == "tools"


def test_deletes_run_children_first(make_job, files):
    job = make_job(
        "test_categories, test_products",
        name="catalogue",
        source=files(
            [("tools", "Tools"), ("toys", "Toys")], [("A", "Saw", "tools"), ("B", "Kite", "toys")]
        ),
        delete=True,
    )
    djsync.run(job)
    job.source = files([("tools", "Tools")], [("A", "Saw", "tools")])
    job.save()
    run = djsync.run(job, force=True)  # half the rows go: past the default delete guard
    assert run.status == "succeeded", run.error
    assert run.stats["testapp.Category"]["deleted"] == 1
    assert run.stats["testapp.Product"]["deleted"] == 1
    assert list(Category.objects.values_list("code", flat=True)) == ["tools"]


def test_parents_derived_from_the_children_file(make_job, write_csv):
    path = write_csv(
        products(
            ("A", "Saw", "tools"), ("B", "Axe", "tools"), ("C", "Kite", "toys"), ("D", "Cup", "")
        ),
        "products.csv",
    )
    job = make_job(
        "test_categories, test_products",
        name="catalogue",
        source={
            "path": path.name,
            "sources": {
                "test_categories": {
                    "kind": "derived",
                    "from": "test_products",
                    "columns": {"code": "category_code", "name": "category_name"},
                }
            },
        },
    )
    run = djsync.run(job)
    assert run.status == "succeeded", run.error
    assert sorted(Category.objects.values_list("code", "name")) == [
        ("tools", "Tools"),
        ("toys", "Toys"),
    ]
    assert run.stats["testapp.Category"]["created"] == 2
    assert Product.objects.filter(category__code="tools").count() == 2
    assert Product.objects.get(sku="D").category is None


def test_derived_values_that_disagree_are_duplicate_keys(make_job, write_csv):
    rows = products(("A", "Saw", "tools"), ("B", "Axe", "tools"))
    rows[1]["category_name"] = "Hardware"
    job = make_job(
        "test_categories, test_products",
        name="catalogue",
        source={
            "path": write_csv(rows, "p.csv").name,
            "sources": {
                "test_categories": {
                    "kind": "derived",
                    "from": "test_products",
                    "columns": {"code": "category_code", "name": "category_name"},
                }
            },
        },
    )
    with pytest.raises(RowErrorsFound, match="duplicate key 'tools'"):
        djsync.run(job)
    assert not Category.objects.exists()


def test_one_file_for_the_run_is_read_by_each_importer_reading_the_jobs_file(
    make_job, write_csv
):
    job = make_job(
        "test_categories, test_products",
        name="catalogue",
        source={
            "sources": {
                "test_categories": {
                    "kind": "derived",
                    "from": "test_products",
                    "columns": {"code": "category_code", "name": "category_name"},
                }
            }
        },
    )
    run = djsync.run(job, file=write_csv(products(("A", "Saw", "tools")), "upload.csv"))
    assert run.status == "succeeded", run.error
    assert Product.objects.get(sku="A").category.name == "Tools"


def test_bad_multi_model_setups(make_job, write_csv):
    job = make_job("test_categories, test_products", name="catalogue", source={})
    with pytest.raises(ConfigurationError, match="importer test_categories has no source"):
        djsync.run(job)
    own = {"sources": {"test_categories": {"path": "c.csv"}, "test_products": {"path": "p.csv"}}}
    job.source = own
    job.save()
    with pytest.raises(ConfigurationError, match="gives each importer a file of its own"):
        djsync.run(job, file=write_csv([{"code": "x", "name": "y"}]))
    twice = make_job("test_categories, test_categories", name="twice", source={"path": "x.csv"})
    with pytest.raises(ConfigurationError, match="names one model twice"):
        djsync.run(twice)

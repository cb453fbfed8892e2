"""Which header feeds which column: the run's own matching (column, case, aliases, a saved
mapping) and the mapping step's proposals (normalized names, similarity, ambiguity)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command

import djsync
from djsync.checks import importer_problems
from djsync.mapping.columns import (
    needs_mapping,
    normalize,
    propose,
    remember,
    saved_for,
    signature,
)
from djsync.mapping.registry import get_importer_class
from djsync.models import SyncJob, SyncRun
from tests.testapp.models import Product


def importer(name: str = "test_products_aliased"):
    return get_importer_class(name)()


def proposals(headers: list[str], saved: dict[str, str] | None = None, name: str = "") -> dict:
    imp = importer(name or "test_products_aliased")
    fields = list(imp.bound_fields.values())
    found = propose(
        fields, headers, required=[f.name for f in fields if imp.requires(f)], saved=saved
    )
    return {p.field: p for p in found}


def picked(headers: list[str], **kwargs) -> dict[str, tuple[str | None, str]]:
    return {name: (p.header, p.how) for name, p in proposals(headers, **kwargs).items()}


def test_normalized_names_ignore_case_accents_spaces_underscores_and_hyphens():
    assert normalize("Prix_unitaire (€)") == normalize("prix-unitaire €") == "prixunitaire"
    assert normalize("Désignation") == normalize("DESIGNATION") == "designation"
    assert normalize("E-mail") == normalize("e_mail") == normalize("Email ") == "email"


def test_a_run_matches_the_column_in_any_case_then_the_declared_aliases():
    found = picked(["SKU", "Désignation", "Prix", "quantity", "notes"])
    assert found == {
        "sku": ("SKU", "column"),
        "name": ("Désignation", "alias"),
        "price": ("Prix", "alias"),
        "qty": ("quantity", "alias"),
    }
    assert not needs_mapping(list(proposals(["SKU", "Désignation", "Prix", "notes"]).values()))


def test_the_step_proposes_normalized_names_and_aliases_that_a_run_does_not_match():
    found = picked(["item_no", "designation", "unit-price"])
    assert found == {
        "sku": ("item_no", "normalized"),  # the alias "Item no"
        "name": ("designation", "normalized"),  # the alias "Désignation", unaccented
        "price": ("unit-price", "normalized"),
        "qty": (None, ""),
    }
    found = proposals(["item_no", "designation", "unit-price"])
    assert needs_mapping(list(found.values()))
    assert (found["sku"].via, found["sku"].by_alias) == ("Item no", True)  # said on the page


def test_similar_names_are_proposed_conservatively():
    found = picked(["sku", "nme", "pricee", "qt"])
    assert found["name"] == ("nme", "similar")
    assert found["price"] == ("pricee", "similar")
    assert found["qty"] == (None, "")  # "qt" is too short to be sure of
    assert picked(["sku", "name", "cost"])["price"] == (None, "")


def test_two_headers_that_fit_equally_propose_nothing_and_say_which():
    found = proposals(["Item-No", "item_no", "name", "price"])
    assert found["sku"].header is None
    assert found["sku"].ambiguous == ["Item-No", "item_no"]
    assert needs_mapping(list(found.values()))


def test_a_header_is_proposed_for_one_column_at_most():
    # "price" is price's own column; qty must not get it by resemblance.
    found = picked(["sku", "name", "price"])
    assert found["price"] == ("price", "column") and found["qty"] == (None, "")
    assert not needs_mapping(list(proposals(["sku", "name", "price"]).values()))


def test_an_optional_column_found_by_resemblance_asks_for_the_step():
    found = proposals(["sku", "name", "price", "Qty."])  # "Qty." is qty, normalized
    assert (found["qty"].header, found["qty"].how) == ("Qty.", "normalized")
    assert needs_mapping(list(found.values()))


def test_a_saved_mapping_applies_to_the_same_header_set_in_any_order():
    headers = ["Ref", "Label", "Cost", "Notes"]
    entries = remember([], headers, {"sku": "Ref", "name": "Label", "price": "Cost", "qty": ""})
    assert signature(headers) == signature(list(reversed(headers)))
    saved = saved_for(entries, ["Notes", "Cost", "Label", "Ref"])
    assert saved == {"sku": "Ref", "name": "Label", "price": "Cost", "qty": ""}
    assert saved_for(entries, ["Ref", "Label", "Cost"]) is None  # another set
    found = picked(headers, saved=saved)
    assert found == {
        "sku": ("Ref", "saved"),
        "name": ("Label", "saved"),
        "price": ("Cost", "saved"),
        "qty": (None, ""),  # confirmed: not in this file
    }


def test_saved_mappings_are_bounded_newest_kept():
    entries: list = []
    for n in range(30):
        entries = remember(entries, [f"h{n}"], {"sku": f"h{n}"})
    assert len(entries) == 20
    assert saved_for(entries, ["h29"]) == {"sku": "h29"}
    assert saved_for(entries, ["h0"]) is None
    again = remember(entries, ["h29"], {"sku": ""})
    assert len(again) == 20 and saved_for(again, ["h29"]) == {"sku": ""}


def test_manage_py_check_refuses_an_alias_two_fields_share():
    class Clashing(djsync.Importer):
        sku = djsync.Field(aliases=["Ref"])
        name = djsync.Field(aliases=["ref", "SKU"])
        price = djsync.Field(aliases=[""])

        class Meta:
            model = Product
            keys = ["sku"]

    problems = importer_problems(Clashing)
    assert "field 'name': alias 'ref' is already the column or an alias of field 'sku'" in problems
    assert "field 'name': alias 'SKU' is already the column or an alias of field 'sku'" in problems
    assert "field 'price': an alias is a header's name, not ''" in problems
    assert importer_problems(get_importer_class("test_products_aliased")) == []


def test_runsync_reads_a_file_through_the_jobs_saved_mapping(make_job, tmp_path: Path):
    job = make_job("test_products_aliased", name="aliased")
    headers = ["Ref", "Label", "Cost"]
    job.column_mapping = {
        "test_products_aliased": remember(
            [], headers, {"sku": "Ref", "name": "Label", "price": "Cost"}
        )
    }
    job.save()
    path = tmp_path / "prices.csv"
    path.write_text("Cost,Ref,Label\n9.50,K1,Kite\n", encoding="utf-8")
    call_command("runsync", "aliased", "--file", str(path), stdout=None)
    kite = Product.objects.get(sku="K1")
    assert (kite.name, str(kite.price)) == ("Kite", "9.50")

    # Another header set is not read through it: the missing columns are named.
    path.write_text("Ref,Label,Cost,Extra\nK2,Kite,1,x\n", encoding="utf-8")
    with pytest.raises(Exception, match=r"missing columns 'sku', 'name', 'price'"):
        call_command("runsync", "aliased", "--file", str(path))
    assert not Product.objects.filter(sku="K2").exists()


@pytest.mark.django_db(transaction=True)
def test_a_queued_run_reads_through_the_saved_mapping(make_job, tmp_path: Path):
    """runsync --async: the Celery worker (eager here) builds its importer the same way."""
    job = make_job("test_products_aliased", name="aliased")
    headers = ["Ref", "Label", "Cost"]
    SyncJob.objects.filter(pk=job.pk).update(
        column_mapping={
            "test_products_aliased": remember(
                [], headers, {"sku": "Ref", "name": "Label", "price": "Cost"}
            )
        }
    )
    path = tmp_path / "prices.csv"
    path.write_text("Ref,Label,Cost\nQ1,Queued,2\n", encoding="utf-8")
    call_command("runsync", "aliased", "--async", "--file", str(path), stdout=None)
    run = SyncRun.objects.get()
    assert run.status == "succeeded", run.error
    assert Product.objects.get(sku="Q1").name == "Queued"

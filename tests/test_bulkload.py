"""A large initial load builds the target table's indexes after its rows
(djsync/backends/bulkload.py): the same rows, the same indexes and constraints after, and
the table as it was when the run fails, when the table is busy or not empty."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction

import djsync
from djsync.models import SyncJob, SyncRun
from djsync.runs.orchestrator import apply_previewed
from djsync.signals import batch_applied
from tests.testapp.models import Category, Product

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's DDL"),
]

#: The table's indexes and constraints as PostgreSQL describes them, and their oids: a
#: rebuilt index has the same definition under a new oid.
INDEXES = """
SELECT ic.relname, pg_get_indexdef(i.indexrelid), i.indexrelid::bigint
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = 'testapp_product'::regclass ORDER BY ic.relname
"""
CONSTRAINTS = """
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = 'testapp_product'::regclass ORDER BY conname
"""


def indexes() -> tuple[dict[str, str], dict[str, int], list[tuple[str, str]]]:
    """(definition by index, oid by index, constraints) of the products table."""
    with connection.cursor() as cursor:
        cursor.execute(INDEXES)
        rows = cursor.fetchall()
        cursor.execute(CONSTRAINTS)
        constraints = cursor.fetchall()
    return {n: d for n, d, _ in rows}, {n: o for n, _, o in rows}, constraints


def products_file(tmp_path: Path, n: int = 300, first: int = 0) -> Path:
    path = tmp_path / "products.csv"
    lines = ["sku,name,price,qty,updated,active"]
    lines += [f"P{i:05d},Product {i},{i % 50}.25,{i % 7},2024-01-02,1" for i in range(first, n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def rows() -> list[tuple]:
    return list(Product.objects.order_by("pk").values_list("pk", "sku", "name", "price", "qty"))


@pytest.fixture
def job(db: None) -> SyncJob:
    return SyncJob.objects.create(name="products", importer="test_products", allow_delete=True)


@pytest.fixture
def rebuild(settings: Any) -> None:
    settings.DJSYNC = {**settings.DJSYNC, "FAST_PATH_REBUILD_INDEXES": 100}


def reset_ids() -> None:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE testapp_product RESTART IDENTITY CASCADE")


def test_an_initial_load_rebuilds_the_indexes_with_the_same_rows_and_definitions(
    job: SyncJob, tmp_path: Path, settings: Any
) -> None:
    path = products_file(tmp_path)
    settings.DJSYNC = {**settings.DJSYNC, "FAST_PATH_REBUILD_INDEXES": None}
    reset_ids()
    before, oids, constraints = indexes()
    plain = djsync.run(job, file=str(path))
    expected = rows()
    assert indexes()[1] == oids  # off: nothing rebuilt
    reset_ids()
    settings.DJSYNC = {**settings.DJSYNC, "FAST_PATH_REBUILD_INDEXES": 100}
    run = djsync.run(job, file=str(path))
    assert run.counts == plain.counts == {**plain.counts, "created": 300}
    assert rows() == expected  # the same rows under the same ids, in file order
    after, new_oids, new_constraints = indexes()
    assert after == before and new_constraints == constraints
    rebuilt = {name for name in oids if new_oids[name] != oids[name]}
    assert "testapp_product_sku_key" in rebuilt  # the unique constraint's index
    assert any(name.endswith("_like") for name in rebuilt)  # Django's LIKE index
    assert any("category_id" in name for name in rebuilt)  # the foreign key's index
    # The new unique index holds: a second row of a loaded key is refused by PostgreSQL.
    with pytest.raises(Exception, match="testapp_product_sku_key"):
        Product.objects.create(sku="P00001", name="twice", price=Decimal("1"))


def test_an_index_another_table_depends_on_is_left_in_place(
    job: SyncJob, tmp_path: Path, rebuild: None
) -> None:
    reset_ids()
    with connection.cursor() as cursor:  # a foreign key of another table on the sku
        cursor.execute(
            "CREATE TABLE bulkload_ref (sku varchar(32) REFERENCES testapp_product (sku))"
        )
    try:
        _, oids, _ = indexes()
        djsync.run(job, file=str(products_file(tmp_path)))
        _, new_oids, _ = indexes()
        assert new_oids["testapp_product_sku_key"] == oids["testapp_product_sku_key"]
        assert any(new_oids[n] != oids[n] for n in oids if n.endswith("_like"))
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE bulkload_ref")


def reader() -> psycopg.Connection:
    """A second connection to the test database, that waits for no lock over 200 ms."""
    params = connection.get_connection_params()
    conn = psycopg.connect(
        host=params.get("host"),
        port=params.get("port"),
        user=params.get("user"),
        dbname=params["dbname"],
        password=params.get("password"),
        autocommit=True,
    )
    conn.execute("SET lock_timeout = '200ms'")
    return conn


def test_a_table_holding_rows_or_a_small_load_keeps_its_indexes_and_its_readers(
    job: SyncJob, tmp_path: Path, rebuild: None
) -> None:
    reset_ids()
    _, oids, _ = indexes()
    djsync.run(job, file=str(products_file(tmp_path, n=99)))  # under the threshold
    assert indexes()[1] == oids
    other = reader()
    try:
        with transaction.atomic():  # the run's transaction still open after the run
            djsync.run(job, file=str(products_file(tmp_path, n=500)))  # 401 creates, 99 there
            # The table was found holding rows: its lock was let go at once.
            assert other.execute("SELECT count(*) FROM testapp_product").fetchone() == (99,)
    finally:
        other.close()
    assert indexes()[1] == oids
    assert Product.objects.count() == 500


def test_a_failed_run_leaves_the_table_and_its_indexes_as_they_were(
    job: SyncJob, tmp_path: Path, rebuild: None
) -> None:
    reset_ids()
    Category.objects.all().delete()
    before, oids, constraints = indexes()

    def fail(**kwargs: Any) -> None:
        raise RuntimeError("a receiver failed after the rows were written")

    batch_applied.connect(fail, sender=Product, dispatch_uid="bulkload-fail")
    try:
        with pytest.raises(Exception, match="receiver failed"):
            djsync.run(job, file=str(products_file(tmp_path)))
    finally:
        batch_applied.disconnect(sender=Product, dispatch_uid="bulkload-fail")
    assert Product.objects.count() == 0
    assert indexes() == (before, oids, constraints)


def test_a_busy_table_is_loaded_with_its_indexes_in_place(
    job: SyncJob, tmp_path: Path, rebuild: None
) -> None:
    """A reader holding the table (an open transaction that read it): the run waits for
    it at most a second, then inserts with the indexes in place."""
    reset_ids()
    _, oids, _ = indexes()
    other = reader()
    try:
        with other.transaction():
            other.execute("SELECT count(*) FROM testapp_product").fetchone()  # ACCESS SHARE
            run = djsync.run(job, file=str(products_file(tmp_path)))
            assert run.counts["created"] == 300
    finally:
        other.close()
    assert indexes()[1] == oids  # the lock was busy: the plain INSERT
    assert Product.objects.count() == 300


def test_an_applied_preview_of_parents_and_children_rebuilds_both_tables(
    make_job: Any, write_csv: Any, settings: Any
) -> None:
    """A multi-model job applied from its preview: the categories and the products that
    reference them, created in one transaction; the products' deferred foreign keys are
    checked when their rows are in, against categories the same run created."""
    settings.DJSYNC = {**settings.DJSYNC, "FAST_PATH_REBUILD_INDEXES": 2}
    reset_ids()
    Category.objects.all().delete()
    cats = write_csv([{"code": f"C{i}", "name": f"Cat {i}"} for i in range(3)], "c.csv")
    prods = write_csv(
        [
            {"sku": f"P{i}", "name": f"P{i}", "price": "1.50", "qty": "1",
             "category_code": f"C{i % 3}", "updated": "", "active": "true"}
            for i in range(6)
        ],
        "p.csv",
    )  # fmt: skip
    job = make_job(
        "test_products, test_categories",
        name="catalogue",
        source={"sources": {"test_categories": {"path": cats.name},
                            "test_products": {"path": prods.name}}},
    )  # fmt: skip
    before, oids, constraints = indexes()
    preview = djsync.run(job, dry_run=True)
    applied = apply_previewed(preview)
    assert applied.status == SyncRun.Status.SUCCEEDED, applied.error
    assert applied.stats["testapp.Product"]["path"].startswith("staged:")
    assert sorted(Product.objects.values_list("sku", "category__code")) == [
        (f"P{i}", f"C{i % 3}") for i in range(6)
    ]
    after, new_oids, new_constraints = indexes()
    assert (after, new_constraints) == (before, constraints)
    assert new_oids["testapp_product_sku_key"] != oids["testapp_product_sku_key"]


def test_a_role_that_does_not_own_the_table_loads_it_with_its_indexes_in_place(
    job: SyncJob, tmp_path: Path, rebuild: None
) -> None:
    """The run's database role may write the table but not alter it (it is not the
    owner): the drop is refused inside a savepoint and the plain INSERT writes the rows."""
    reset_ids()
    before, oids, constraints = indexes()
    with connection.cursor() as cursor:
        cursor.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
            "'djsync_test_writer') THEN CREATE ROLE djsync_test_writer; END IF; END $$"
        )
        cursor.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO djsync_test_writer")
        cursor.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO djsync_test_writer")
        name = connection.ops.quote_name(connection.settings_dict["NAME"])
        cursor.execute(f"GRANT CREATE, TEMPORARY ON DATABASE {name} TO djsync_test_writer")
        cursor.execute("SET ROLE djsync_test_writer")
    try:
        run = djsync.run(job, file=str(products_file(tmp_path)))
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.counts["created"] == 300
    assert indexes() == (before, oids, constraints)

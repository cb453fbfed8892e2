"""Hostile job definitions: a job's source and target (data) cannot reach what the site's
developers did not declare. Each case asserts the one-line message and that nothing was
read or written, on PostgreSQL and SQLite."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connections

import djsync
from djsync.exceptions import ConfigurationError, DjsyncError, SourceError
from djsync.models import SyncJob
from djsync.sources import Source, get_source, register_source, source_kinds
from tests.testapp.models import Category, Product

pytestmark = pytest.mark.django_db(databases=["default", "other"])

ROOTS = 'DJSYNC["FILE_ROOTS"]'
SECRET = "sku,name,price,qty,updated,active\nSECRET,top secret,1,1,,true\n"
OK = "sku,name,price,qty,updated,active\nA1,Saw,5,1,,true\n"


@pytest.fixture
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder outside the job's file root, with a file that must never be read."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "secret.csv").write_text(SECRET)
    return folder


@pytest.fixture
def root(file_root: Path) -> Path:
    (file_root / "ok.csv").write_text(OK)
    (file_root / "sub").mkdir()
    return file_root


def state() -> tuple[Any, ...]:
    """What a hostile job must leave as it was."""
    return (
        list(Product.objects.values_list("sku", "price")),
        list(Category.objects.values_list("code", "name")),
        Product.objects.using("other").count(),
        list(User.objects.values_list("username", "password")),
    )


def refused(
    make_job: Callable[..., SyncJob],
    importer: str = "test_products",
    name: str = "hostile",
    **fields: Any,
) -> str:
    """Run a hostile job: refused with one line, the run failed, nothing written."""
    before = state()
    job = make_job(importer, name=name, **fields)
    with pytest.raises(DjsyncError) as info:
        djsync.run(job)
    message = str(info.value)
    assert "\n" not in message
    assert info.value.run.status == "failed" and info.value.run.error == message
    assert "SECRET" not in message and "top secret" not in message
    assert state() == before
    return message


# -- files ---------------------------------------------------------------------------------


def _symlink_out(root: Path, outside: Path) -> str:
    (root / "link.csv").symlink_to(outside / "secret.csv")
    return "link.csv"


def _symlinked_folder(root: Path, outside: Path) -> str:
    (root / "shared").symlink_to(outside, target_is_directory=True)
    return "shared/secret.csv"


def _symlink_to_device(root: Path, outside: Path) -> str:
    (root / "zero.csv").symlink_to("/dev/zero")
    return "zero.csv"


def _chained_symlinks(root: Path, outside: Path) -> str:
    (root / "sub" / "hop").symlink_to(outside / "secret.csv")
    (root / "first.csv").symlink_to(root / "sub" / "hop")
    return "first.csv"


def _fifo(root: Path, outside: Path) -> str:
    os.mkfifo(root / "pipe.csv")  # opening it would block the run forever
    return "pipe.csv"


def _folder(root: Path, outside: Path) -> str:
    return "sub"


LEAVES = "source path {path!r} leaves its root 'tests' (" + ROOTS + ")"
ABSOLUTE = (
    "source path {path!r} is absolute; give a path relative to the root 'tests' (" + ROOTS + ")"
)
NOT_REGULAR = "source path {path!r} is not a regular file"

FILE_CASES: list[tuple[str, Callable[[Path, Path], str], str]] = [
    ("dot-dot", lambda r, o: os.path.relpath(o / "secret.csv", r), LEAVES),
    (
        "dot-dot-after-a-folder",
        lambda r, o: "sub/../" + os.path.relpath(o / "secret.csv", r),
        LEAVES,
    ),
    ("dot-dot-to-etc", lambda r, o: "../" * 30 + "etc/passwd", LEAVES),
    ("absolute-outside", lambda r, o: str(o / "secret.csv"), ABSOLUTE),
    ("absolute-etc-passwd", lambda r, o: "/etc/passwd", ABSOLUTE),
    ("absolute-inside-the-root", lambda r, o: str(r / "ok.csv"), ABSOLUTE),
    ("home", lambda r, o: "~/secret.csv", ABSOLUTE),
    ("backslash", lambda r, o: "\\etc\\passwd", ABSOLUTE),
    ("symlink-out", _symlink_out, LEAVES),
    ("symlinked-folder", _symlinked_folder, LEAVES),
    ("chained-symlinks", _chained_symlinks, LEAVES),
    ("symlink-to-a-device", _symlink_to_device, LEAVES),
    ("fifo", _fifo, NOT_REGULAR),
    ("a-folder", _folder, NOT_REGULAR),
    ("the-root-itself", lambda r, o: ".", NOT_REGULAR),
    ("proc-self-environ", lambda r, o: "../" * 30 + "proc/self/environ", LEAVES),
]


@pytest.mark.parametrize(
    "make_path,expected", [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES]
)
def test_a_job_cannot_read_a_file_outside_its_root(make_job, root, outside, make_path, expected):
    path = make_path(root, outside)
    message = refused(make_job, source={"path": path})
    assert message == "job 'hostile': " + expected.format(path=path)


def test_a_device_inside_the_root_is_not_read(make_job, root):
    try:
        os.mknod(root / "zero.csv", 0o600 | 0o020000, os.makedev(1, 5))  # like /dev/zero
    except (PermissionError, OSError):
        pytest.skip("cannot make a device node here")
    message = refused(make_job, source={"path": "zero.csv"})
    assert message == "job 'hostile': source path 'zero.csv' is not a regular file"


def test_a_nul_in_a_path_is_refused(root):
    # PostgreSQL cannot even store it in a job; the admin's form checks with get_source
    with pytest.raises(ConfigurationError) as info:
        get_source({"path": "ok.csv\x00../../etc/passwd"})
    assert str(info.value).endswith("contains a NUL character")


def test_a_root_that_is_a_symlink_holds(make_job, tmp_path_factory, settings, outside):
    real = tmp_path_factory.mktemp("real-root")
    (real / "ok.csv").write_text(OK)
    link = tmp_path_factory.mktemp("links") / "root"
    link.symlink_to(real, target_is_directory=True)
    settings.DJSYNC = {**settings.DJSYNC, "FILE_ROOTS": {"tests": str(link)}}
    escape = "../" + os.path.relpath(outside / "secret.csv", real.parent)
    message = refused(make_job, source={"path": escape})
    assert message == "job 'hostile': " + LEAVES.format(path=escape)
    run = djsync.run(
        SyncJob.objects.create(name="fine", importer="test_products", source={"path": "ok.csv"})
    )
    assert run.status == "succeeded" and Product.objects.get().sku == "A1"


def test_without_file_roots_a_job_names_no_file(make_job, settings, outside):
    settings.DJSYNC = {**settings.DJSYNC, "FILE_ROOTS": {}}
    message = refused(make_job, source={"path": str(outside / "secret.csv")})
    assert 'jobs cannot name files until DJSYNC["FILE_ROOTS"] declares a folder' in message


def test_several_roots_need_a_root_name(make_job, root, settings, tmp_path_factory):
    other = tmp_path_factory.mktemp("second")
    settings.DJSYNC = {
        **settings.DJSYNC,
        "FILE_ROOTS": {"tests": str(root), "second": str(other)},
    }
    message = refused(make_job, source={"path": "ok.csv"})
    assert message == (
        "job 'hostile': source path 'ok.csv': say which root (\"root\": one of 'second', "
        "'tests', from DJSYNC[\"FILE_ROOTS\"])"
    )
    message = refused(make_job, name="hostile-2", source={"root": "etc", "path": "passwd"})
    assert message == (
        "job 'hostile-2': no file root 'etc' in DJSYNC[\"FILE_ROOTS\"] (roots: 'second', 'tests')"
    )
    run = djsync.run(
        SyncJob.objects.create(
            name="fine", importer="test_products", source={"root": "tests", "path": "ok.csv"}
        )
    )
    assert run.status == "succeeded"


# -- options only code may set ------------------------------------------------------------

FILE_KEYS = "delimiter, encoding, format, kind, path, root, sheet"

OPTION_CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "file-python-only",
        {"path": "ok.csv", "file": "/etc/passwd"},
        f"a job's file source cannot set 'file' (it may set: {FILE_KEYS})",
    ),
    (
        "file-unknown-key",
        {"path": "ok.csv", "colour": "red", "name": "x"},
        f"a job's file source cannot set 'colour', 'name' (it may set: {FILE_KEYS})",
    ),
    (
        "unknown-kind",
        {"kind": "shell", "command": "cat /etc/passwd"},
        "unknown source kind 'shell' (known: {known})",
    ),
    (
        "kind-not-text",
        {"kind": ["file"], "path": "ok.csv"},
        "unknown source kind ['file'] (known: {known})",
    ),
    (
        "http-transport",
        {"kind": "http", "url": "https://example.com/", "transport": "x"},
        "a job's http source cannot set 'transport' (it may set: auth, backoff, headers, "
        "incremental, json, kind, max_pages, method, pagination, params, records, retries, "
        "timeout, url)",
    ),
    (
        "http-name",
        {"kind": "http", "url": "https://example.com/", "name": "x"},
        "a job's http source cannot set 'name' (it may set: auth, backoff, headers, "
        "incremental, json, kind, max_pages, method, pagination, params, records, retries, "
        "timeout, url)",
    ),
    (
        "queryset-on-auth-user",
        {"kind": "queryset", "model": "auth.User"},
        "a job's queryset source cannot set 'model' (it may set: chunk_size, incremental, "
        "kind, partition, queryset)",
    ),
    (
        "queryset-on-sessions",
        {
            "kind": "queryset",
            "model": "sessions.Session",
            "fields": ["session_key", "session_data"],
        },
        "a job's queryset source cannot set 'fields', 'model' (it may set: chunk_size, "
        "incremental, kind, partition, queryset)",
    ),
    (
        "queryset-filter-to-password",
        {
            "kind": "queryset",
            "queryset": "active_products",
            "filter": {"category__product__name__startswith": "p"},
        },
        "a job's queryset source cannot set 'filter' (it may set: chunk_size, incremental, "
        "kind, partition, queryset)",
    ),
    (
        "queryset-undeclared",
        {"kind": "queryset", "queryset": "users"},
        "no queryset 'users' declared on importer test_categories (querysets: 'active_products')",
    ),
    (
        "queryset-incremental-relation",
        {
            "kind": "queryset",
            "queryset": "active_products",
            "incremental": {"column": "user__password"},
        },
        "incremental column 'user__password' is not a plain column name (letters, digits and _, "
        "no relation path)",
    ),
    (
        "sql-raw",
        {"kind": "sql", "query": "SELECT password AS code, username AS name FROM auth_user"},
        'a job cannot run its own SQL; name a query of DJSYNC["SQL_QUERIES"] (declared: '
        "'feed', 'legacy_items', 'legacy_items_short')",
    ),
    (
        "sql-raw-update",
        {"kind": "sql", "query": "UPDATE testapp_product SET price = 0"},
        'a job cannot run its own SQL; name a query of DJSYNC["SQL_QUERIES"] (declared: '
        "'feed', 'legacy_items', 'legacy_items_short')",
    ),
    (
        "sql-session-table",
        {"kind": "sql", "query": "django_session"},
        "no SQL query 'django_session' in DJSYNC[\"SQL_QUERIES\"] (declared: 'feed', "
        "'legacy_items', 'legacy_items_short')",
    ),
    (
        "sql-using",
        {"kind": "sql", "query": "legacy_items", "using": "default"},
        "a job's sql source cannot set 'using' (it may set: chunk_size, incremental, kind, "
        "params, partition, query)",
    ),
    (
        "sql-partition-injection",
        {"kind": "sql", "query": "legacy_items", "partition": 'k" IS NULL OR "a'},
        "partition must be a plain column name (letters, digits and _), not 'k\" IS NULL OR \"a'",
    ),
    (
        "sql-incremental-injection",
        {"kind": "sql", "query": "legacy_items", "incremental": {"column": 'x" IS NULL OR "a'}},
        "incremental column 'x\" IS NULL OR \"a' is not a plain column name (letters, digits "
        "and _, no relation path)",
    ),
    (
        "sql-params-not-plain",
        {"kind": "sql", "query": "legacy_items", "params": [{"$gt": 1}]},
        "params must be a list of plain values (text, numbers, null)",
    ),
    (
        "derived-from-a-file-outside",
        {"kind": "derived", "columns": ["sku"], "from": {"path": "/etc/passwd"}},
        "source path '/etc/passwd' is absolute; give a path relative to the root 'tests' ("
        + ROOTS
        + ")",
    ),
    (
        "derived-from-raw-sql",
        {
            "kind": "derived",
            "columns": ["code"],
            "from": {"kind": "sql", "query": "SELECT 1 AS code"},
        },
        'a job cannot run its own SQL; name a query of DJSYNC["SQL_QUERIES"] (declared: '
        "'feed', 'legacy_items', 'legacy_items_short')",
    ),
    (
        "derived-from-an-importer-name",
        {"kind": "derived", "columns": ["code"], "from": "test_products"},
        "a derived source takes 'test_products' from another importer only in a multi-model job",
    ),
    (
        "derived-nested-too-deep",
        {
            "kind": "derived",
            "columns": ["code"],
            "from": {
                "kind": "derived",
                "columns": ["code"],
                "from": {
                    "kind": "derived",
                    "columns": ["code"],
                    "from": {"kind": "derived", "columns": ["code"], "from": {"path": "ok.csv"}},
                },
            },
        },
        'derived sources nest deeper than DJSYNC["MAX_SOURCE_NESTING"] (3)',
    ),
    (
        "source-not-an-object",
        ["ok.csv"],
        'source options are a JSON object, e.g. {"path": "x.csv"}',
    ),
    (
        "multi-model-entry-outside",
        {"sources": {"test_categories": {"path": "/etc/passwd"}}},
        "source path '/etc/passwd' is absolute; give a path relative to the root 'tests' ("
        + ROOTS
        + ")",
    ),
]


@pytest.mark.parametrize(
    "source,expected", [c[1:] for c in OPTION_CASES], ids=[c[0] for c in OPTION_CASES]
)
def test_a_job_sets_only_safe_options(make_job, root, source, expected):
    importer = "test_products"
    if isinstance(source, dict) and source.get("kind") == "queryset":
        importer = "test_categories"
    if isinstance(source, dict) and "sources" in source:
        importer = "test_categories, test_products"
    message = refused(make_job, importer=importer, source=source)
    # The built-in kinds, and any a test module registered (tests/celery_helpers.py: flaky).
    known = ", ".join(sorted(source_kinds()))
    assert {"derived", "file", "http", "queryset", "sql"} <= set(source_kinds())
    assert message == "job 'hostile': " + expected.replace("{known}", known)


def test_a_custom_kind_without_from_job_cannot_be_used_from_a_job(make_job, root):
    class Environment(Source):
        def __init__(self, variable: str) -> None:
            self.variable = variable

    register_source("environment", Environment)
    message = refused(make_job, source={"kind": "environment", "variable": "SECRET_KEY"})
    assert message == (
        "job 'hostile': source class Environment cannot be used from a job: it does not say "
        "which job options are safe (it needs a from_job() classmethod)"
    )
    assert isinstance(
        get_source({"kind": "environment", "variable": "X"}, trusted=True), Environment
    )  # from code it is fine


def test_a_declared_queryset_is_what_a_job_picks(make_job, root):
    Product.objects.using("other").create(sku="P1", name="Saw", price=1, active=True)
    Product.objects.using("other").create(sku="P2", name="Axe", price=1, active=False)
    job = make_job("test_categories", source={"kind": "queryset", "queryset": "active_products"})
    run = djsync.run(job)
    assert run.status == "succeeded", run.error
    assert list(Category.objects.values_list("code", "name")) == [("P1", "Saw")]


# -- SQL that tries to write ---------------------------------------------------------------


def legacy_table() -> None:
    with connections["other"].cursor() as cursor:
        cursor.execute(
            "CREATE TABLE legacy_items (code varchar(32), title varchar(200), "
            "cost numeric(10, 2), stock integer, changed date, live boolean)"
        )
        cursor.execute("INSERT INTO legacy_items VALUES ('L1', 'Lamp', 1.5, 3, NULL, true)")


def legacy_rows() -> list[tuple]:
    with connections["other"].cursor() as cursor:
        cursor.execute("SELECT code, cost FROM legacy_items ORDER BY code")
        return cursor.fetchall()


def declare(settings: Any, **queries: str) -> None:
    settings.DJSYNC = {
        **settings.DJSYNC,
        "SQL_QUERIES": {n: {"query": q, "using": "other"} for n, q in queries.items()},
    }


def test_a_declared_query_that_writes_fails_and_nothing_changes(make_job, settings, root):
    legacy_table()
    vendor = connections["other"].vendor
    if vendor == "postgresql":
        writes = (
            "WITH x AS (UPDATE legacy_items SET cost = 0 RETURNING code) SELECT code AS sku FROM x"
        )
    else:  # SQLite: a WITH clause before an UPDATE … RETURNING passes the SELECT/WITH check
        writes = "WITH x AS (SELECT 1) UPDATE legacy_items SET cost = 0 RETURNING code AS sku"
    declare(settings, writes=writes)
    message = refused(make_job, source={"kind": "sql", "query": "writes"})
    assert message.startswith("query 'writes': the query failed: ")
    assert any(w in message for w in ("read-only", "readonly", "data-modifying"))
    assert legacy_rows() == [("L1", pytest.approx(1.5))]
    if vendor == "sqlite":  # query_only is off again: the connection can be written
        with connections["other"].cursor() as cursor:
            cursor.execute("PRAGMA query_only")
            assert cursor.fetchone()[0] == 0
            cursor.execute("UPDATE legacy_items SET stock = 4")


def test_a_declared_query_calling_a_function_that_writes_fails(make_job, settings, root):
    legacy_table()
    if connections["other"].vendor != "postgresql":
        pytest.skip("SQLite functions cannot write from SQL")
    with connections["other"].cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION djsync_evil() RETURNS integer AS $$ "
            "UPDATE legacy_items SET cost = 0; SELECT 1 $$ LANGUAGE sql VOLATILE"
        )
    declare(settings, evil="SELECT code AS sku, djsync_evil() AS n FROM legacy_items")
    message = refused(make_job, source={"kind": "sql", "query": "evil"})
    assert "cannot execute UPDATE in a read-only transaction" in message
    assert legacy_rows() == [("L1", pytest.approx(1.5))]
    # the run goes on writing after a read: the savepoint's READ ONLY did not stay
    with connections["other"].cursor() as cursor:
        cursor.execute("UPDATE legacy_items SET stock = 4")


@pytest.mark.parametrize(
    "query,problem",
    [
        ("UPDATE legacy_items SET cost = 0", "the query must be a SELECT (or WITH … SELECT)"),
        ("DELETE FROM legacy_items", "the query must be a SELECT (or WITH … SELECT)"),
        ("SELECT 1; DELETE FROM legacy_items", "one statement only (no ; inside the query)"),
        ("SELECT 1 AS sku; ", None),
    ],
    ids=["update", "delete", "two-statements", "trailing-semicolon"],
)
def test_declared_queries_are_one_select(make_job, settings, root, query, problem):
    legacy_table()
    declare(settings, q=query)
    if problem is None:
        get_source({"kind": "sql", "query": "q"})  # a trailing ; is fine
        return
    message = refused(make_job, source={"kind": "sql", "query": "q"})
    assert message == f"job 'hostile': DJSYNC[\"SQL_QUERIES\"]['q']: {problem}"
    assert legacy_rows() == [("L1", pytest.approx(1.5))]


def test_a_declared_query_reads_with_bound_params(make_job, root):
    legacy_table()
    job = make_job("test_products", source={"kind": "sql", "query": "legacy_items", "params": []})
    run = djsync.run(job)
    assert run.status == "succeeded", run.error
    assert Product.objects.get().sku == "L1"


# -- export targets ------------------------------------------------------------------------

EXPORT_LEAVES = "export path {path!r} leaves its root 'tests' (" + ROOTS + ")"


def test_an_export_cannot_write_outside_its_root(make_job, root, outside):
    Product.objects.create(sku="E1", name="Saw", price=1)
    (root / "out.csv").symlink_to(outside / "secret.csv")
    before = sorted(p.name for p in outside.iterdir())
    cases = [
        (os.path.relpath(outside / "x.csv", root), EXPORT_LEAVES),
        (
            "/tmp/djsync-export.csv",
            "export path '/tmp/djsync-export.csv' is absolute; give a "
            "path relative to the root 'tests' (" + ROOTS + ")",
        ),
        ("out.csv", EXPORT_LEAVES),
        (
            "~/export.csv",
            "export path '~/export.csv' is absolute; give a path relative to the "
            "root 'tests' (" + ROOTS + ")",
        ),
    ]
    for n, (path, expected) in enumerate(cases):
        job = make_job("test_products", name=f"export-{n}", target={"kind": "file", "path": path})
        with pytest.raises(ConfigurationError) as info:
            djsync.run(job)
        assert str(info.value) == f"job 'export-{n}': " + expected.format(path=path)
        assert info.value.run.status == "failed"
    assert sorted(p.name for p in outside.iterdir()) == before
    assert (outside / "secret.csv").read_text() == SECRET
    assert not Path("/tmp/djsync-export.csv").exists()


def test_a_job_name_placeholder_cannot_lead_out(make_job, root, outside):
    escape = os.path.relpath(outside, root) + "/x"
    job = make_job("test_products", name=escape, target={"kind": "file", "path": "{job}.csv"})
    with pytest.raises(ConfigurationError) as info:
        djsync.run(job)
    path = f"{escape}.csv"
    assert str(info.value) == f"job {escape!r}: " + EXPORT_LEAVES.format(path=path)
    assert not (outside / "x.csv").exists()


def test_an_export_filter_cannot_follow_relations(make_job, root):
    job = make_job(
        "test_products",
        name="export",
        target={"kind": "file", "path": "p.csv", "filter": {"category__name__startswith": "p"}},
    )
    with pytest.raises(ConfigurationError) as info:
        djsync.run(job)
    assert str(info.value).startswith(
        "job 'export': the target filter cannot use 'category__name__startswith'"
    )
    assert not (root / "p.csv").exists()


def test_an_export_target_refuses_unknown_keys(make_job, root):
    job = make_job(
        "test_products", name="export", target={"kind": "file", "path": "p.csv", "mode": "a"}
    )
    with pytest.raises(ConfigurationError) as info:
        djsync.run(job)
    assert str(info.value) == (
        "job 'export': unknown target options mode (a target may set: filter, format, kind, "
        "neutralize_formulas, path, root)"
    )


# -- trusted doors stay open -------------------------------------------------------------


def test_code_and_the_command_line_stay_trusted(make_job, root, outside):
    make_job("test_products", name="products", source={"path": "ok.csv"})
    call_command("runsync", "products", "--file", str(outside / "secret.csv"), "--no-progress")
    assert Product.objects.get().sku == "SECRET"  # a shell user chose that file
    with pytest.raises(SourceError, match="file not found"):
        djsync.run("products", file=str(outside / "nowhere.csv"))


def test_the_check_reports_stored_jobs_that_no_longer_pass(make_job, root):
    from djsync.checks import check_jobs

    make_job("test_products", name="fine", source={"path": "ok.csv"})
    make_job("test_products", name="old", source={"path": "/etc/passwd"})
    make_job("test_products", name="old-export", target={"kind": "file", "path": "../x.csv"})
    make_job("test_products", name="old-sql", source={"kind": "sql", "query": "SELECT 1"})
    messages = check_jobs(databases=["default"])
    assert [(m.id, m.msg.split(":")[0]) for m in messages] == [
        ("djsync.W010", "job 'old'"),
        ("djsync.W010", "job 'old-export'"),
        ("djsync.W010", "job 'old-sql'"),
    ]
    assert "is absolute" in messages[0].msg and "leaves its root" in messages[1].msg
    assert "cannot run its own SQL" in messages[2].msg


# -- migrating stored jobs -----------------------------------------------------------------


def test_the_migration_rewrites_what_it_safely_can(root, settings):
    import importlib

    migration = importlib.import_module("djsync.migrations.0007_job_sources_pick_declared")
    roots = {"tests": str(root)}
    queries = settings.DJSYNC["SQL_QUERIES"]
    legacy = queries["legacy_items"]["query"]
    rewrite = migration.rewrite
    assert rewrite({"path": str(root / "ok.csv"), "delimiter": ";"}, roots, queries) == {
        "path": "ok.csv",
        "delimiter": ";",
    }
    assert rewrite({"path": "/etc/passwd"}, roots, queries) == {"path": "/etc/passwd"}
    assert rewrite(
        {"kind": "sql", "using": "other", "query": legacy.replace(" ", "  ") + ";"},
        roots,
        queries,
    ) == {"kind": "sql", "query": "legacy_items"}
    raw = {"kind": "sql", "using": "default", "query": legacy}  # another database: left
    assert rewrite(raw, roots, queries) == raw
    multi = {"sources": {"test_products": {"path": str(root / "sub" / "p.csv")}}}
    assert rewrite(multi, roots, queries) == {"sources": {"test_products": {"path": "sub/p.csv"}}}
    two = {"data": str(root / "sub"), "other": "/srv"}
    assert rewrite({"path": str(root / "sub" / "p.csv")}, two, queries) == {
        "path": "p.csv",
        "root": "data",
    }


# -- the admin's job form ------------------------------------------------------------------


@pytest.mark.parametrize(
    "importer,source,message",
    [
        (
            "test_products",
            '{"path": "/etc/passwd"}',
            "source path &#x27;/etc/passwd&#x27; is absolute",
        ),
        ("test_products", '{"path": "../../etc/shadow"}', "leaves its root"),
        (
            "test_products",
            '{"kind": "sql", "query": "SELECT * FROM auth_user"}',
            "a job cannot run its own SQL",
        ),
        (
            "test_categories",
            '{"kind": "queryset", "model": "auth.User"}',
            "cannot set &#x27;model&#x27;",
        ),
        (
            ["test_categories", "test_products"],
            '{"sources": {"test_categories": {"path": "c.csv"}, '
            '"test_products": {"path": "/etc/passwd"}}}',
            "is absolute",
        ),
    ],
    ids=["absolute", "dot-dot", "raw-sql", "queryset-model", "multi-model-entry"],
)
def test_the_job_form_refuses_what_a_run_would(admin_client, root, importer, source, message):
    from django.urls import reverse

    data = {
        "name": "hostile",
        "description": "",
        "importer": importer,
        "source": source,
        "enabled": "on",
        "allow_create": "unknown",
        "allow_update": "unknown",
        "allow_delete": "unknown",
        "max_create": "",
        "max_update": "",
        "max_delete": "",
        "max_total": "",
        "delete_guard": "",
        "on_row_error": "",
        "schedule": "",
        "notify_on_failure": "",
    }
    response = admin_client.post(reverse("admin:djsync_syncjob_add"), data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not SyncJob.objects.exists()


def test_the_job_form_accepts_a_declared_pick(admin_client, root):
    from django.urls import reverse

    data = {
        "name": "picks",
        "description": "",
        "importer": "test_categories",
        "source": '{"kind": "queryset", "queryset": "active_products"}',
        "enabled": "on",
        "allow_create": "unknown",
        "allow_update": "unknown",
        "allow_delete": "unknown",
        "max_create": "",
        "max_update": "",
        "max_delete": "",
        "max_total": "",
        "delete_guard": "",
        "on_row_error": "",
        "schedule": "",
        "notify_on_failure": "",
    }
    response = admin_client.post(reverse("admin:djsync_syncjob_add"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert SyncJob.objects.get().source == {"kind": "queryset", "queryset": "active_products"}

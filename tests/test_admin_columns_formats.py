"""The mapping step for the formats parsed whole by a run (ODS, XLS, YAML): their headers
are checked before the preview is queued, whatever the upload's size — a workbook's sheet
read only up to its header row, in bounded memory even for a huge sheet."""

from __future__ import annotations

from pathlib import Path

import pytest
import tablib
from django.core.files.uploadedfile import SimpleUploadedFile

from djsync.admin_columns import check_upload
from djsync.models import SyncJob, SyncRun
from djsync.sources import FileSource
from tests import test_admin
from tests.hostile import run_isolated
from tests.test_admin_columns import PICKED, confirm, selected, token_of, upload_url
from tests.test_hostile_files import ODS_CLOSE, ODS_OPEN, ods_with_content, repeated

#: test_admin's autouse fixture: uploads go to a private folder of the test's own.
upload_root = test_admin.upload_root

HEADERS = ["Item_No", "designation", "Cost", "Qty."]


@pytest.fixture
def job(make_job) -> SyncJob:
    return make_job("test_products_aliased", name="aliased")


def upload(client, job: SyncJob, name: str, data: bytes, capture):
    with capture(execute=True):
        return client.post(upload_url(job), {"file": SimpleUploadedFile(name, data)})


@pytest.mark.parametrize("fmt", ["ods", "xls", "yaml"])
def test_a_whole_parsed_format_gets_the_step_then_previews_through_it(
    fmt, admin_client, job, settings, django_capture_on_commit_callbacks
):
    """Every upload is previewed in the background by default (BACKGROUND_PREVIEW_SIZE 0):
    the header check happens first all the same, and reads the headers the run reads."""
    assert settings.DJSYNC.get("BACKGROUND_PREVIEW_SIZE", 0) == 0
    data = tablib.Dataset(["K1", "Kite", "9.50", "4"], ["L1", "Lamp", "1.75", "2"])
    data.headers = HEADERS
    content = data.export(fmt)
    content = content.encode() if isinstance(content, str) else content
    response = upload(
        admin_client, job, f"prices.{fmt}", content, django_capture_on_commit_callbacks
    )
    page = response.content.decode()
    assert response.status_code == 200 and 'id="djsync-column-mapping"' in page, page[:2000]
    assert selected(page, "sku") == "Item_No" and not SyncRun.objects.exists()
    response = confirm(
        admin_client, job, token_of(page), django_capture_on_commit_callbacks, **PICKED
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    run = SyncRun.objects.get()
    assert run.status == "previewed" and (run.created, run.errors) == (2, 0), run.error
    job.refresh_from_db()
    assert job.column_mapping  # saved for these headers: the run matched them


def huge_ods(path: Path, rows: int) -> Path:
    """An ODS whose sheet has the HEADERS row, then ``rows`` rows: megabytes of XML."""
    cells = "".join(
        f'<table:table-cell office:value-type="string"><text:p>{h}</text:p></table:table-cell>'
        for h in HEADERS
    )
    row = (
        b"<table:table-row>"
        + b'<table:table-cell office:value-type="string"><text:p>K</text:p></table:table-cell>' * 4
        + b"</table:table-row>"
    )
    head = ODS_OPEN + f"<table:table-row>{cells}</table:table-row>".encode()
    return ods_with_content(path, repeated(head, row, rows, ODS_CLOSE))


def test_a_huge_ods_sheet_is_read_only_up_to_its_header(tmp_path, admin_client, job):
    """80,000 rows (28 MiB of XML, which a run parses whole into hundreds of megabytes of
    nodes): the header check reads the header row and stops — in a child process capped
    like the hostile-file tests, its Python allocations traced (the child's peak RSS
    counts its parent's, inherited across fork and exec)."""
    path = huge_ods(tmp_path / "huge.ods", 80_000)
    code = f"""
        import tracemalloc
        from djsync.sources import FileSource
        source = FileSource({str(path)!r})
        source.header_only = True
        tracemalloc.start()
        rows = list(source.read())
        print(source.columns, len(rows), tracemalloc.get_traced_memory()[1] // 2**20)
    """
    out = run_isolated(code, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    columns, count, peak_mib = out.stdout.strip().rsplit(" ", 2)
    assert (columns, count) == (repr(HEADERS), "0")
    # About 16 MiB: the zip check's buffers and a row's nodes; the whole sheet takes ~800.
    assert int(peak_mib) < 48, peak_mib

    with path.open("rb") as handle:
        checks = check_upload(job, handle, "ods")
    assert [check.headers for check in checks] == [HEADERS]


def test_a_full_xls_sheet_has_its_header_read_alone(tmp_path, job):
    """65,000 rows (an XLS sheet holds 65,536): the header check reads the workbook's
    globals and the sheet's records up to the second row, keeping none of them."""
    rows = [[f"K{i}", "Kite", 9.5, i] for i in range(65_000)]
    path = tmp_path / "full.xls"
    path.write_bytes(tablib.Dataset(*rows, headers=HEADERS).export("xls"))
    source = FileSource(path)
    source.header_only = True
    assert list(source.read()) == [] and source.columns == HEADERS
    with path.open("rb") as handle:
        checks = check_upload(job, handle, "xls")
    assert [check.headers for check in checks] == [HEADERS]

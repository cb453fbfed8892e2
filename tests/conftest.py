"""Shared fixtures: jobs for the test importers and small file writers."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from djsync.mapping.switches import JOB_FIELDS
from djsync.models import SyncJob
from tests import celery_app

# Installing the demo's directory app (the HTTP target's test server) imports demo_project,
# whose __init__ creates the demo's Celery app, and the newest app becomes the current one.
# The suite's own app stays the one djsync's tasks use (tests reconfigure it, e.g. a broker).
celery_app.set_current()
celery_app.set_default()


@pytest.fixture(autouse=True)
def file_root(settings: Any, tmp_path: Path) -> Path:
    """Each test's tmp_path is the "tests" root of DJSYNC["FILE_ROOTS"]: a job names a file
    written there by its path relative to it (``job_path``). Tests that set DJSYNC keep
    the roots by merging: ``settings.DJSYNC = {**settings.DJSYNC, "X": 1}``."""
    settings.DJSYNC = {**settings.DJSYNC, "FILE_ROOTS": {"tests": str(tmp_path)}}
    return tmp_path


@pytest.fixture
def job_path(file_root: Path) -> Callable[[str | Path], str]:
    """job_path(path) → the path a job's source gives for a file under the test's root."""

    def relative(path: str | Path) -> str:
        return os.path.relpath(path, file_root)

    return relative


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    """write_csv([{"a": 1}], name="x.csv") → a CSV file with a header from the first row."""

    def write(rows: list[dict[str, Any]], name: str = "data.csv", **kwargs: Any) -> Path:
        path = tmp_path / name
        buffer = io.StringIO()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), **kwargs)
            writer.writeheader()
            writer.writerows(rows)
        path.write_text(buffer.getvalue(), encoding="utf-8")
        return path

    return write


@pytest.fixture
def write_json(tmp_path: Path) -> Callable[..., Path]:
    def write(data: Any, name: str = "data.json") -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(data), encoding="utf-8")
        return path

    return write


@pytest.fixture
def make_job(db: None) -> Callable[..., SyncJob]:
    def make(importer: str, name: str | None = None, **fields: Any) -> SyncJob:
        # create=/update=/delete= read like the importer's switches; the job's fields
        # are allow_* (a field named "delete" would hide Model.delete()).
        for switch in ("create", "update", "delete"):
            if switch in fields:
                fields[JOB_FIELDS[switch]] = fields.pop(switch)
        return SyncJob.objects.create(
            name=name or importer.replace("_", "-"), importer=importer, **fields
        )

    return make

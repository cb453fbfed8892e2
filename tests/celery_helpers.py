"""What the real-worker tests need inside the worker: a flaky source, a gated importer and
an importer writing to an HTTP API.

Imported by the worker through ``CELERY_IMPORTS`` (tests/celery_worker_settings.py) and by
the tests themselves. The gate lets a test stop a worker in the middle of an apply, without
timing: the importer waits while ``<gate dir>/<sku>.hold`` exists, after writing
``<sku>.reached`` with the worker process id.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.db import models

import djsync
from djsync.exceptions import TransientSourceError
from djsync.sources import FileSource, register_source
from djsync.sources.policy import JobContext, check_keys, resolve_path
from djsync.targets import HttpApiTarget
from tests.testapp.sync import ProductImporter, RealtimeProductImporter


class FlakySource(FileSource):
    """A CSV file that fails transiently on its first ``fail_times`` reads (counted in a file)."""

    def __init__(self, path: str, counter: str, fail_times: int = 1) -> None:
        super().__init__(path)
        self.counter = Path(counter)
        self.fail_times = fail_times

    @classmethod
    def from_job(
        cls, options: dict[str, Any], *, base: dict[str, Any], context: JobContext
    ) -> FlakySource:
        """A custom kind says which job options are safe: two paths under a file root."""
        check_keys(options, {"path", "counter", "fail_times"}, kind="flaky", context=context)
        return cls(
            resolve_path(options.get("path"), context=context),
            resolve_path(options.get("counter"), context=context, what="counter path"),
            int(options.get("fail_times", 1)),
        )

    def read(self) -> Iterator[dict[str, Any]]:
        count = int(self.counter.read_text() or 0) + 1 if self.counter.exists() else 1
        self.counter.write_text(str(count))
        if count <= self.fail_times:
            raise TransientSourceError(f"read {count}: the server is busy", source=self.name)
        yield from super().read()


register_source("flaky", FlakySource)


def gate_dir() -> Path:
    return Path(os.environ.get("DJSYNC_TEST_GATE_DIR", "/tmp/djsync-gates"))


@djsync.register
class GatedProductImporter(ProductImporter):
    """test_products, but an apply waits at a product whose ``<sku or name>.hold`` exists."""

    class Meta(ProductImporter.Meta):
        name = "test_products_gated"

    def to_model_values(self, values: dict[str, Any]) -> dict[str, Any]:
        wait_at_gate(values)
        return super().to_model_values(values)


def wait_at_gate(values: dict[str, Any]) -> None:
    """Wait while the gate of the row's sku or name is held (creates carry the sku; updates
    only their changed fields, a new name say)."""
    for gate in {values.get("sku"), values.get("name")} - {None}:
        hold = gate_dir() / f"{gate}.hold"
        if hold.exists():
            (gate_dir() / f"{gate}.reached").write_text(str(os.getpid()))
            deadline = time.monotonic() + 60
            while hold.exists() and time.monotonic() < deadline:
                time.sleep(0.02)


class WorkerThings(HttpApiTarget):
    """tests/httpserver.py's Collection, served by the test process: its address comes from
    ``DJSYNC_TEST_API_URL``, which the test sets before it starts the worker."""

    label = "remote.things"
    records = "results"
    auth = {"type": "bearer", "token": "things"}
    fields = {
        "code": models.CharField(max_length=10),
        "name": models.CharField(max_length=50),
    }
    backoff = 0.01

    def get_url(self) -> str:
        return os.environ.get("DJSYNC_TEST_API_URL", "http://127.0.0.1:9/api/things/")


@djsync.register
class WorkerThingImporter(djsync.Importer):
    class Meta:
        name = "worker-things"
        target = WorkerThings
        keys = ["code"]
        fields = ["code", "name"]
        delete = True


@djsync.register
class PartitionGatedImporter(ProductImporter):
    """test_products, but reading a source row waits at a sku whose ``<sku>.hold`` exists
    (each process that reaches it appends its id to ``<sku>.reached``): a partition held
    while it stages, on the staged path (a ``normalize_source_row`` hook keeps it)."""

    class Meta(ProductImporter.Meta):
        name = "test_products_partition_gated"

    def normalize_source_row(self, values: dict[str, Any]) -> dict[str, Any]:
        hold = gate_dir() / f"{values.get('sku')}.hold"
        if hold.exists():
            with (gate_dir() / f"{values.get('sku')}.reached").open("a") as reached:
                reached.write(f"{os.getpid()}\n")
            deadline = time.monotonic() + 60
            while hold.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        return super().normalize_source_row(values)


@djsync.register
class GatedRealtimeImporter(RealtimeProductImporter):
    """test_realtime_products, but an apply waits at a listing whose ``<sku>.hold`` exists."""

    class Meta(RealtimeProductImporter.Meta):
        name = "test_realtime_gated"

    def to_model_values(self, values: dict[str, Any]) -> dict[str, Any]:
        wait_at_gate(values)
        return super().to_model_values(values)

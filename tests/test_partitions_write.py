"""The last step of a split run writes its creates by COPY from the run's shared staging
(djsync/backends/bulkload.py): read and sorted on a second connection while the run's
connection writes. The same rows as one process, under the same primary keys in file
order, for every column type; the plain INSERT when the last step changed the staging.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections

from djsync.backends import bulkload
from tests.test_partitions import POSTGRES, _overlapping, both, rows_for, write
from tests.testapp.models import Member, Product

pytestmark = [POSTGRES, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def streams(monkeypatch: Any, settings: Any) -> list[int | None]:
    """Every streamed write (its rows, None when the table refused it), from one create,
    with the indexes rebuilt from 10 creates; partitions from the smallest file."""
    settings.DJSYNC = {
        **settings.DJSYNC,
        "PARTITION_MIN_SIZE": 1,
        "FAST_PATH_REBUILD_INDEXES": 10,
    }
    monkeypatch.setattr(bulkload, "STREAMED", 1)
    seen: list[int | None] = []
    real = bulkload._stream

    def stream(*args: Any) -> int | None:
        seen.append(real(*args))
        return seen[-1]

    monkeypatch.setattr(bulkload, "_stream", stream)
    return seen


def in_file_order(model: Any, *keys: str) -> list[tuple]:
    return list(model.objects.order_by("pk").values_list(*keys))


@pytest.mark.parametrize("importer", ["test_products", "test_products_plain"])
def test_a_split_initial_load_streams_its_creates_in_file_order(
    make_job: Any, tmp_path: Path, importer: str, streams: list
) -> None:
    job = make_job(importer, partitions=1)
    rows = rows_for(1500, breaks=False)
    path = write(tmp_path / "day1.csv", rows)
    single, split_result = both(job, path, 4)
    assert single == split_result
    assert streams == [1500]
    # The primary keys follow the file, as one process numbers them.
    assert in_file_order(Product, "sku") == [(row["sku"],) for row in rows]
    changed = rows_for(1600, changed={3, 700}, gone={5}, breaks=False)
    single, split_result = both(job, write(tmp_path / "day2.csv", changed), 4)
    assert single == split_result
    assert single["counts"][:3] == (100, 2, 1)
    assert streams == [1500]  # creates among updates: read through the run's own actions


def member(number: int) -> dict[str, str]:
    """A member with a value in every column type the staged path supports."""
    return {
        "team": "red" if number % 2 else "blue",
        "number": str(number),
        "name": f'M{number} \u00e9t\u00e9, "quoted"',
        "nickname": "" if number % 3 else "nick",
        "note": "" if number % 4 else "a\nnote",
        "score": "" if number % 5 == 0 else f"{number}.25",
        "joined": "2026-01-02",
        "seen": f"2026-01-02T10:00:{number % 60:02d}.250+00:00",
        "alarm": "07:30:00",
        "vip": "true" if number % 2 else "false",
        "level": "gold" if number % 2 else "silver",
        "token": f"12345678-1234-4234-8234-{number:012d}",
        "extra": '{"a": [1, 2], "b": "x"}' if number % 2 else "",
    }


def test_every_column_type_streams_as_one_process_writes_it(
    make_job: Any, tmp_path: Path, streams: list
) -> None:
    job = make_job("test_members", partitions=1)
    rows = [member(n) for n in range(600)]
    path = write(tmp_path / "members.csv", rows)
    single, split_result = both(job, path, 3)
    assert single == split_result
    assert streams == [600]
    every = list(Member.objects.order_by("pk").values())
    assert in_file_order(Member, "team", "number") == [
        (row["team"], int(row["number"])) for row in rows
    ]
    assert every[7]["extra"] == {"a": [1, 2], "b": "x"} and every[7]["score"] == 7.25


def test_keys_the_last_step_marks_twice_are_written_by_insert(
    make_job: Any, tmp_path: Path, streams: list
) -> None:
    """Duplicate keys across partitions: the last step marks them in its own transaction,
    which a second connection cannot see, so the creates are not streamed."""
    job = make_job("test_products", partitions=1)
    rows = _overlapping(tmp_path, 1200, 4)
    single, split_result = both(job, write(tmp_path / "overlap.csv", rows), 4)
    assert single == split_result
    assert single["counts"][4] > 0  # the repeated keys are row errors
    assert streams == []


@pytest.mark.parametrize("how", ["refused", "unreadable"])
def test_a_second_connection_that_cannot_read_leaves_the_write_to_insert(
    make_job: Any, tmp_path: Path, streams: list, monkeypatch: Any, how: str
) -> None:
    """The reading connection refused (a pooler that refuses a second session), or one
    that may not read the staging (a role it lacks): the creates are written by the plain
    INSERT, the same rows."""
    wrapper = type(connections["default"])
    real = wrapper.get_new_connection
    seen: list[str] = []

    def connect(self: Any, params: dict) -> Any:
        if not any(frame.function == "_stream" for frame in inspect.stack()):
            return real(self, params)
        seen.append(how)
        if how == "refused":
            raise OSError("connection refused")
        reader = real(self, params)
        reader.execute("SET ROLE djsync_test_noread")  # no privilege on the staging
        return reader

    with connection.cursor() as cursor:
        cursor.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
            "'djsync_test_noread') THEN CREATE ROLE djsync_test_noread; END IF; END $$"
        )
    monkeypatch.setattr(wrapper, "get_new_connection", connect)
    job = make_job("test_products", partitions=1)
    single, split_result = both(job, write(tmp_path / "day1.csv", rows_for(800)), 4)
    assert single == split_result
    assert seen == [how] and streams == [None]
    assert split_result["counts"][0] == 800

"""Fast CSV reading: positional rows give the same records as read(), bad bytes are still
reported at their line, and a subclass that overrides read() keeps its own records."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

import djsync
from djsync.backends.postgresql import reads_rows
from djsync.exceptions import SourceError
from djsync.sources import FileSource
from djsync.sources.base import MISSING
from tests.testapp.models import Product

MESSY = (
    b"\xef\xbb\xbfsku,name,price\r\n"
    b"A1,Lamp,1.50\r\n"
    b"\r\n"
    b'A2,"two\nlines, quoted",2\r\n'
    b"A3,Short\r\n"
    b"A4,Extra,4,,\r\n"
    b"  \r\n"
    b"A5,Last,5"
)


def both_ways(data: bytes, **options: Any) -> tuple[list[dict], list[list], list[int]]:
    source = FileSource(file=io.BytesIO(data), name="x.csv", **options)
    records = list(source.read())
    rows, numbers = [], []
    positional = FileSource(file=io.BytesIO(data), name="x.csv", **options)
    for cells in positional.read_rows():
        rows.append(cells)
        numbers.append(positional.row)
    assert positional.columns == source.columns
    return records, rows, numbers


def test_rows_are_the_records_in_column_order():
    records, rows, numbers = both_ways(MESSY)
    assert records == [
        {"sku": "A1", "name": "Lamp", "price": "1.50"},
        {"sku": "A2", "name": "two\nlines, quoted", "price": "2"},
        {"sku": "A3", "name": "Short", "price": MISSING},  # a short row: a row error later
        {"sku": "A4", "name": "Extra", "price": "4"},
        {"sku": "A5", "name": "Last", "price": "5"},
    ]
    assert rows == [list(r.values()) for r in records]
    assert numbers == [2, 4, 5, 6, 8]  # blank lines keep their numbers


def test_sniffed_delimiter_and_tsv():
    records, rows, _ = both_ways(b"sku;name\nA1;Lamp\n", delimiter="auto")
    assert records == [{"sku": "A1", "name": "Lamp"}] and rows == [["A1", "Lamp"]]
    source = FileSource(file=io.BytesIO(b"sku\tname\nA1\tLamp\n"), name="x.tsv")
    assert list(source.read_rows()) == [["A1", "Lamp"]]


def test_other_formats_read_dicts_only():
    assert FileSource(file=io.BytesIO(b"[]"), name="x.json").read_rows() is None


def test_a_bad_byte_far_into_the_file_is_reported_at_its_line():
    lines = [b"sku,name"] + [b"A%d,Lamp" % i for i in range(20_000)] + [b"B1,Caf\xe9"]
    data = b"\n".join(lines) + b"\n"
    for read in (lambda s: list(s.read()), lambda s: list(s.read_rows())):
        with pytest.raises(SourceError, match="line 20002 is not valid utf-8"):
            read(FileSource(file=io.BytesIO(data), name="x.csv"))


def test_a_file_ending_inside_a_character():
    with pytest.raises(SourceError, match="ends inside a utf-8 character"):
        list(FileSource(file=io.BytesIO(b"sku\nA\xc3"), name="x.csv").read_rows())


def test_an_uploaded_file_stays_open_and_reads_twice():
    upload = SimpleUploadedFile("p.csv", b"sku,name\nA1,Lamp\n")
    source = FileSource(file=upload)
    assert list(source.read_rows()) == [["A1", "Lamp"]]
    assert not upload.closed
    assert list(source.read()) == [{"sku": "A1", "name": "Lamp"}]


class Shouting(FileSource):
    """A subclass that changes the records read() yields."""

    def read(self):
        for record in super().read():
            yield {k: v.upper() for k, v in record.items()}


def test_a_subclass_overriding_read_is_read_through_read(make_job, write_csv):
    assert reads_rows(FileSource(file=io.BytesIO(b"a\n"), name="x.csv"))
    assert not reads_rows(Shouting(file=io.BytesIO(b"a\n"), name="x.csv"))
    path = write_csv(
        [{"sku": "a1", "name": "lamp", "price": "1", "qty": "1", "updated": "", "active": "y"}]
    )
    djsync.run(make_job("test_products"), source=Shouting(path))
    assert list(Product.objects.values_list("sku", "name")) == [("A1", "LAMP")]

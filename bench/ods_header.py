"""What the admin's header check costs on a big ODS upload: ``python -m bench.ods_header
[--rows N]``.

An ODS sheet of N rows (the mapping step's headers, then four short cells a row) is read in
a child process, twice: its header only (``header_only``, what the upload page does before
it queues the preview) and up to its first record the way a run reads it (the whole
content parsed). Prints wall seconds and peak RSS of each (tests/hostile.py measures).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=80_000)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.setdefault("DJSYNC_TEST_DB", "sqlite")
    import django

    django.setup()
    from tests.hostile import run_isolated
    from tests.test_admin_columns_formats import huge_ods

    with tempfile.TemporaryDirectory() as folder:
        path = huge_ods(Path(folder) / "big.ods", args.rows)
        print(f"{args.rows:,} rows, {path.stat().st_size / 1e6:.1f} MB on disk")
        for header_only in (True, False):
            out = run_isolated(
                f"""
                from djsync.sources import FileSource
                source = FileSource({str(path)!r})
                source.header_only = {header_only}
                next(source.read(), None)
                print(len(source.columns))
                """,
                timeout=600,
            )
            what = "header only" if header_only else "whole (a run)"
            print(f"{what}: {out.seconds:.1f} s, {out.peak_mb:.0f} MB peak RSS", out.last_line)


if __name__ == "__main__":
    main()

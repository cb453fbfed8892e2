"""Run a piece of djsync in a child process and measure what it cost: time and peak memory.

The hostile-input tests use it for the expensive cases (a zip bomb, an endless body): the
child has an address-space cap, so a regression fails the test instead of the machine, and
the child reports its own peak RSS when it exits (the test process's only ever grows).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Address space the child may map: far above the 300 MB goal, far below the machine.
CAP_BYTES = 3 * 1024**3

PREAMBLE = """\
import atexit, os, resource
def _report_peak():
    with open(os.environ["DJSYNC_PEAK_FILE"], "w") as out:
        out.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
atexit.register(_report_peak)
import django
django.setup()
"""


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_mb: float

    @property
    def last_line(self) -> str:
        """The last non-empty line of stderr (where one-line errors go)."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def _cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CAP_BYTES, CAP_BYTES))


def run_isolated(
    code: str,
    *,
    timeout: float = 30,
    settings: str = "tests.settings",
    env: dict[str, str] | None = None,
) -> Outcome:
    """Run ``code`` (Python, after ``django.setup()``) in a child process with a memory cap.

    The child uses SQLite in memory unless ``env`` says otherwise; it is killed after
    ``timeout`` seconds (the outcome then has returncode -9)."""
    peak_file = Path(tempfile.mkstemp(prefix="djsync-peak-")[1])
    child_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings,
        "DJSYNC_TEST_DB": "sqlite",
        "PYTHONUNBUFFERED": "1",
        "DJSYNC_PEAK_FILE": str(peak_file),
        **(env or {}),
    }
    script = PREAMBLE + textwrap.dedent(code)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_cap,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    seconds = time.monotonic() - started
    try:
        peak_kb = float(peak_file.read_text() or "nan")
    except ValueError:
        peak_kb = float("nan")  # killed before it could say: the assertion on it fails
    finally:
        peak_file.unlink(missing_ok=True)
    return Outcome(process.returncode, stdout, stderr, seconds, peak_kb / 1024)

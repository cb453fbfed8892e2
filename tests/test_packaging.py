"""The built package, not the checkout, carries what djsync needs at run time: templates,
static files, migrations and the ``py.typed`` marker."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "djsync"


def data_files() -> set[str]:
    """Files in the checkout's package that are not Python modules but must ship."""
    found = set()
    for path in PACKAGE.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            relative = path.relative_to(ROOT).as_posix()
            if path.suffix != ".py" or "migrations" in path.parts:
                found.add(relative)
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build a wheel from a copy of the sources, so the checkout gets no build/ or egg-info."""
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, source / name)
    shutil.copytree(PACKAGE, source / "djsync", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(source), "-w", str(dist)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = dist.glob("djsync-*.whl")
    return built


def test_wheel_carries_templates_migrations_and_py_typed(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "djsync/py.typed" in names
    assert "djsync/migrations/0001_initial.py" in names
    assert any(n.startswith("djsync/templates/admin/djsync/") for n in names)
    assert "djsync/locale/fr/LC_MESSAGES/django.mo" in names  # compiled: no gettext tool needed
    missing = sorted(data_files() - names)
    assert not missing, f"files of the package missing from the wheel: {missing}"


def test_wheel_carries_the_license_and_its_metadata(wheel):
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    licenses = [n for n in names if n.endswith("/LICENSE") and ".dist-info/" in n]
    assert licenses, names
    assert "BSD 3-Clause License" in archive.read(licenses[0]).decode()
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    text = archive.read(metadata).decode()
    assert "License-Expression: BSD-3-Clause" in text
    assert "Programming Language :: Python :: 3.11" in text
    assert "Project-URL: Changelog," in text


def test_wheel_holds_only_the_app(wheel):
    """No tests, demo project or benchmarks in the distribution."""
    top = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert "djsync" in top
    assert all(t == "djsync" or t.endswith(".dist-info") for t in top), top


def test_installed_wheel_has_the_files(wheel, tmp_path):
    target = tmp_path / "site"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    installed = target / "djsync"
    for relative in sorted(data_files()):
        assert (target / relative).is_file(), f"{relative} is not installed"
    assert (installed / "management" / "commands" / "runsync.py").is_file()

"""Models and migrations agree: a model change without its migration fails the suite."""

from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
@pytest.mark.parametrize("app", ["djsync", "testapp", "directory"])
def test_no_missing_migrations(app, settings):
    # With routers set, makemigrations would read the history of every alias, including the
    # ones djsync registers while running (its progress connection); models are the point.
    settings.DATABASE_ROUTERS = []
    out = StringIO()
    try:
        call_command("makemigrations", app, "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit:  # makemigrations --check exits 1 when a migration is missing
        pytest.fail(f"{app}: models changed without a migration:\n{out.getvalue()}")


def test_demo_migrations_are_complete(tmp_path):
    """The demo project's app too, checked in its own settings."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo_project.settings",
        "DEMO_SQLITE": str(tmp_path / "demo.sqlite3"),
        "DEMO_DIRECTORY_SQLITE": str(tmp_path / "demo-directory.sqlite3"),
    }
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr

"""djsync with only its core dependencies: the optional libraries (pyproject's extras) are
blocked in a fresh interpreter, which must still pass ``manage.py check`` and sync a CSV
file on SQLite; each feature that needs a missing extra says which one to install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

#: What the extras install; ``sys.modules[name] = None`` makes ``import name`` fail.
BLOCKED = (
    "celery",
    "kombu",
    "redis",
    "django_celery_beat",
    "httpx",
    "httpcore",
    "import_export",
    "tqdm",
    "simple_history",
)

SCRIPT = r"""
import json, sys, tempfile, pathlib
for name in BLOCKED:
    sys.modules[name] = None
root = pathlib.Path(tempfile.mkdtemp())
(root / "groups.csv").write_text("name\nstaff\nauthors\n")
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
                    "django.contrib.sessions", "django.contrib.messages", "djsync"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    DJSYNC={"FILE_ROOTS": {"data": str(root)}, "HTTP_BASE_URLS": ["https://api.example.com/"]},
    USE_TZ=True, SECRET_KEY="x",
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
                "OPTIONS": {"context_processors": [
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                    "django.template.context_processors.request"]}}],
    MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware",
                "django.contrib.messages.middleware.MessageMiddleware"],
)
django.setup()
import io
from django.contrib.auth.models import Group
from django.core.management import call_command
import djsync
import djsync.admin, djsync.sources, djsync.targets  # every module a site loads

@djsync.register
class GroupImporter(djsync.Importer):
    class Meta:
        name = "groups"
        model = Group
        keys = ["name"]
        fields = ["name"]

out = {}
call_command("check")
call_command("migrate", verbosity=0)
from djsync.models import SyncJob
SyncJob.objects.create(name="groups", importer="groups", source={"path": "groups.csv"})
stdout = io.StringIO()
call_command("runsync", "groups", stdout=stdout)
out["runsync"] = stdout.getvalue()
out["groups"] = sorted(Group.objects.values_list("name", flat=True))

def said(call):
    try:
        call()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"

out["async"] = said(lambda: call_command("runsync", "groups", "--async"))
from djsync.sources import get_source
out["http"] = said(
    lambda: list(get_source({"kind": "http", "url": "https://api.example.com/x"}, trusted=True).read())
)
from djsync.runs.cron import parse_schedule
out["schedule"] = said(lambda: parse_schedule("*/5 * * * *"))
from djsync.runs.cron import validate_schedule
out["schedule_form"] = validate_schedule("*/5 * * * *")

def history_importer():
    @djsync.register
    class HistoryImporter(djsync.Importer):
        class Meta:
            name = "groups-history"
            model = Group
            keys = ["name"]
            fields = ["name"]
            history = True

out["history"] = said(history_importer)
print("@@" + json.dumps(out))
"""


def test_core_dependencies_alone_sync_a_csv_file_and_name_missing_extras() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-c", f"BLOCKED = {BLOCKED!r}\n{SCRIPT}"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.split("@@", 1)[1])
    assert "groups: succeeded" in out["runsync"], out["runsync"]
    assert "2 created" in out["runsync"]
    assert out["groups"] == ["authors", "staff"]
    assert 'pip install "djsync[celery]"' in out["async"], out["async"]
    assert "a queued run" in out["async"]
    assert 'needs httpx, which is not installed: pip install "djsync[http]"' in out["http"]
    assert "a job's schedule" in out["schedule"] and "djsync[celery]" in out["schedule"]
    assert out["schedule_form"].startswith("a job's schedule needs celery")  # a form error
    assert out["history"].startswith("ImproperlyConfigured"), out["history"]
    assert 'pip install "djsync[history]"' in out["history"]

"""djsync with only its core dependencies: the optional libraries (pyproject's extras) are
blocked in a fresh interpreter, which must still pass ``manage.py check`` and sync a CSV
file on SQLite; each feature that needs a missing extra says which one to install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

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


def without_extras(script: str) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter with the extras blocked; what it prints after
    ``@@`` (JSON)."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-c", f"BLOCKED = {BLOCKED!r}\n{script}"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return cast("dict[str, Any]", json.loads(done.stdout.split("@@", 1)[1]))


def test_core_dependencies_alone_sync_a_csv_file_and_name_missing_extras() -> None:
    out = without_extras(SCRIPT)
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


ADMIN_SCRIPT = r"""
import json, sys, tempfile, pathlib, types
for name in BLOCKED:
    sys.modules[name] = None
root = pathlib.Path(tempfile.mkdtemp())
(root / "groups.csv").write_text("name\nstaff\nauthors\n")
urls = sys.modules["core_urls"] = types.ModuleType("core_urls")
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
                    "django.contrib.sessions", "django.contrib.messages", "djsync"],
    # A file: the background threads' connections see what the requests committed.
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                           "NAME": str(root / "db.sqlite3")}},
    DJSYNC={"FILE_ROOTS": {"data": str(root)}, "UPLOAD_ROOT": str(root / "uploads")},
    ROOT_URLCONF="core_urls", USE_TZ=True, SECRET_KEY="x", ALLOWED_HOSTS=["testserver"],
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
from django.contrib import admin
from django.urls import path
urls.urlpatterns = [path("admin/", admin.site.urls)]
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client, override_settings
import djsync
from djsync.models import SyncJob, SyncRun
from djsync.runs.background import wait_for_background_runs

@djsync.register
class GroupImporter(djsync.Importer):
    class Meta:
        name = "groups"
        model = Group
        keys = ["name"]
        fields = ["name"]

call_command("migrate", verbosity=0)
client = Client()
client.force_login(User.objects.create_superuser("admin", "admin@example.com", "x"))
job = SyncJob.objects.create(name="groups", importer="groups", source={"path": "groups.csv"})
out = {}

def last_run():
    assert wait_for_background_runs(timeout=60)
    run = SyncRun.objects.order_by("-pk").first()
    return {"status": run.status, "dry_run": run.dry_run, "counts": run.counts,
            "error": run.error, "trigger": run.trigger}

# upload -> progress -> preview -> apply, each run in a background thread (the default)
upload_url = f"/admin/djsync/syncjob/{job.pk}/upload/"
out["upload_page"] = client.get(upload_url).status_code
csv_file = SimpleUploadedFile("groups.csv", b"name\nreaders\nwriters\n", "text/csv")
answer = client.post(upload_url, {"file": csv_file, "format": ""})
out["upload_redirect"] = answer.status_code, answer.get("Location", "")
out["preview"] = last_run()
run = SyncRun.objects.order_by("-pk").first()
out["progress_page"] = client.get(answer["Location"]).status_code
out["status_json"] = client.get(f"/admin/djsync/syncrun/{run.pk}/status/?step=preview").json()
page = client.get(f"/admin/djsync/syncrun/{run.pk}/change/")
out["preview_page"] = page.status_code, "writers" in page.content.decode()
out["groups_before_apply"] = sorted(Group.objects.values_list("name", flat=True))
answer = client.post(f"/admin/djsync/syncrun/{run.pk}/apply/")
out["apply_redirect"] = answer.status_code, answer.get("Location", "")
out["applied"] = last_run()
out["groups_applied"] = sorted(Group.objects.values_list("name", flat=True))

# Run now, inside the request (BACKGROUND_THREADS off), from the job's own source
with override_settings(DJSYNC={**settings.DJSYNC, "BACKGROUND_THREADS": False}):
    answer = client.post("/admin/djsync/syncjob/",
                         {"action": "run_now", "_selected_action": [job.pk]})
out["run_now_redirect"] = answer.status_code, answer.get("Location", "")
out["run_now"] = last_run()
out["groups_run_now"] = sorted(Group.objects.values_list("name", flat=True))

# Preview now, in a thread
answer = client.post("/admin/djsync/syncjob/",
                     {"action": "preview_now", "_selected_action": [job.pk]})
out["preview_now"] = last_run()

# A schedule needs Celery beat: the job list and the job's form say so
SyncJob.objects.filter(pk=job.pk).update(schedule="*/5 * * * *")
out["job_list"] = client.get("/admin/djsync/syncjob/").content.decode()
page = client.get(f"/admin/djsync/syncjob/{job.pk}/change/")
out["change_page"] = page.status_code
form = {"name": "groups", "importer": "groups", "source": '{"path": "groups.csv"}',
        "target": "{}", "enabled": "on", "notify_on_failure": "", "schedule": "*/5 * * * *",
        "allow_create": "unknown", "allow_update": "unknown", "allow_delete": "unknown",
        "on_row_error": "", "column_mapping": "{}"}
page = client.post(f"/admin/djsync/syncjob/{job.pk}/change/", form)
out["schedule_saved"] = page.status_code, page.content.decode()
form["schedule"] = ""
out["unscheduled_saved"] = client.post(f"/admin/djsync/syncjob/{job.pk}/change/", form).status_code
print("@@" + json.dumps(out))
"""


def test_the_admin_previews_applies_and_runs_without_celery() -> None:
    """The core install's admin: upload → preview → apply, Run now and Preview now go
    through the run lifecycle in this process (a thread, or the request); only a schedule
    asks for djsync[celery]."""
    out = without_extras(ADMIN_SCRIPT)
    assert out["upload_page"] == 200
    status, location = out["upload_redirect"]
    assert status == 302 and location.endswith("/progress/?step=preview"), out["upload_redirect"]
    preview = out["preview"]
    assert preview["status"] == "previewed" and preview["dry_run"], preview
    assert preview["counts"]["created"] == 2 and not preview["error"], preview
    assert out["progress_page"] == 200
    assert out["status_json"]["status"] == "previewed", out["status_json"]
    assert out["preview_page"] == [200, True]
    assert out["groups_before_apply"] == []  # a preview writes nothing
    assert out["apply_redirect"][0] == 302
    assert out["applied"]["status"] == "succeeded", out["applied"]
    assert out["groups_applied"] == ["readers", "writers"]
    assert out["run_now_redirect"][1].endswith("/progress/?step=run"), out["run_now_redirect"]
    assert out["run_now"]["status"] == "succeeded", out["run_now"]
    assert out["run_now"]["trigger"] == "admin"
    assert out["groups_run_now"] == ["authors", "readers", "staff", "writers"]  # no deletes
    assert out["preview_now"]["status"] == "previewed", out["preview_now"]
    assert out["preview_now"]["counts"]["unchanged"] == 2, out["preview_now"]
    assert "*/5 * * * *" in out["job_list"]
    assert "not run: needs djsync[celery]" in out["job_list"]
    assert out["change_page"] == 200
    status, page = out["schedule_saved"]
    assert status == 200 and 'a job&#x27;s schedule needs celery' in page, page[-3000:]
    assert 'pip install &quot;djsync[celery]&quot;' in page
    assert out["unscheduled_saved"] == 302  # the same form saves without a schedule

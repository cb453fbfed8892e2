"""The tutorial, the README, the custom target of docs/targets.md and the code of
docs/exports.md run as written: their code blocks are executed in order in a fresh Django
project (SQLite, the demo's data files), so a doc that drifts fails the suite. (The Python
blocks of docs/sources.md are fragments of a site's settings and importers, not run.)

- A ``python`` block whose first line is a comment naming a file (``# shop/models.py``) is
  written to that file; ``# settings.py`` is added to the project's settings (its
  ``INSTALLED_APPS`` extend the project's own).
- Another ``python`` block runs in one interpreter of the project, blocks sharing their
  names; a top-level expression followed by a comment that is a Python literal
  (``run.dry_run  # False``) must equal it (a string ending in ``…``: start with it).
- A ``sh`` block that runs ``manage.py`` is run by bash in the project's folder; in a block
  of ``$ `` commands, the lines under a command are output it must print, in order
  (``…`` stands for any lines, a line ending in ``…`` for any end, times are not compared).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "demo_project" / "demo" / "data"

pytestmark = pytest.mark.skipif(
    os.environ.get("DJSYNC_TEST_DB", "postgres") != "sqlite",
    reason="the docs' project runs on SQLite: once, in the SQLite suite",
)

SETTINGS = """
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "docs"
USE_TZ = True
ROOT_URLCONF = "docproject.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
_PROJECT_APPS = INSTALLED_APPS
"""

#: Runs the python blocks sent on stdin (one JSON string a line) in one namespace; answers
#: a JSON list of problems a line.
DRIVER = r"""
import ast, json, os, sys, traceback
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "docproject.settings")
import django
django.setup()
from django.db import connections

def expected(line):
    if "#" not in line:
        return None
    comment = line.split("#", 1)[1].strip()
    try:
        return (ast.literal_eval(comment),)
    except (ValueError, SyntaxError):
        return None

def run(code, names, problems):
    lines = code.splitlines()
    for stmt in ast.parse(code).body:
        module = ast.Module(body=[stmt], type_ignores=[])
        if not isinstance(stmt, ast.Expr):
            exec(compile(module, "<doc>", "exec"), names)
            continue
        value = eval(compile(ast.Expression(stmt.value), "<doc>", "eval"), names)
        want = expected(lines[stmt.end_lineno - 1][stmt.end_col_offset:])
        if want is None:
            continue
        want = want[0]
        if isinstance(want, str) and want.endswith("…"):
            ok = isinstance(value, str) and value.startswith(want[:-1].rstrip())
        else:
            ok = value == want
        if not ok:
            problems.append(f"{lines[stmt.lineno - 1].strip()}: got {value!r}")

names = {}
for line in sys.stdin:
    problems = []
    try:
        run(json.loads(line), names, problems)
    except Exception:
        problems.append(traceback.format_exc())
    connections.close_all()
    print(json.dumps(problems), flush=True)
"""

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
TIME = re.compile(r" in \d+(\.\d+)? s\b")
MARK = "@@djsync-doc-command-done"


def blocks(path: Path) -> list[tuple[str, str]]:
    return [(m[1], m[2]) for m in FENCE.finditer(path.read_text(encoding="utf-8"))]


class Project:
    """A fresh Django project in ``folder`` that runs a doc's blocks."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.driver: subprocess.Popen[str] | None = None
        #: Commands whose output is not what the doc shows (checked at the end).
        self.problems: list[str] = []
        package = folder / "docproject"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "settings.py").write_text(SETTINGS)
        (package / "urls.py").write_text(
            "from django.contrib import admin\nfrom django.urls import path\n\n"
            'urlpatterns = [path("admin/", admin.site.urls)]\n'
        )
        (folder / "manage.py").write_text(
            "import os, sys\n"
            'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "docproject.settings")\n'
            "from django.core.management import execute_from_command_line\n"
            "execute_from_command_line(sys.argv)\n"
        )
        (folder / "driver.py").write_text(DRIVER)
        shutil.copytree(DATA, folder / "data")
        bin_dir = str(Path(sys.executable).parent)
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        }

    def close(self) -> None:
        if self.driver is not None:
            assert self.driver.stdin is not None
            self.driver.stdin.close()
            self.driver.wait(timeout=60)

    # -- blocks ---------------------------------------------------------------------------
    def run_block(self, lang: str, text: str) -> None:
        if lang == "python":
            first = text.splitlines()[0]
            target = re.match(r"#\s*([\w/]+\.py)\b", first)
            if target and target[1] == "settings.py":
                settings = self.folder / "docproject" / "settings.py"
                settings.write_text(
                    settings.read_text() + text + "\nINSTALLED_APPS = _PROJECT_APPS + "
                    "[a for a in INSTALLED_APPS if a not in _PROJECT_APPS]\n"
                )
            elif target:
                path = self.folder / target[1]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            else:
                self.python(text)
        elif lang == "sh" and "manage.py" in text:
            if any(line.startswith("$ ") for line in text.splitlines()):
                self.session(text)
            else:
                self.bash(text)

    def python(self, code: str) -> None:
        if self.driver is None:
            self.driver = subprocess.Popen(
                [sys.executable, "driver.py"],
                cwd=self.folder,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        assert self.driver.stdin is not None and self.driver.stdout is not None
        self.driver.stdin.write(json.dumps(code) + "\n")
        self.driver.stdin.flush()
        answer = self.driver.stdout.readline()
        assert answer, "the python blocks' interpreter died"
        problems = json.loads(answer)
        assert not problems, f"in\n{code}\n" + "\n".join(problems)

    def bash(self, script: str) -> str:
        done = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{script}\n{done.stdout}{done.stderr}"
        return done.stdout + done.stderr

    def session(self, text: str) -> None:
        """``$ `` commands in one bash, each one's output checked against the lines under it."""
        commands: list[tuple[str, list[str]]] = []
        for line in text.splitlines():
            if line.startswith("$ "):
                commands.append((line[2:], []))
            elif commands:
                commands[-1][1].append(line)
        script = "".join(
            f"{command}\n__rc=$?; echo {MARK}; (exit $__rc)\n" for command, _ in commands
        )
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
        )
        outputs = done.stdout.split(MARK + "\n")
        for (command, expected), output in zip(commands, outputs, strict=False):
            problem = unmatched(expected, output.splitlines())
            if problem is not None:
                self.problems.append(f"$ {command}\n{output}\nlacks: {problem!r}")


def unmatched(expected: list[str], actual: list[str]) -> str | None:
    """The first expected line that the output lacks (in order), or None."""
    lines: Iterator[str] = iter(normal(a) for a in actual)
    for want in expected:
        want = normal(want)
        if not want or want == "…":
            continue
        prefix = want.endswith("…")
        want = want.rstrip("…").rstrip(", ") if prefix else want
        if not any(got.startswith(want) if prefix else got == want for got in lines):
            return want
    return None


def normal(line: str) -> str:
    return TIME.sub(" in <t> s", line.rstrip())


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    made = Project(tmp_path)
    yield made
    made.close()


@pytest.mark.skipif(shutil.which("jq") is None, reason="the tutorial pipes JSON into jq")
def test_the_tutorial_runs_as_written(project: Project) -> None:
    (project.folder / "data" / "broken.csv").write_text(
        _replace_cell(DATA / "products.csv", row=7, column="price", value="abc")
    )
    head = (DATA / "products.csv").read_text().splitlines()[:21]
    (project.folder / "data" / "truncated.csv").write_text("\n".join(head) + "\n")
    for lang, text in blocks(ROOT / "docs" / "tutorial.md"):
        project.run_block(lang, text)
    assert not project.problems, "\n\n".join(project.problems)


def test_the_readme_runs_as_written(project: Project) -> None:
    tutorial = dict(
        (text.splitlines()[0], text) for _, text in blocks(ROOT / "docs" / "tutorial.md")
    )
    project.bash("python manage.py startapp myapp")
    project.run_block(
        "python",
        '# settings.py\nINSTALLED_APPS = ["djsync", "myapp"]\n'
        'DJSYNC = {"FILE_ROOTS": {"data": BASE_DIR / "data"}}\n',
    )
    project.run_block("python", "# myapp/models.py\n" + tutorial["# shop/models.py"])
    project.bash(
        "python manage.py makemigrations myapp -v0 && python manage.py migrate -v0 && "
        'python manage.py shell -c "from myapp.models import Category; import csv; '
        "[Category.objects.create(**row) for row in csv.DictReader(open('data/categories.csv'))]\""
    )
    for lang, text in blocks(ROOT / "README.md"):
        project.run_block(lang, text)
    assert not project.problems, "\n\n".join(project.problems)


#: The CRM SDK that docs/targets.md's custom target imports (``from .sdk import …``): a
#: system of record kept in memory, that refuses a blocked domain as a real one would.
CRM_SDK = """
class CrmError(Exception):
    def __init__(self, message, field=None):
        super().__init__(message)
        self.field = field


class Contacts:
    def __init__(self):
        self.records, self.calls = {}, []

    def list_all(self):
        self.calls.append("list")
        return [dict(record, id=pk) for pk, record in self.records.items()]

    def create(self, **values):
        if values["email"].endswith("@blocked.example"):
            raise CrmError("this domain is blocked", "email")
        self.calls.append("create")
        self.records[str(len(self.records) + 1)] = values

    def update(self, pk, **changed):
        self.calls.append("update")
        self.records[pk].update(changed)

    def delete(self, pk):
        self.calls.append("delete")
        del self.records[pk]


class CrmClient:
    contacts = Contacts()  # one CRM for the whole process

    @classmethod
    def from_settings(cls):
        return cls()
"""

#: After the target's blocks: a CSV synced into the CRM, then a second file's changes.
CRM_RUN = """
from pathlib import Path

import djsync
from crm.sdk import CrmClient
from djsync.models import SyncJob

Path("data/contacts.csv").write_text(
    "email,name,score\\nada@example.com,Ada,9.5\\nbob@example.com,Bob,\\n"
)
job = SyncJob.objects.create(name="crm", importer="crm-contacts", source={"path": "contacts.csv"})
run = djsync.run(job)
run.status, run.created  # ('succeeded', 2)
crm = CrmClient.contacts
sorted(record["email"] for record in crm.records.values())  # ['ada@example.com', 'bob@example.com']
[r["score"] for r in crm.records.values() if r["name"] == "Ada"]  # [Decimal('9.50')]

Path("data/contacts.csv").write_text(
    "email,name,score\\nada@example.com,Ada Lovelace,9.5\\neve@blocked.example,Eve,1\\n"
)
run = djsync.run(job, on_row_error="skip")  # Bob goes, Ada's name changes, Eve is refused
run.status, run.rows_applied  # ('succeeded', 2)
sorted(record["name"] for record in crm.records.values())  # ['Ada Lovelace']
run.row_errors.get().message  # 'the target refused to create it: this domain is blocked'
crm.calls  # ['list', 'create', 'create', 'list', 'update', 'delete']
"""


def test_the_custom_target_runs_as_written(project: Project) -> None:
    """docs/targets.md: the CRM target (under 40 lines, as the doc says) is defined as
    written, a small CSV synced into it, and what it received checked; the HTTP API
    target's class blocks are complete programs too and run."""
    project.bash("python manage.py startapp crm")
    (project.folder / "crm" / "sdk.py").write_text(CRM_SDK)
    project.run_block(
        "python",
        '# settings.py\nINSTALLED_APPS = ["djsync", "crm"]\n'
        'DJSYNC = {"FILE_ROOTS": {"data": BASE_DIR / "data"}}\n',
    )
    project.bash("python manage.py migrate -v0")
    ran = []
    for lang, text in blocks(ROOT / "docs" / "targets.md"):
        if lang == "python" and complete(text):
            project.run_block(lang, text)
            ran.append(text.splitlines()[0])
    assert ran[0] == "# crm/sync.py" and len(ran) == 3, ran
    target = (project.folder / "crm" / "sync.py").read_text()
    lines = target.split("class CrmContacts(Target):", 1)[1].split("@djsync.register")[0]
    assert len(lines.strip().splitlines()) + 1 < 40
    project.python(CRM_RUN)


def complete(text: str) -> bool:
    """A python block meant to run as written: it names its file, or opens with its
    imports (the others are fragments of the reader's own code: ``class Meta`` options,
    a method to add, settings to merge)."""
    first = text.lstrip().splitlines()[0]
    return re.match(r"#\s*[\w/]+\.py\b", first) is not None or first.startswith(
        ("from ", "import ")
    )


def test_the_exports_code_runs_as_written(project: Project, tmp_path: Path) -> None:
    """docs/exports.md: ``export_queryset`` in the tutorial's project (its shop app and
    data). Its other blocks are fragments: a job's target options, a ModelAdmin to add."""
    tutorial = blocks(ROOT / "docs" / "tutorial.md")
    for lang, text in tutorial:
        project.run_block(lang, text)
        if "runsync categories products" in text:
            break  # the shop app, its jobs and its data
    code = [t for lang, t in blocks(ROOT / "docs" / "exports.md") if "export_queryset(" in t]
    assert len(code) == 1
    out = project.folder / "active.csv"
    project.python(code[0].replace("/tmp/active.csv", str(out)))
    project.python(
        "from shop.models import Product\n"
        "import csv\n"
        f"rows = list(csv.DictReader(open({str(out)!r})))\n"
        "len(rows) == Product.objects.filter(active=True).count() > 0  # True\n"
        "sorted(rows[0])  # ['active', 'category_code', 'name', 'price', 'qty', 'sku', 'updated']\n"
    )
    assert not project.problems, "\n\n".join(project.problems)


def _replace_cell(path: Path, *, row: int, column: str, value: str) -> str:
    """The CSV file's text with one cell changed (``row`` counts the header as row 1)."""
    lines = path.read_text().splitlines()
    names = lines[0].split(",")
    cells = lines[row - 1].split(",")
    cells[names.index(column)] = value
    lines[row - 1] = ",".join(cells)
    return "\n".join(lines) + "\n"


def test_unmatched_reads_the_docs_conventions() -> None:
    out = ["categories: succeeded in 0.31 s — 5 created", "  + create a", "  + create b"]
    assert unmatched(["categories: succeeded in 0.02 s — 5 created", "…"], out) is None
    assert unmatched(["  + create b", "  + create a"], out) == "  + create a"
    assert unmatched(["categories: succeeded…"], out) is None
    assert unmatched(["categories: failed…"], out) == "categories: failed"
    assert ast.literal_eval("'x…'") == "x…"

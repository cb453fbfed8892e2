"""Settings for the test suite: PostgreSQL by default, SQLite with DJSYNC_TEST_DB=sqlite."""

import os
import tempfile

SECRET_KEY = "tests"
USE_TZ = True
# Django's default, said out loud: tests/test_i18n.py runs djsync in French.
USE_I18N = True
TIME_ZONE = "Europe/Paris"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "tests.urls"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    # The HTTP API (the djsync[api] extra): its tokens (docs/api.md).
    "rest_framework",
    "rest_framework.authtoken",
    "simple_history",
    "djsync",
    "tests.testapp",
    "demo_project.directory",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    # A request's Accept-Language picks its language (the API's tests ask for French);
    # without one, LANGUAGE_CODE.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
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
STATIC_URL = "static/"

DB = os.environ.get("DJSYNC_TEST_DB", "postgres")
if DB == "sqlite":
    # A file (in memory where /dev/shm exists), not ":memory:": the admin's background
    # threads (tests/test_background.py) then share it as a site's threads share its file,
    # queueing for the lock, where the in-memory database's shared cache fails at once
    # ("database table is locked"). IMMEDIATE, as docs/admin.md advises for threads.
    SQLITE_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    SQLITE_NAME = "test_" + os.environ.get("DJSYNC_PG_NAME", "djsync") + ".sqlite3"
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": ":memory:",
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
            "TEST": {"NAME": os.path.join(SQLITE_DIR, SQLITE_NAME)},
        }
    }
elif DB == "postgres":
    # Each concurrent suite run needs its own database name (DJSYNC_PG_NAME).
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("PGDATABASE", "test"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "TEST": {"NAME": "test_" + os.environ.get("DJSYNC_PG_NAME", "djsync")},
            "CONN_MAX_AGE": 0,
        }
    }
else:
    raise RuntimeError(f"DJSYNC_TEST_DB must be postgres or sqlite, not {DB!r}")

# A second database ("other") for SQL and queryset sources and cross-database syncs; it is
# created only for tests that ask for it (django_db(databases=["default", "other"])).
OTHER = {**DATABASES["default"]}
if DB == "sqlite":
    OTHER = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
else:
    OTHER["TEST"] = {"NAME": DATABASES["default"]["TEST"]["NAME"] + "_other"}
DATABASES["other"] = OTHER

# The demo's directory (the stand-in external system that HTTP-target tests sync into) lives
# on "other", which it shares with the cross-database tests' tables.
DATABASE_ROUTERS = ["demo_project.directory.routers.DirectoryRouter"]
DIRECTORY_DATABASE = "other"
DIRECTORY_DATABASE_EXCLUSIVE = False
DIRECTORY_API_TOKEN = "tests-directory-token"

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "memory://")
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
# The real-worker tests (tests/test_celery*.py) point the app at Redis themselves.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# What jobs may reach (docs/security.md). tests/conftest.py points the "tests" file root at
# each test's tmp_path, so a job names a file written there by its name.
DJSYNC = {
    # The admin's runs work inside the request: a test's transaction is invisible to a
    # thread's own connection. tests/test_background.py turns threads on, in tests that
    # commit (django_db(transaction=True)) and wait for the threads.
    "BACKGROUND_THREADS": False,
    "FILE_ROOTS": {"tests": os.path.join(os.path.dirname(__file__), "artifacts")},
    "SQL_QUERIES": {
        "legacy_items": {
            "query": "SELECT code AS sku, title AS name, cost AS price, stock AS qty, "
            "changed AS updated, live AS active FROM legacy_items",
            "using": "other",
        },
        "legacy_items_short": {
            "query": "SELECT code AS sku, title AS name, stock AS qty FROM legacy_items",
            "using": "other",
        },
        "feed": {
            "query": "SELECT code AS sku, title AS name, cost AS price, stock AS qty, "
            "changed AS updated, live AS active, gone FROM feed",
            "using": "other",
        },
    },
}

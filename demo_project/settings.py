"""Settings of the demo project: SQLite by default, PostgreSQL when DATABASE_URL is set."""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

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
    "djsync",
    "demo_project.demo",
    "demo_project.directory",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "demo_project.wsgi.application"


if os.environ.get("DATABASE_URL"):
    # postgres://user:password@host:5432/name, sqlite:///path (dj-database-url)
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"])}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("DEMO_SQLITE", BASE_DIR / "demo.sqlite3"),
            # The admin's runs work in background threads beside the web requests:
            # writers queue for the lock instead of failing (docs/admin.md).
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        }
    }

# The directory (demo_project/directory, docs/demo-directory.md) stands for an external
# system: its own SQLite database, reached only through its router, and a JSON API under
# /directory/api/ that demo jobs sync into with this token.
DATABASES["directory"] = {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": os.environ.get("DEMO_DIRECTORY_SQLITE", BASE_DIR / "demo-directory.sqlite3"),
    # A server answers requests in threads: writers queue for the lock instead of failing.
    "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
}
DATABASE_ROUTERS = ["demo_project.directory.routers.DirectoryRouter"]
DIRECTORY_DATABASE = "directory"
DIRECTORY_API_TOKEN = os.environ.get("DIRECTORY_API_TOKEN", "demo-directory-token")
# Where the demo's "directory" job finds the directory's API (`make demo` serves it on
# 127.0.0.1:8765 for the time of that job; `manage.py runserver` serves it on 8000).
DIRECTORY_API_URL = os.environ.get("DIRECTORY_API_URL", "http://127.0.0.1:8000/directory/api/")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "Europe/Paris"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
MEDIA_ROOT = BASE_DIR / "media"

# What the demo's jobs may reach (docs/security.md): its data folder, by name. A job names
# a file in it ({"path": "products.csv"}); nothing else on the server.
DJSYNC = {
    "FILE_ROOTS": {"demo": str(BASE_DIR / "demo_project" / "demo" / "data")},
    # The directory's API, the one URL the demo's HTTP target may reach, and its token.
    "HTTP_BASE_URLS": [DIRECTORY_API_URL],
    "CREDENTIALS": {"directory": f"{DIRECTORY_API_TOKEN}"},
}

# Celery: a Redis broker when CELERY_BROKER_URL is set; otherwise tasks run eagerly in
# process (the embedded default: no server needed).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "memory://")
CELERY_TASK_ALWAYS_EAGER = not os.environ.get("CELERY_BROKER_URL")
CELERY_TASK_EAGER_PROPAGATES = True
# Task state (a run's progress) is kept next to the broker; beat reads its schedules from
# the database (django-celery-beat): `celery -A demo_project beat -S django`.
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", os.environ.get("CELERY_BROKER_URL"))
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"djsync": {"handlers": ["console"], "level": "WARNING"}},
}

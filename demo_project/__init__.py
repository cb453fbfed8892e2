"""The demo project: djsync syncing categories, products, departments and employees."""

from .celery import app as celery_app

__all__ = ["celery_app"]

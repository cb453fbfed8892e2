"""App config of the directory, the demo's stand-in external system."""

from django.apps import AppConfig
from django.core.signals import setting_changed


class DirectoryConfig(AppConfig):
    name = "demo_project.directory"
    label = "directory"
    verbose_name = "Directory (external system)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .guards import reset_guards

        setting_changed.connect(reset_guards)

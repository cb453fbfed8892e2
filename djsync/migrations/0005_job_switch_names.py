"""SyncJob's create/update/delete switches become allow_*: a field named ``delete`` hid
Model.delete()."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("djsync", "0004_change_run_without_constraint")]

    operations = [
        migrations.RenameField("syncjob", "create", "allow_create"),
        migrations.RenameField("syncjob", "update", "allow_update"),
        migrations.RenameField("syncjob", "delete", "allow_delete"),
    ]

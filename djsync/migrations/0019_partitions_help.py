"""SyncJob.partitions: its help names every source a run is split by."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("djsync", "0018_webhooks"),
    ]

    operations = [
        migrations.AlterField(
            model_name="syncjob",
            name="partitions",
            field=models.PositiveSmallIntegerField(
                default=1,
                help_text="Split the job's source (a CSV file, a partition column, an API's pages) into this many ranges, each read by a Celery worker, and apply the whole run once (PostgreSQL; 1 to 64). 1: one process.",
                verbose_name="partitions",
            ),
        ),
    ]

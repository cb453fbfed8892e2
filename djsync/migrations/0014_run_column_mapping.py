from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('djsync', '0013_run_progress'),
    ]

    operations = [
        migrations.AddField(
            model_name='syncrun',
            name='column_mapping',
            field=models.JSONField(blank=True, default=dict, verbose_name='column mapping (this upload only)'),
        ),
    ]

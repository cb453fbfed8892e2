from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('djsync', '0012_job_column_mapping'),
    ]

    operations = [
        migrations.AddField(
            model_name='syncrun',
            name='progress',
            field=models.JSONField(blank=True, default=dict, verbose_name='progress'),
        ),
    ]

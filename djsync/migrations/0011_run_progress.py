from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('djsync', '0010_run_phase_times'),
    ]

    operations = [
        migrations.AddField(
            model_name='syncrun',
            name='progress',
            field=models.JSONField(blank=True, default=dict, verbose_name='progress'),
        ),
    ]

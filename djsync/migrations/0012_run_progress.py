from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('djsync', '0011_translations'),
    ]

    operations = [
        migrations.AddField(
            model_name='syncrun',
            name='progress',
            field=models.JSONField(blank=True, default=dict, verbose_name='progress'),
        ),
    ]

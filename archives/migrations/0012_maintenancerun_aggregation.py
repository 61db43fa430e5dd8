from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('archives', '0011_archive_fk_indexes_covered_by_composites'),
    ]

    operations = [
        migrations.AddField(
            model_name='maintenancerun',
            name='packs_aggregated',
            field=models.BigIntegerField(default=0, help_text='Small packs merged (now retiring).'),
        ),
        migrations.AddField(
            model_name='maintenancerun',
            name='packs_aggregated_into',
            field=models.BigIntegerField(default=0, help_text='New packs aggregation wrote.'),
        ),
    ]

"""The business profile's one row exists from the start, so reading it (every pay page GET) never writes."""

from django.db import migrations


def create_profile(apps, schema_editor):
    apps.get_model("payments", "BusinessProfile").objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("payments", "0003_supervisor_indexes")]
    operations = [migrations.RunPython(create_profile, migrations.RunPython.noop)]

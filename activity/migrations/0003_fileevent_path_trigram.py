""""Path contains" in the forensic search is an ILIKE '%…%': on PostgreSQL a trigram GIN index
answers it without reading every event. SQLite (the embedded default) has no such index; there
the search scans, which its small installations can afford."""
from django.db import migrations

CREATE = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    # Django's icontains is UPPER(path::text) LIKE UPPER(%s): the index is on that very expression.
    "CREATE INDEX IF NOT EXISTS fileevent_path_trgm ON activity_fileevent USING gin (upper(path::text) gin_trgm_ops)",
]
DROP = ["DROP INDEX IF EXISTS fileevent_path_trgm"]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for statement in statements:
                schema_editor.execute(statement)
    return run


class Migration(migrations.Migration):
    dependencies = [("activity", "0002_detection_export_search")]
    operations = [migrations.RunPython(_run(CREATE), _run(DROP))]

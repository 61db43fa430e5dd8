"""Cheaper indexes for the same searches: ingestion spends most of its PostgreSQL CPU maintaining
FileEvent's indexes (docs/activity.md "Ingestion cost per index").

* "Path contains" becomes `path ILIKE '%…%'` (activity/search.py PathContains), answered by a
  trigram GIN index on the bare `path` column instead of on the expression `upper(path)`.
* The column `path` keeps ten times the default statistics, so that the planner can tell a
  rare text (the trigram index) from a common one (the time-ordered index) — see below.
* File name and SHA-256 are only ever searched for equality: hash indexes (a 4-byte hash per
  row instead of a 64- or 255-character B-tree key) on PostgreSQL; B-trees on SQLite, which has
  no hash index. The organization is then a filter on the few rows with that name or hash.

On PostgreSQL the new indexes are built CONCURRENTLY (outside a transaction) so that ingestion
goes on while a large table is indexed, and the old ones are dropped only once those are valid."""
from django.db import migrations

POSTGRESQL = {
    "forward": [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS fileevent_path_trgm_ilike ON activity_fileevent "
        "USING gin (path gin_trgm_ops)",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS fileevent_name_hash ON activity_fileevent USING hash (file_name)",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS fileevent_sha256_hash ON activity_fileevent USING hash (sha256) "
        "WHERE sha256 <> ''",
        "DROP INDEX CONCURRENTLY IF EXISTS fileevent_path_trgm",
        # The planner's row estimate for `path ILIKE '%x%'` runs the pattern over the column's
        # histogram: with the default 100 entries a common text ("dropbox", 2 % of the rows)
        # matches none and is estimated at 1,000 rows, so the trigram index is chosen and all
        # 200,000 matches are read and sorted (846 ms at 10 M events) where the time-ordered
        # index finds the newest 50 in a few ms. 1,000 entries tell the two apart.
        "ALTER TABLE activity_fileevent ALTER COLUMN path SET STATISTICS 1000",
        "DROP INDEX CONCURRENTLY IF EXISTS fileevent_org_name",
        "DROP INDEX CONCURRENTLY IF EXISTS fileevent_org_sha256",
    ],
    "backward": [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS fileevent_path_trgm ON activity_fileevent "
        "USING gin (upper(path::text) gin_trgm_ops)",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS fileevent_org_name ON activity_fileevent "
        "(organization_id, file_name)",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS fileevent_org_sha256 ON activity_fileevent "
        "(organization_id, sha256) WHERE sha256 <> ''",
        "DROP INDEX CONCURRENTLY IF EXISTS fileevent_path_trgm_ilike",
        "ALTER TABLE activity_fileevent ALTER COLUMN path SET STATISTICS -1",
        "DROP INDEX CONCURRENTLY IF EXISTS fileevent_name_hash",
        "DROP INDEX CONCURRENTLY IF EXISTS fileevent_sha256_hash",
    ],
}
OTHERS = {
    "forward": [
        "CREATE INDEX IF NOT EXISTS fileevent_name ON activity_fileevent (file_name)",
        "CREATE INDEX IF NOT EXISTS fileevent_sha256 ON activity_fileevent (sha256) WHERE sha256 <> ''",
        "DROP INDEX IF EXISTS fileevent_org_name",
        "DROP INDEX IF EXISTS fileevent_org_sha256",
    ],
    "backward": [
        "CREATE INDEX IF NOT EXISTS fileevent_org_name ON activity_fileevent (organization_id, file_name)",
        "CREATE INDEX IF NOT EXISTS fileevent_org_sha256 ON activity_fileevent (organization_id, sha256) "
        "WHERE sha256 <> ''",
        "DROP INDEX IF EXISTS fileevent_name",
        "DROP INDEX IF EXISTS fileevent_sha256",
    ],
}


def _run(direction):
    def run(apps, schema_editor):
        statements = (POSTGRESQL if schema_editor.connection.vendor == "postgresql" else OTHERS)[direction]
        for statement in statements:
            schema_editor.execute(statement)
    return run


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("activity", "0005_fileevent_ingest_layout")]
    operations = [
        # The two B-trees leave Django's model state (FileEvent.Meta); the SQL below replaces them.
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.RemoveIndex(model_name="fileevent", name="fileevent_org_sha256"),
            migrations.RemoveIndex(model_name="fileevent", name="fileevent_org_name"),
        ]),
        migrations.RunPython(_run("forward"), _run("backward"), atomic=False),
    ]

"""Slimmer block and version rows (issue 12: stored bytes on trees of many small files).

* Block.created_at is gone: nothing read it (the pack row has its own time).
* Block's (archive, last_referenced_at) index is gone: prune reads every version of the archive
  for its mark, so a scan of the archive's blocks costs it no more.
* FileVersion's (archive, committed_at) index stays: a point-in-time listing pages along it.
* FileVersion.path_id holds the id's 32 raw bytes instead of 64 hex characters (archives/fields.py
  keeps it hex in Python). The rows are converted through a new column, on PostgreSQL and SQLite
  alike; the (archive, path_id, committed_at) index is rebuilt on the new column.
"""
from django.db import migrations, models

import archives.fields

PATH_INDEX = "archives_fi_archive_1f170a_idx"
CHUNK = 2000


def _convert(schema_editor, source: str, target: str, convert) -> None:
    """target = convert(source) on every version row: one statement on PostgreSQL, a prepared
    executemany in chunks on SQLite (no hex functions there before 3.41)."""
    connection = schema_editor.connection
    table = connection.ops.quote_name("archives_fileversion")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            expression = "decode(path_id, 'hex')" if target == "path_raw" else "encode(path_raw, 'hex')"
            cursor.execute(f"UPDATE {table} SET {target} = {expression}")
            return
        last = 0
        while True:
            cursor.execute(f"SELECT id, {source} FROM {table} WHERE id > %s ORDER BY id LIMIT %s", [last, CHUNK])
            chunk = cursor.fetchall()
            if not chunk:
                return
            cursor.executemany(f"UPDATE {table} SET {target} = %s WHERE id = %s",
                               [(convert(value), pk) for pk, value in chunk])
            last = chunk[-1][0]


def path_ids_to_bytes(apps, schema_editor):
    _convert(schema_editor, "path_id", "path_raw", bytes.fromhex)


def path_ids_to_hex(apps, schema_editor):
    _convert(schema_editor, "path_raw", "path_id", lambda raw: bytes(raw).hex())


class Migration(migrations.Migration):

    dependencies = [
        ("archives", "0012_maintenancerun_aggregation"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="block", name="archives_bl_archive_d1c895_idx"),
        migrations.RemoveField(model_name="block", name="created_at"),
        migrations.RemoveIndex(model_name="fileversion", name=PATH_INDEX),
        migrations.AddField(model_name="fileversion", name="path_raw",
                            field=models.BinaryField(max_length=32, null=True)),
        # Nullable while both columns exist, so that a migration backwards can re-add it empty
        # and fill it before it is NOT NULL again.
        migrations.AlterField(model_name="fileversion", name="path_id",
                              field=models.CharField(max_length=64, null=True)),
        migrations.RunPython(path_ids_to_bytes, path_ids_to_hex),
        migrations.RemoveField(model_name="fileversion", name="path_id"),
        migrations.RenameField(model_name="fileversion", old_name="path_raw", new_name="path_id"),
        migrations.AlterField(
            model_name="fileversion", name="path_id",
            field=archives.fields.PathIdField(
                help_text="The keyed path id: hex in Python, its 32 bytes in the database.", max_length=32)),
        migrations.AddIndex(model_name="fileversion",
                            index=models.Index(fields=["archive", "path_id", "committed_at"], name=PATH_INDEX)),
    ]

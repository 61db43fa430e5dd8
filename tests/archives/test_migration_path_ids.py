"""Migration 0013 converts every stored path id between 64 hex characters and 32 bytes, both
ways, on the database the suite runs on (PostgreSQL or SQLite), and the rows stay readable."""
import json

import pytest
from django.core import serializers
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from archives.fields import PathIdField
from archives.models import FileVersion
from tests.archives.conftest import block, commit, upload, version

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("archives", "0012_maintenancerun_aggregation")
AFTER = ("archives", "0013_slimmer_index_rows")


def _migrate(target=None) -> None:
    """To `target`, or every app to its latest migration."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target] if target else executor.loader.graph.leaf_nodes())


def _stored_path_ids() -> list:
    with connection.cursor() as cursor:
        cursor.execute("SELECT path_id FROM archives_fileversion ORDER BY id")
        return [value if isinstance(value, str) else bytes(value) for value, in cursor.fetchall()]


def test_path_ids_survive_the_migration_down_and_up(enrolled, alice):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    block_id, frame = block(archive, b"a small file")
    assert upload(client, archive, frame).status_code == 201
    bodies = [version(archive, f"/home/alice/f{n}.txt", [block_id], [12]) for n in range(3)]
    assert commit(client, archive, bodies).status_code == 201
    hex_ids = [body["path_id"] for body in bodies]
    try:
        _migrate(BEFORE)
        assert _stored_path_ids() == hex_ids
        _migrate(AFTER)
        assert _stored_path_ids() == [bytes.fromhex(path_id) for path_id in hex_ids]
    finally:
        _migrate()
    assert list(FileVersion.objects.order_by("id").values_list("path_id", flat=True)) == hex_ids
    listed = client.get(f"/api/v1/archives/{archive}/versions").json()["versions"]
    assert sorted(item["path_id"] for item in listed) == sorted(hex_ids)


def test_path_id_field_serializes_and_validates_the_hex_form(enrolled, alice):
    """dumpdata writes the hex form (loaddata reads it back); full_clean accepts a real path id
    and refuses anything else (BinaryField's byte-length check would refuse every hex id)."""
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    block_id, frame = block(archive, b"abc")
    assert upload(client, archive, frame).status_code == 201
    commit(client, archive, [version(archive, "/f", [block_id], [3])])
    row = FileVersion.objects.get()
    dumped = json.loads(serializers.serialize("json", [row]))
    assert dumped[0]["fields"]["path_id"] == row.path_id and len(row.path_id) == 64
    loaded = next(serializers.deserialize("json", json.dumps(dumped)))
    assert loaded.object.path_id == row.path_id
    field = PathIdField()
    field.run_validators(row.path_id)
    for bad in ("ab" * 31, "AB" * 32, "zz" * 32):
        with pytest.raises(ValidationError):
            field.run_validators(bad)

"""What a commit stores per version: a dense manifest frame header (docs/formats.md §6.4) whose
fields are the row's, and a path id of 32 bytes in the database, read back as hex."""
import uuid

from django.db import connection

from archives.models import FileVersion, Pack
from archives.storage import pack_storage
from formats.frames import FRAME_HEADER_SIZE, pack_decode
from formats.manifest_frames import ManifestFields, manifest_frame_fields
from tests.archives.conftest import block, commit, upload, version


def _committed(client, archive: str, run_id: str | None) -> tuple[FileVersion, bytes]:
    block_id, frame = block(archive, b"a small file")
    assert upload(client, archive, frame).status_code == 201
    body = version(archive, "/home/alice/small.txt", [block_id], [12])
    assert commit(client, archive, [body], run_id=run_id).status_code == 201
    return FileVersion.objects.select_related("manifest_pack", "run").get(), body


def test_a_manifest_frame_carries_the_rows_fields_in_a_dense_header(enrolled, alice):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    run_id = client.post(f"/api/v1/archives/{archive}/runs").json()["run_id"]
    row, body = _committed(client, archive, run_id)
    [(offset, frame)] = list(pack_decode(pack_storage().read_all(row.manifest_pack.storage_key)))
    fields, blob = manifest_frame_fields(frame.payload, frame.block_id)
    assert fields == ManifestFields(version_id=row.uuid, path_id=row.path_id, committed_at=row.committed_at,
                                    deleted=False, stored_size=row.stored_size, block_ids=bytes(row.block_ids),
                                    run_id=uuid.UUID(run_id))
    assert (offset, frame.size) == (row.manifest_offset, row.manifest_frame_size)
    # frame header, header length, the dense header with its run id and one block id, the blob
    assert frame.size == FRAME_HEADER_SIZE + 4 + 50 + 16 + 32 + len(blob)


def test_a_commit_without_a_run_writes_no_run_id(enrolled, alice):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    row, _ = _committed(client, archive, None)
    [(_, frame)] = list(pack_decode(pack_storage().read_all(Pack.objects.get(kind="manifests").storage_key)))
    fields, _ = manifest_frame_fields(frame.payload, frame.block_id)
    assert fields.run_id is None and row.run is None


def test_the_path_id_is_stored_as_32_bytes_and_read_as_hex(enrolled, alice):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    row, body = _committed(client, archive, None)
    with connection.cursor() as cursor:
        cursor.execute("SELECT length(path_id) FROM archives_fileversion")
        assert cursor.fetchone() == (32,)
    assert row.path_id == body["path_id"]
    assert FileVersion.objects.filter(path_id=body["path_id"]).get() == row
    assert FileVersion.objects.filter(path_id__in=[body["path_id"], "00" * 32]).count() == 1
    listed = client.get(f"/api/v1/archives/{archive}/versions", {"path_id": body["path_id"]}).json()["versions"]
    assert [item["path_id"] for item in listed] == [body["path_id"]]

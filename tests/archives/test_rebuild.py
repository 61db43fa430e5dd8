"""rebuild-index: the packs alone (quarantined ones included) recreate the index; a bad pack is skipped."""
import base64
import os
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from archives.gc import orphan_packs_collect
from archives.models import Archive, Block, FileVersion, Pack
from archives.rebuild import archive_index_drop, archive_index_rebuild
from archives.storage import pack_storage
from formats.directories import DirectoryEntry, listing_id_for
from formats.frames import FRAME_MANIFEST, PACK_MAGIC, frame_encode, manifest_frame_id, manifest_frame_payload
from formats.manifests import listing_manifest, manifest_encrypt
from tests.archives.conftest import KEYS, block, commit, upload, version


def _backed_up(client, archive: str, data: bytes, path: str) -> None:
    block_id, frame = block(archive, data)
    assert upload(client, archive, frame).status_code == 201
    assert commit(client, archive, [version(archive, path, [block_id], [len(data)])]).status_code == 201


def _bad_manifest_pack(archive: Archive) -> str:
    """A pack whose frame is intact (checksum right) but whose server fields are not a version's."""
    version_id = uuid.uuid4()
    payload = manifest_frame_payload({"version_id": str(version_id), "path_id": "p"}, b"blob")  # fields missing
    key = f"{archive.organization.uuid}/{archive.uuid}/ff/{uuid.uuid4()}.pack"
    pack_storage().put(key, [PACK_MAGIC, frame_encode(FRAME_MANIFEST, archive.uuid, manifest_frame_id(version_id),
                                                      payload)])
    return key


def _listing_version(archive: str, root: str) -> dict:
    """The commit body of a root's directory listing (docs/formats.md §9), as the agent sends it."""
    version_id, listing_id = uuid.uuid4(), listing_id_for(KEYS, root)
    manifest = listing_manifest(root, [DirectoryEntry(root, 0o40755, 1), DirectoryEntry(f"{root}/empty", 0o40700, 2)])
    blob = manifest_encrypt(KEYS, manifest, archive_id=uuid.UUID(archive), path_id=listing_id, version_id=version_id)
    return {"version_id": str(version_id), "path_id": listing_id, "deleted": False, "block_ids": [],
            "manifest": base64.b64encode(blob).decode()}


def test_rebuilt_rows_tell_a_roots_directory_listing_from_a_file(enrolled, alice):
    """is_listing comes back from the manifest blob's clear version byte, as a commit sets it."""
    client = enrolled(alice)
    archive_id = client.enrollment["archive_id"]
    _backed_up(client, archive_id, b"one", "/home/alice/one.txt")
    listing = _listing_version(archive_id, "/home/alice")
    assert commit(client, archive_id, [listing]).status_code == 201
    archive = Archive.objects.get(uuid=archive_id)
    committed = dict(FileVersion.objects.filter(archive=archive).values_list("path_id", "is_listing"))
    archive_index_drop(archive=archive)

    result = archive_index_rebuild(archive=archive)
    assert result.versions == 2 and not result.skipped_packs
    rebuilt = dict(FileVersion.objects.filter(archive=archive).values_list("path_id", "is_listing"))
    assert rebuilt == committed
    assert rebuilt[listing["path_id"]] is True and list(rebuilt.values()).count(False) == 1


def test_a_pack_with_a_bad_manifest_frame_is_reported_and_skipped_the_rest_is_indexed(enrolled, alice):
    client = enrolled(alice)
    archive_id = client.enrollment["archive_id"]
    _backed_up(client, archive_id, b"one", "/home/alice/one.txt")
    _backed_up(client, archive_id, b"two", "/home/alice/two.txt")
    archive = Archive.objects.get(uuid=archive_id)
    bad = _bad_manifest_pack(archive)
    archive_index_drop(archive=archive)

    result = archive_index_rebuild(archive=archive)
    assert [problem.split(":", 1)[0] for problem in result.skipped_packs] == [bad]
    assert result.packs == 4 and FileVersion.objects.filter(archive=archive).count() == 2
    assert Block.objects.filter(archive=archive).count() == 2
    assert not Pack.objects.filter(storage_key=bad).exists()
    assert pack_storage().read_all(bad).startswith(PACK_MAGIC)  # left as it was


def test_the_command_reports_the_bad_pack_and_fails_after_indexing_the_rest(enrolled, alice):
    client = enrolled(alice)
    archive_id = client.enrollment["archive_id"]
    _backed_up(client, archive_id, b"one", "/home/alice/one.txt")
    archive = Archive.objects.get(uuid=archive_id)
    bad = _bad_manifest_pack(archive)
    err = StringIO()
    with pytest.raises(CommandError, match="1 pack"):
        call_command("rebuild-index", archive_id, "--drop", stdout=StringIO(), stderr=err)
    assert bad in err.getvalue()
    assert FileVersion.objects.filter(archive=archive).count() == 1


def test_rebuild_reads_quarantined_packs_and_puts_them_back(enrolled, alice, pack_dir):
    """A commit lost in a crash is quarantined by the sweep; rebuild-index still finds it."""
    client = enrolled(alice)
    archive_id = client.enrollment["archive_id"]
    _backed_up(client, archive_id, b"kept", "/home/alice/kept.txt")
    _backed_up(client, archive_id, b"lost", "/home/alice/lost.txt")
    archive = Archive.objects.get(uuid=archive_id)
    # The second commit's rows are lost as in a crash between the manifest pack's fsync and commit.
    lost = FileVersion.objects.get(path_id=version(archive_id, "/home/alice/lost.txt", [], [])["path_id"])
    lost_key = lost.manifest_pack.storage_key
    FileVersion.objects.filter(pk=lost.pk).delete()
    Pack.objects.filter(storage_key=lost_key).delete()
    old = (timezone.now() - timedelta(hours=30)).timestamp()
    os.utime(pack_dir / lost_key, (old, old))

    sweep = orphan_packs_collect(grace=timedelta(hours=24), retention=timedelta(days=30))
    assert sweep.quarantined == [lost_key] and not (pack_dir / lost_key).exists()

    result = archive_index_rebuild(archive=archive)
    assert result.restored_packs == [lost_key] and not result.skipped_packs
    assert (pack_dir / lost_key).exists()
    assert FileVersion.objects.filter(archive=archive).count() == 2
    listed = client.get(f"/api/v1/archives/{archive_id}/versions").json()["versions"]
    assert len(listed) == 2
    assert not list(pack_storage().quarantined(""))


def test_rebuild_puts_back_a_quarantined_pack_that_the_index_still_references(enrolled, alice, pack_dir):
    client = enrolled(alice)
    archive_id = client.enrollment["archive_id"]
    block_id, frame = block(archive_id, b"indexed")
    assert upload(client, archive_id, frame).status_code == 201
    key = Pack.objects.get().storage_key
    pack_storage().quarantine(key, at=timezone.now())  # as a sweep on a wrongly restored database did

    result = archive_index_rebuild(archive=Archive.objects.get(uuid=archive_id))
    assert result.restored_packs == [key] and result.packs == 0
    fetched = client.post(f"/api/v1/archives/{archive_id}/blocks/fetch", {"block_ids": [block_id.hex()]},
                          format="json")
    assert fetched.status_code == 200 and fetched.content == frame


def _row_fields(archive: Archive) -> list[tuple]:
    return sorted(FileVersion.objects.filter(archive=archive).values_list(
        "uuid", "path_id", "committed_at", "deleted", "is_listing", "block_ids", "stored_size", "manifest_offset",
        "manifest_frame_size", "run__uuid"), key=lambda row: str(row[0]))


def test_rebuilt_version_rows_equal_the_committed_ones_field_for_field(enrolled, alice):
    """Every field of a row comes back from the dense manifest frame header (docs/formats.md §6.4)."""
    client = enrolled(alice)
    archive_id = client.enrollment["archive_id"]
    run_id = client.post(f"/api/v1/archives/{archive_id}/runs").json()["run_id"]
    one, frame = block(archive_id, b"one")
    assert upload(client, archive_id, frame).status_code == 201
    assert commit(client, archive_id, [version(archive_id, "/home/alice/one.txt", [one], [3]),
                                       version(archive_id, "/home/alice/gone.txt", [], [], deleted=True)],
                  run_id=run_id).status_code == 201
    _backed_up(client, archive_id, b"two", "/home/alice/two.txt")  # no run
    archive = Archive.objects.get(uuid=archive_id)
    committed = _row_fields(archive)
    archive_index_drop(archive=archive)

    result = archive_index_rebuild(archive=archive)
    assert result.versions == 3 and not result.skipped_packs
    rebuilt = _row_fields(archive)
    assert [(*row[:5], bytes(row[5]), *row[6:]) for row in rebuilt] == \
        [(*row[:5], bytes(row[5]), *row[6:]) for row in committed]
    assert {row[-1] for row in rebuilt} == {uuid.UUID(run_id), None}


def test_a_pack_of_json_headed_manifest_frames_is_still_indexed_and_read(enrolled, alice):
    """Servers before format version 4 wrote the server's fields as JSON (§6.3): such packs are
    rebuilt and their manifests served as before."""
    client = enrolled(alice)
    archive_id = client.enrollment["archive_id"]
    one, frame = block(archive_id, b"one")
    assert upload(client, archive_id, frame).status_code == 201
    archive = Archive.objects.get(uuid=archive_id)
    body = version(archive_id, "/home/alice/old.txt", [one], [3])
    version_id, blob, at = uuid.UUID(body["version_id"]), base64.b64decode(body["manifest"]), timezone.now()
    fields = {"archive_id": archive_id, "version_id": str(version_id), "path_id": body["path_id"],
              "committed_at": at.isoformat(), "deleted": False, "stored_size": 140, "block_ids": [one.hex()],
              "run_id": None}
    key = f"{archive.organization.uuid}/{archive.uuid}/ee/{uuid.uuid4()}.pack"
    pack_storage().put(key, [PACK_MAGIC, frame_encode(FRAME_MANIFEST, archive.uuid, manifest_frame_id(version_id),
                                                      manifest_frame_payload(fields, blob))])
    archive_index_drop(archive=archive)

    result = archive_index_rebuild(archive=archive)
    assert result.versions == 1 and not result.skipped_packs
    row = FileVersion.objects.get(archive=archive)
    assert (row.uuid, row.path_id, row.committed_at, bytes(row.block_ids), row.stored_size) == \
        (version_id, body["path_id"], at, one, 140)
    listed = client.get(f"/api/v1/archives/{archive_id}/versions").json()["versions"]
    assert [base64.b64decode(item["manifest"]) for item in listed] == [blob]


def test_a_json_header_whose_path_id_is_not_one_is_reported(enrolled, alice):
    client = enrolled(alice)
    archive = Archive.objects.get(uuid=client.enrollment["archive_id"])
    version_id = uuid.uuid4()
    fields = {"version_id": str(version_id), "path_id": "Z" * 64, "committed_at": timezone.now().isoformat(),
              "deleted": False, "block_ids": []}
    key = f"{archive.organization.uuid}/{archive.uuid}/ee/{uuid.uuid4()}.pack"
    pack_storage().put(key, [PACK_MAGIC, frame_encode(FRAME_MANIFEST, archive.uuid, manifest_frame_id(version_id),
                                                      manifest_frame_payload(fields, b"\x03blob"))])
    result = archive_index_rebuild(archive=archive)
    assert [problem.split(":", 1)[0] for problem in result.skipped_packs] == [key]

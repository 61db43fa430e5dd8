"""Block batches: stored once as an immutable pack, idempotent, and bad input refused whole."""
import os
import uuid

from django.test import override_settings

from archives.models import Block, Pack
from formats.frames import FRAME_MANIFEST, PACK_MAGIC, frame_encode, pack_decode
from tests.archives.conftest import block, upload


def test_missing_lists_only_what_the_archive_lacks(enrolled, alice):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    stored_id, frame = block(archive, b"stored")
    new_id, _ = block(archive, b"new")
    assert upload(client, archive, frame).status_code == 201
    response = client.post(f"/api/v1/archives/{archive}/blocks/missing",
                           {"block_ids": [stored_id.hex(), new_id.hex()]}, format="json")
    assert response.status_code == 200 and response.json() == {"missing": [new_id.hex()]}


def test_a_batch_becomes_one_pack_and_a_retry_stores_nothing(enrolled, alice, pack_dir):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    frames = [block(archive, f"block {i}".encode() * 1000) for i in range(20)]
    body = b"".join(frame for _, frame in frames)
    first = upload(client, archive, body)
    assert first.status_code == 201 and first.json()["stored"] == 20
    again = upload(client, archive, body)
    assert again.json() == {"stored": 0, "duplicates": 20, "pack_id": None}
    pack = Pack.objects.get()
    assert Block.objects.filter(pack=pack).count() == 20
    path = pack_dir / pack.storage_key
    assert path.read_bytes().startswith(PACK_MAGIC) and path.stat().st_size == pack.size
    assert str(alice.organization.uuid) in pack.storage_key and archive in pack.storage_key
    decoded = [bytes(f.block_id) for _, f in pack_decode(path)]
    assert sorted(decoded) == sorted(block_id for block_id, _ in frames)


def test_blocks_of_a_batch_are_stored_in_random_order(enrolled, alice, pack_dir):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    frames = [block(archive, f"ordered {i}".encode()) for i in range(40)]
    upload(client, archive, b"".join(frame for _, frame in frames))
    stored_order = [bytes(f.block_id) for _, f in pack_decode(pack_dir / Pack.objects.get().storage_key)]
    assert stored_order != [block_id for block_id, _ in frames]  # 1 in 40! to fail by chance


@override_settings(HAVEN_MAX_BATCH_BYTES=10_000)
def test_an_oversized_batch_is_413_and_nothing_is_stored(enrolled, alice):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    _, frame = block(archive, os.urandom(20_000))  # incompressible: the frame stays > 10 kB
    response = upload(client, archive, frame + frame)
    assert response.status_code == 413 and response.json()["code"] == "batch_too_large"
    assert not Pack.objects.exists()


def _assert_refused(client, archive, body, pack_dir, expect):
    response = upload(client, archive, body)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_batch"
    assert expect in response.json()["detail"]
    assert not Pack.objects.exists() and not Block.objects.exists()
    assert not pack_dir.exists() or not any(pack_dir.rglob("*.pack"))


def test_a_frame_with_a_wrong_checksum_is_refused_whole(enrolled, alice, pack_dir):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    _, good = block(archive, b"good")
    _, bad = block(archive, b"bad")
    bad = bytearray(bad)
    bad[-1] ^= 1
    _assert_refused(client, archive, good + bytes(bad), pack_dir, "frame 1")


def test_a_frame_whose_length_runs_past_the_body_is_refused(enrolled, alice, pack_dir):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    _, frame = block(archive, b"truncated")
    _assert_refused(client, archive, frame[:-5], pack_dir, "runs past the end")


def test_garbage_is_refused(enrolled, alice, pack_dir):
    client = enrolled(alice)
    _assert_refused(client, client.enrollment["archive_id"], b"this is not a frame at all" * 10, pack_dir, "magic")


def test_a_frame_naming_another_archive_is_refused(enrolled, alice, pack_dir):
    client = enrolled(alice)
    _, frame = block(str(uuid.uuid4()), b"elsewhere")
    _assert_refused(client, client.enrollment["archive_id"], frame, pack_dir, "not this archive")


def test_manifest_frames_cannot_be_uploaded_as_blocks(enrolled, alice, pack_dir):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    frame = frame_encode(FRAME_MANIFEST, uuid.UUID(archive), bytes(32), b"\x01" * 100)
    _assert_refused(client, archive, frame, pack_dir, "only block frames")


def test_a_payload_that_is_not_a_block_is_refused(enrolled, alice, pack_dir):
    from formats.frames import FRAME_BLOCK

    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    frame = frame_encode(FRAME_BLOCK, uuid.UUID(archive), bytes(32), b"\x09" * 100)
    _assert_refused(client, archive, frame, pack_dir, "not a version-1 block")


def test_a_device_cannot_write_another_devices_archive(enrolled, alice):
    own = enrolled(alice, "one")
    other = enrolled(alice, "two")
    target = other.enrollment["archive_id"]
    _, frame = block(target, b"intruder")
    assert upload(own, target, frame).status_code == 404
    assert own.post(f"/api/v1/archives/{target}/blocks/missing", {"block_ids": []}, format="json").status_code == 404
    assert not Pack.objects.exists()


def test_a_deauthorized_device_cannot_upload(enrolled, alice):
    from accounts.models import Device
    from accounts.services import device_deauthorize

    client = enrolled(alice)
    device_deauthorize(device=Device.objects.get(uuid=client.enrollment["device_id"]), actor=alice)
    archive = client.enrollment["archive_id"]
    response = upload(client, archive, block(archive, b"late")[1])
    assert response.status_code == 401 and response.json()["code"] == "device_deauthorized"
    assert not Pack.objects.exists()


def test_malformed_block_ids_in_missing_are_400(enrolled, alice):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    response = client.post(f"/api/v1/archives/{archive}/blocks/missing", {"block_ids": ["zz" * 32, "ab"]},
                           format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid"


def test_the_service_itself_refuses_blocks_before_the_users_key_is_escrowed(enrolled, alice, pack_dir):
    """"No block before escrow" is a rule of blocks_ingest, not of the view: a caller that skips
    the view (a task, a management command) cannot store a block the keystore could not decrypt."""
    import pytest

    from archives.models import Archive
    from archives.services import BlocksBeforeEscrow, blocks_ingest
    from keystore.models import UserKey

    client = enrolled(alice)
    archive_id = client.enrollment["archive_id"]
    archive = Archive.objects.get(uuid=archive_id)
    _, frame = block(archive_id, b"before escrow")
    UserKey.objects.filter(user=alice).update(state=UserKey.State.PENDING)
    with pytest.raises(BlocksBeforeEscrow):
        blocks_ingest(archive=archive, body=frame)
    UserKey.objects.filter(user=alice).delete()
    with pytest.raises(BlocksBeforeEscrow):
        blocks_ingest(archive=archive, body=frame)
    assert not Pack.objects.exists() and not list(pack_dir.rglob("*.pack"))

"""An upload batch read piece by piece: every cut of the body gives the same frames and the same
errors (frame index and byte offset in the whole body) as the body in one buffer."""
import os
import uuid

import pytest

from archives.models import Block, Pack
from archives.upload_batch import BatchInvalid, batch_spool
from formats.frames import FRAME_HEADER_SIZE, FRAME_MANIFEST, frame_encode, frames_decode
from tests.archives.conftest import KEYS, block, upload

ARCHIVE = str(uuid.uuid4())


def _frames(count: int = 12) -> list[tuple[bytes, bytes]]:
    return [block(ARCHIVE, os.urandom(1 + 397 * i)) for i in range(count)]


def _cut(body: bytes, size: int) -> list[bytes]:
    return [body[i:i + size] for i in range(0, len(body), size)]


def _spool(pieces, tmp_path):
    batch = batch_spool(pieces, archive_uuid=uuid.UUID(ARCHIVE), key_id=bytes.fromhex(KEYS.key_id),
                        directory=str(tmp_path))
    try:
        spooled = os.pread(batch.fd, 1 << 24, 0)
    finally:
        os.close(batch.fd)
    return batch, spooled


@pytest.mark.parametrize("size", [1, 7, FRAME_HEADER_SIZE, FRAME_HEADER_SIZE + 1, 1000, 4096, 1 << 20])
def test_any_cut_of_the_body_spools_every_frame_in_order(tmp_path, size):
    frames = _frames()
    body = b"".join(frame for _, frame in frames) + frames[3][1]  # and one duplicate
    batch, spooled = _spool(_cut(body, size), tmp_path)
    assert spooled == body and batch.frames == len(frames) + 1
    decoded = {bytes(f.block_id): (offset, f.size) for offset, f in reversed(list(frames_decode(body)))}
    assert batch.blocks == decoded  # each id once, at its first copy


def _error(body: bytes, size: int, tmp_path) -> str:
    with pytest.raises(BatchInvalid) as raised:
        _spool(_cut(body, size), tmp_path)
    return str(raised.value)


@pytest.mark.parametrize("size", [1, 50, 333, 1 << 20])
def test_errors_name_the_frame_and_offset_in_the_whole_body(tmp_path, size):
    frames = _frames(6)
    head = b"".join(frame for _, frame in frames[:4])
    damaged = bytearray(frames[4][1])
    damaged[-1] ^= 1
    assert _error(head + bytes(damaged) + frames[5][1], size, tmp_path).startswith(
        f"frame 4 at byte offset {len(head)}: checksum mismatch")
    assert _error(head + frames[4][1][:-3], size, tmp_path).startswith(f"frame 4 at byte offset {len(head)}")
    assert "truncated header" in _error(head + frames[4][1][:20], size, tmp_path)
    assert "bad frame magic" in _error(head + b"x" * 200, size, tmp_path)
    manifest = frame_encode(FRAME_MANIFEST, uuid.UUID(ARCHIVE), bytes(32), b"\x01" * 100)
    assert _error(head + manifest, size, tmp_path) == (f"frame 4 at byte offset {len(head)}: only block frames "
                                                       "may be uploaded (kind 2)")
    elsewhere = block(str(uuid.uuid4()), b"elsewhere")[1]
    assert "not this archive" in _error(head + elsewhere, size, tmp_path)


def test_an_oversized_frame_length_is_refused_without_reading_on(tmp_path):
    header = bytearray(block(ARCHIVE, b"x")[1][:FRAME_HEADER_SIZE])
    header[51:55] = (0xFFFFFFF0).to_bytes(4, "big")

    def pieces():
        yield bytes(header)
        raise AssertionError("read past a header that is already wrong")

    with pytest.raises(BatchInvalid, match="frame 0 at byte offset 0: payload length .* exceeds the limit"):
        _spool(pieces(), tmp_path)


def test_a_batch_streamed_in_small_pieces_is_stored(enrolled, alice, pack_dir, monkeypatch):
    from agentapi.apis import blocks as blocks_api

    monkeypatch.setattr(blocks_api, "BODY_PIECE", 1000)
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    frames = [block(archive, os.urandom(3000 + i)) for i in range(5)]
    response = upload(client, archive, b"".join(frame for _, frame in frames))
    assert response.status_code == 201 and response.json()["stored"] == 5
    pack = Pack.objects.get()
    data = (pack_dir / pack.storage_key).read_bytes()
    for row in Block.objects.filter(pack=pack):
        assert data[row.offset:row.offset + row.frame_size] in {frame for _, frame in frames}
    assert sorted(data[row.offset:row.offset + row.frame_size] for row in Block.objects.all()) == \
        sorted(frame for _, frame in frames)

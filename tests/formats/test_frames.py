import os
import uuid

import pytest

from formats.errors import FormatError
from formats.frames import (
    FRAME_BLOCK,
    FRAME_HEADER_SIZE,
    FRAME_MANIFEST,
    MAX_FRAME_PAYLOAD,
    PACK_MAGIC,
    Frame,
    frame_checksum,
    frame_decode,
    frame_encode,
    frame_header,
    frames_decode,
    frames_encode,
    manifest_frame_id,
    manifest_frame_parse,
    manifest_frame_payload,
    pack_decode,
)

A1, A2 = uuid.UUID(int=1), uuid.UUID(int=2)


def _frames():
    return [
        Frame(FRAME_BLOCK, A1, b"\x01" * 32, b"first payload"),
        Frame(FRAME_BLOCK, A2, b"\x02" * 32, os.urandom(100_000)),
        Frame(FRAME_BLOCK, A1, b"\x03" * 32, b""),
        Frame(FRAME_MANIFEST, A1, manifest_frame_id(uuid.UUID(int=7)),
              manifest_frame_payload({"version_id": str(uuid.UUID(int=7))}, b"blob")),
    ]


def test_header_size():
    assert FRAME_HEADER_SIZE == 87
    assert len(frame_encode(FRAME_BLOCK, A1, bytes(32), b"xyz")) == 90


def test_round_trip_batch():
    frames = _frames()
    buf = frames_encode(frames)
    decoded = list(frames_decode(buf))
    assert [f for _, f in decoded] == frames
    offsets = [o for o, _ in decoded]
    expected, pos = [], 0
    for f in frames:
        expected.append(pos)
        pos += f.size
    assert offsets == expected and pos == len(buf)
    for offset, f in decoded:
        assert f.checksum == frame_checksum(f.kind, f.archive_id.bytes, f.block_id, f.payload)
        assert frame_decode(buf[offset : offset + f.size]) == f
        assert f.length == len(f.payload)


def test_frames_encode_matches_frame_encode():
    frames = _frames()
    assert frames_encode(frames) == b"".join(
        frame_encode(f.kind, f.archive_id, f.block_id, f.payload) for f in frames
    )


def test_frame_header_and_payload_are_the_encoded_frame():
    for f in _frames():
        assert frame_header(f.kind, f.archive_id, f.block_id, f.payload) + f.payload == \
            frame_encode(f.kind, f.archive_id, f.block_id, f.payload)


def test_payloads_are_views_not_copies():
    buf = frames_encode(_frames())
    for _, f in frames_decode(buf):
        assert isinstance(f.payload, memoryview) and f.payload.obj is buf


def test_empty_batch():
    assert list(frames_decode(b"")) == []


def test_pack_round_trip(tmp_path):
    frames = _frames()
    data = PACK_MAGIC + frames_encode(frames)
    path = tmp_path / "p.pack"
    path.write_bytes(data)
    for src in (path, str(path), data, memoryview(data)):
        decoded = list(pack_decode(src))
        assert [f for _, f in decoded] == frames
        assert decoded[0][0] == len(PACK_MAGIC)
        for offset, f in decoded:  # offsets index the file directly
            assert frame_decode(data[offset : offset + f.size]) == f
    assert list(pack_decode(PACK_MAGIC)) == []


def test_pack_bad_magic():
    with pytest.raises(FormatError, match="not a Haven pack"):
        pack_decode(b"HVNPACK2" + frames_encode(_frames()))
    with pytest.raises(FormatError, match="not a Haven pack"):
        pack_decode(b"")


def _two():
    f0 = frame_encode(FRAME_BLOCK, A1, bytes(32), b"ok")
    f1 = frame_encode(FRAME_BLOCK, A1, b"\x01" * 32, b"payload")
    return f0, f1


def _error(buf, **kw):
    with pytest.raises(FormatError) as e:
        list(frames_decode(buf, **kw))
    return str(e.value)


def test_truncated_header():
    f0, f1 = _two()
    msg = _error(f0 + f1[:50])
    assert f"frame 1 at byte offset {len(f0)}" in msg and "truncated header" in msg


def test_bad_frame_magic():
    f0, f1 = _two()
    msg = _error(f0 + b"XX" + f1[2:])
    assert f"frame 1 at byte offset {len(f0)}" in msg and "bad frame magic" in msg


def test_unknown_kind():
    f0, f1 = _two()
    msg = _error(f0 + f1[:2] + b"\x09" + f1[3:])
    assert "frame 1" in msg and "unknown frame kind 9" in msg


def test_bad_checksum():
    f0, f1 = _two()
    bad = bytearray(f0 + f1)
    bad[-1] ^= 1
    msg = _error(bytes(bad))
    assert f"frame 1 at byte offset {len(f0)}" in msg and "checksum mismatch" in msg
    bad = bytearray(f0 + f1)
    bad[len(f0) + 60] ^= 1  # inside the stored checksum
    assert "checksum mismatch" in _error(bytes(bad))


def test_a_damaged_block_id_in_the_header_fails_the_checksum():
    f0, f1 = _two()
    bad = bytearray(f0 + f1)
    bad[len(f0) + 19] ^= 1  # first byte of frame 1's block id
    assert "checksum mismatch" in _error(bytes(bad))
    bad = bytearray(f0 + f1)
    bad[len(f0) + 3] ^= 1  # first byte of frame 1's archive id
    assert "checksum mismatch" in _error(bytes(bad))


def test_length_beyond_buffer():
    f0, f1 = _two()
    msg = _error(f0 + f1[:-1])
    assert f"frame 1 at byte offset {len(f0)}" in msg and "runs past the end" in msg


def test_oversize_payload():
    f = frame_encode(FRAME_BLOCK, A1, bytes(32), bytes(1000))
    msg = _error(f, max_payload=999)
    assert "frame 0 at byte offset 0" in msg and "exceeds the limit of 999" in msg
    assert len(list(frames_decode(f, max_payload=1000))) == 1
    # A forged huge length is refused before anything is read or allocated.
    huge = f[:51] + (2**32 - 1).to_bytes(4, "big") + f[55:]
    assert "exceeds the limit" in _error(huge)
    assert MAX_FRAME_PAYLOAD == 8 << 20


def test_pack_error_offsets_count_from_file_start():
    f0, f1 = _two()
    with pytest.raises(FormatError, match=f"frame 1 at byte offset {8 + len(f0)}"):
        list(pack_decode(PACK_MAGIC + f0 + b"XX" + f1[2:]))


def test_frame_decode_exactly_one():
    f0, f1 = _two()
    with pytest.raises(FormatError, match="exactly one"):
        frame_decode(f0 + f1)
    with pytest.raises(FormatError, match="exactly one"):
        frame_decode(b"")


def test_encode_validates():
    with pytest.raises(ValueError):
        frame_encode(3, A1, bytes(32), b"")
    with pytest.raises(ValueError):
        frame_encode(FRAME_BLOCK, A1, bytes(31), b"")
    with pytest.raises(TypeError):
        frame_encode(FRAME_BLOCK, "not-a-uuid", bytes(32), b"")  # type: ignore[arg-type]


def test_manifest_frame_id():
    v = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert manifest_frame_id(v) == v.bytes + bytes(16)


def test_manifest_frame_payload_round_trip():
    fields = {"archive_id": str(A1), "path_id": "ab" * 32, "deleted": False,
              "block_ids": ["cd" * 32], "sizes": [123], "committed_at": "2025-01-01T00:00:00Z",
              "note": "ünïcode"}
    payload = manifest_frame_payload(fields, b"\x01encrypted")
    n = int.from_bytes(payload[:4], "big")
    assert payload[4 : 4 + n] == (
        b'{"archive_id":"00000000-0000-0000-0000-000000000001","block_ids":["' + b"cd" * 32
        + b'"],"committed_at":"2025-01-01T00:00:00Z","deleted":false,'
        b'"note":"\xc3\xbcn\xc3\xafcode",'
        b'"path_id":"' + b"ab" * 32 + b'","sizes":[123]}'
    )
    assert manifest_frame_parse(payload) == (fields, b"\x01encrypted")
    assert manifest_frame_parse(memoryview(payload)) == (fields, b"\x01encrypted")


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\x00\x00", "too short"),
        (b"\x00\x00\x00\x10{}", "runs past"),
        (b"\x00\x00\x00\x02[]", "JSON object"),
        (b"\x00\x00\x00\x02{x", "invalid JSON"),
        (b"\x00\x00\x00\x02\xff\xfe", "invalid JSON"),
        (b'\x00\x00\x00\x0d{"a":1,"a":2}', "duplicate"),
        (b'\x00\x00\x00\x09{"a":NaN}', "NaN"),
        (b'\x00\x00\x00\x0e{"a":Infinity}', "Infinity"),
    ],
)
def test_manifest_frame_parse_errors(payload, message):
    with pytest.raises(FormatError, match=message):
        manifest_frame_parse(payload)


def test_manifest_frame_payload_rejects_nan():
    with pytest.raises(ValueError):
        manifest_frame_payload({"x": float("nan")}, b"")


def test_skipping_checksums_still_checks_structure():
    f0, f1 = _two()
    bad = bytearray(f0 + f1)
    bad[-1] ^= 1  # payload damage: only a checksum (or the reader's own MAC) notices
    assert len(list(frames_decode(bytes(bad), verify_checksums=False))) == 2
    with pytest.raises(FormatError, match="runs past the end"):
        list(frames_decode((f0 + f1)[:-3], verify_checksums=False))

"""The binary version commit body (docs/formats.md §11): the test vector, a round trip, and the
reader refusing every malformed body with a reason."""
import re
import struct
import uuid

import pytest

from formats.commit_body import MAGIC, CommitBodyError, CommitVersion, commit_body_decode, commit_body_encode

RUN = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
FILE = CommitVersion(uuid.UUID("ffeeddcc-bbaa-9988-7766-554433221100"), "ab" * 32, False,
                     [b"\x11" * 32, b"\x22" * 32], b"\x03sealed")
GONE = CommitVersion(uuid.UUID("01a23590-12ab-7b50-8a3d-d02f5ba11d01"), "cd" * 32, True, [], b"\x03gone")
VECTOR = ("48564331" "00112233445566778899aabbccddeeff" "00000002"
          "ffeeddccbbaa99887766554433221100" + "ab" * 32 + "00" "00000002" "00000007"
          + "11" * 32 + "22" * 32 + "037365616c6564"
          + "01a2359012ab7b508a3dd02f5ba11d01" + "cd" * 32 + "01" "00000000" "00000005"
          + "03676f6e65")
LIMITS = {"max_versions": 2000, "max_manifest": 1024}


def decode(body: bytes):
    return commit_body_decode(body, **LIMITS)


def test_the_vector_is_what_the_writer_makes_and_the_reader_reads():
    body = commit_body_encode(RUN, [FILE, GONE])
    assert body.hex() == VECTOR and len(body) == 214
    assert decode(bytes.fromhex(VECTOR)) == (RUN, [FILE, GONE])


def test_no_run_is_sixteen_zero_bytes():
    body = commit_body_encode(None, [GONE])
    assert body[4:20] == bytes(16)
    assert decode(body) == (None, [GONE])


def _item(flags=0, blocks=0, manifest=b"\x03m", block_bytes=None):
    block_bytes = b"\x44" * 32 * blocks if block_bytes is None else block_bytes
    return struct.pack(">16s32sBII", bytes(16), bytes(32), flags, blocks, len(manifest)) + block_bytes + manifest


def _body(*items, count=None):
    return struct.pack(">4s16sI", MAGIC, bytes(16), len(items) if count is None else count) + b"".join(items)


@pytest.mark.parametrize(("body", "reason"), [
    (b"", "a commit body starts with a 24-byte header; this one has 0 bytes"),
    (b"HVC2" + bytes(20) + _item(), "not a commit body of version 1"),
    (b"{\"run_id\": null, \"versions\": []}", "not a commit body of version 1"),
    (_body(count=0), "give 1 to 2000 versions"),
    (_body(_item(), count=2001), "give 1 to 2000 versions"),
    (_body(_item(), count=2), "version 1: the body ends inside its 57-byte header"),
    (_body(_item(flags=0x02)), "version 0: unknown flags 0x02"),
    (_body(_item(flags=0x01, blocks=1)), "version 0: a deleted version cannot reference blocks"),
    (_body(_item(manifest=b"")), "version 0: a manifest is 1 to 1024 bytes (this one 0)"),
    (_body(_item(manifest=b"x" * 1025)), "version 0: a manifest is 1 to 1024 bytes (this one 1025)"),
    (_body(_item(blocks=2, block_bytes=b"\x44" * 40)), "version 0: the body ends inside its block ids or manifest"),
    (_body(_item(blocks=0xFFFFFFFF, block_bytes=b"")), "version 0: the body ends inside its block ids or manifest"),
    (_body(_item())[:-1], "version 0: the body ends inside its block ids or manifest"),
    (_body(_item()) + b"\x00", "1 bytes after the last version"),
    (_body(_item(), _item()) + b"junk", "4 bytes after the last version"),
], ids=lambda value: None if isinstance(value, bytes) else value)
def test_a_malformed_body_is_refused_with_its_reason(body, reason):
    with pytest.raises(CommitBodyError, match=f"^{re.escape(reason)}"):
        decode(body)


def test_block_ids_are_cut_at_32_bytes_in_file_order():
    ids = [bytes([n]) * 32 for n in range(5)]
    _, [version] = decode(_body(_item(blocks=5, block_bytes=b"".join(ids))))
    assert version.block_ids == ids and not version.deleted and version.manifest == b"\x03m"

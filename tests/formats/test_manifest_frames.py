"""Dense manifest frame headers (docs/formats.md §6.4): the vector, both headers read, refusals."""
import uuid
from datetime import UTC, datetime

import pytest

from formats.errors import FormatError
from formats.frames import frame_decode, frame_encode, manifest_frame_id, manifest_frame_payload
from formats.manifest_frames import (
    ManifestFields,
    committed_at_micros,
    manifest_frame_blob,
    manifest_frame_dense_payload,
    manifest_frame_fields,
)

ARCHIVE = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
VERSION = uuid.UUID("ffeeddcc-bbaa-9988-7766-554433221100")
RUN = uuid.UUID("a0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf")
PATH_ID = "094c10ff4a7563da6d9890e55dbb22db24d052631772a06724d6bc6acfb07c3b"
BLOCK = bytes.fromhex("358c7a73f94b5809cb30e9f01732999d6acd6c29ff7c6df280770171fd1f1603")
AT = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
BLOB = bytes.fromhex(  # §8's version-3 manifest blob
    "03d8a6df8e610a7c483ef65e7caa9dbeb0000102030405060708090a0b"
    "01a85fcac32bf56e8aa0e4d8198637ce17d7d167e36f3d409d3998c69fe86600afe0c67c484c72e9"
    "6f877f860d21fe841765aa21aa9ead438645cf1d649852a2d52c5b54fdee7d020a76db25693d6d08"
    "6b866b")
HEADER = bytes.fromhex(
    "00000062" "01" + PATH_ID + "00066191440d1240" "02" "0000000000000090"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf" + BLOCK.hex())
FRAME_HEADER = bytes.fromhex(
    "4846" "02" "00112233445566778899aabbccddeeff" "ffeeddccbbaa99887766554433221100" + "00" * 16
    + "000000d6" "a717cb4ab558a61964acf676bce7d4916aa12c912d7c97d39c50997186325d56")


def _payload(**changes) -> bytes:
    fields = dict(path_id=bytes.fromhex(PATH_ID), committed_at_us=committed_at_micros(AT), deleted=False,
                  stored_size=144, block_ids=BLOCK, run_id=RUN.bytes, manifest_blob=BLOB)
    return manifest_frame_dense_payload(**{**fields, **changes})


def test_the_vector_is_written_byte_for_byte():
    payload = _payload()
    assert payload == HEADER + BLOB
    frame = frame_encode(2, ARCHIVE, manifest_frame_id(VERSION), payload)
    assert frame[:87] == FRAME_HEADER and len(frame) == 301


def test_the_vector_reads_back_every_field():
    frame = frame_decode(FRAME_HEADER + HEADER + BLOB)
    fields, blob = manifest_frame_fields(frame.payload, frame.block_id)
    assert fields == ManifestFields(version_id=VERSION, path_id=PATH_ID, committed_at=AT, deleted=False,
                                    stored_size=144, block_ids=BLOCK, run_id=RUN)
    assert blob == BLOB and manifest_frame_blob(frame.payload) == BLOB


def test_a_tombstone_without_a_run_reads_back():
    payload = _payload(deleted=True, block_ids=b"", run_id=None, stored_size=0)
    assert int.from_bytes(payload[:4], "big") == 50
    fields, _ = manifest_frame_fields(payload, manifest_frame_id(VERSION))
    assert fields.deleted and fields.run_id is None and fields.block_ids == b""


def test_times_before_the_epoch_and_many_blocks_round_trip():
    at = datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC)
    ids = bytes(range(32)) * 3
    payload = _payload(committed_at_us=committed_at_micros(at), block_ids=ids)
    fields, _ = manifest_frame_fields(payload, manifest_frame_id(VERSION))
    assert fields.committed_at == at and fields.block_ids == ids


def test_a_json_header_is_still_read_as_it_was_written():
    payload = manifest_frame_payload({"version_id": str(VERSION), "path_id": PATH_ID}, BLOB)
    assert manifest_frame_fields(payload, manifest_frame_id(VERSION)) == (
        {"version_id": str(VERSION), "path_id": PATH_ID}, BLOB)
    assert manifest_frame_blob(payload) == BLOB


def _with_header(header: bytes) -> bytes:
    return len(header).to_bytes(4, "big") + header + BLOB


@pytest.mark.parametrize("payload, message", [
    (b"\x00\x00", "too short"),
    (b"\x00\x00\x00\x70" + HEADER[4:], "runs past"),
    (_with_header(b""), "neither"),
    (_with_header(b"\x02" + HEADER[5:]), "neither"),
    (_with_header(HEADER[4:53]), "at least 50"),
    (_with_header(HEADER[4:4 + 60]), "run id"),
    (_with_header(HEADER[4:-1]), "whole number"),
    (_with_header(HEADER[4:45] + b"\x04" + HEADER[46:]), "unknown flags"),
    (_with_header(HEADER[4:45] + b"\x03" + HEADER[46:]), "deleted version names blocks"),
    (_with_header(HEADER[4:46] + b"\xff" * 8 + HEADER[54:]), "stored size"),
    (_with_header(HEADER[4:37] + b"\x7f" + b"\xff" * 7 + HEADER[45:]), "commit time"),
])
def test_malformed_headers_are_refused(payload, message):
    with pytest.raises(FormatError, match=message):
        manifest_frame_fields(payload, manifest_frame_id(VERSION))


def test_a_frame_id_that_is_not_a_version_id_is_refused():
    with pytest.raises(FormatError, match="16 zero bytes"):
        manifest_frame_fields(_payload(), VERSION.bytes + b"\x01" * 16)


def test_the_blob_of_an_unknown_header_is_refused():
    with pytest.raises(FormatError, match="neither"):
        manifest_frame_blob(_with_header(b"\x02" + HEADER[5:]))


def test_writers_refuse_ambiguous_values():
    with pytest.raises(ValueError):
        _payload(block_ids=BLOCK[:31])
    with pytest.raises(ValueError):
        _payload(path_id=bytes(31))
    with pytest.raises(ValueError):
        _payload(deleted=True)  # and a block
    with pytest.raises(ValueError):
        committed_at_micros(datetime(2026, 1, 1))  # naive

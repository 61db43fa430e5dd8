"""Dense manifest frame headers (docs/formats.md §6.4, format version 4).

A manifest frame's payload is `u32 header length | header | manifest blob` (§6.3). Version 1's
header was canonical JSON of the server's fields, ~400 bytes for a one-block file (hex ids, an
ISO time, key names): on trees of small files more than the encrypted manifest it carried. The
dense header holds the same fields as fixed-width bytes (~100 bytes); the frame's own header
already names the archive and, through the frame id, the version, so neither is repeated.
Readers tell the two apart by the header's first byte: `{` is JSON, 0x01 the dense header.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from formats.blocks import BLOCK_ID_SIZE
from formats.errors import FormatError
from formats.frames import FRAME_ID_SIZE, strict_json_object

Buffer = bytes | bytearray | memoryview

DENSE_HEADER = 0x01
PATH_ID_SIZE = 32
FLAG_DELETED = 0x01
FLAG_RUN = 0x02
# version(1) | path_id(32) | committed_at µs (i64) | flags(1) | stored_size (u64)
_FIXED = struct.Struct(">B32sqBQ")
_U32 = struct.Struct(">I")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_JSON_OBJECT = ord("{")


@dataclass(frozen=True, slots=True)
class ManifestFields:
    """The server-visible fields of one committed version, as a dense header carries them."""

    version_id: uuid.UUID
    path_id: str  # 64 lowercase hex characters
    committed_at: datetime  # UTC, microseconds
    deleted: bool
    stored_size: int
    block_ids: bytes  # the 32-byte ids back to back, in file order
    run_id: uuid.UUID | None


def committed_at_micros(at: datetime) -> int:
    """µs since the Unix epoch of an aware datetime (exact: integer arithmetic)."""
    if at.tzinfo is None:
        raise ValueError("committed_at must be timezone-aware")
    return (at - _EPOCH) // _MICROSECOND


def manifest_frame_dense_payload(*, path_id: bytes, committed_at_us: int, deleted: bool, stored_size: int,
                                 block_ids: bytes, run_id: bytes | None, manifest_blob: Buffer) -> bytes:
    """Payload of a manifest frame with a dense header (§6.4). `path_id` and `run_id` are raw
    (32 and 16 bytes), `block_ids` the concatenated ids; the caller has checked the values (the
    server's commit), this checks only what would make the bytes ambiguous."""
    if len(path_id) != PATH_ID_SIZE or len(block_ids) % BLOCK_ID_SIZE or (run_id is not None and len(run_id) != 16):
        raise ValueError("path_id is 32 bytes, run_id 16, block_ids a multiple of 32")
    if deleted and block_ids:
        raise ValueError("a deleted version names no blocks")
    flags = (FLAG_DELETED if deleted else 0) | (FLAG_RUN if run_id is not None else 0)
    fixed = _FIXED.pack(DENSE_HEADER, path_id, committed_at_us, flags, stored_size)
    run = run_id or b""
    return b"".join((_U32.pack(len(fixed) + len(run) + len(block_ids)), fixed, run, block_ids, manifest_blob))


def _split(payload: Buffer) -> tuple[memoryview, memoryview]:
    mv = memoryview(payload).cast("B")
    if len(mv) < _U32.size:
        raise FormatError("manifest frame payload too short for its header length")
    (n,) = _U32.unpack_from(mv, 0)
    if n > len(mv) - _U32.size:
        raise FormatError(f"manifest frame header length {n} runs past the payload ({len(mv) - 4} bytes left)")
    return mv[_U32.size:_U32.size + n], mv[_U32.size + n:]


def manifest_frame_blob(payload: Buffer) -> bytes:
    """The manifest blob of a manifest frame payload, JSON or dense header (not parsed)."""
    header, blob = _split(payload)
    if not header or header[0] not in (_JSON_OBJECT, DENSE_HEADER):
        raise FormatError("manifest frame header is neither a JSON object nor a dense header")
    return bytes(blob)


def _dense(header: memoryview, frame_id: bytes) -> ManifestFields:
    if len(header) < _FIXED.size:
        raise FormatError(f"dense manifest frame header of {len(header)} bytes (at least {_FIXED.size})")
    _, path_id, micros, flags, stored_size = _FIXED.unpack_from(header, 0)
    if flags & ~(FLAG_DELETED | FLAG_RUN):
        raise FormatError(f"dense manifest frame header has unknown flags {flags:#04x}")
    at = _FIXED.size
    run_id = None
    if flags & FLAG_RUN:
        if len(header) < at + 16:
            raise FormatError("dense manifest frame header is too short for its run id")
        run_id = uuid.UUID(bytes=bytes(header[at:at + 16]))
        at += 16
    block_ids = bytes(header[at:])
    if len(block_ids) % BLOCK_ID_SIZE:
        raise FormatError("dense manifest frame header: block ids are not a whole number of 32-byte ids")
    if flags & FLAG_DELETED and block_ids:
        raise FormatError("dense manifest frame header: a deleted version names blocks")
    if stored_size > 2**63 - 1:
        raise FormatError("dense manifest frame header: stored size out of range")
    try:
        committed_at = _EPOCH + micros * _MICROSECOND
    except OverflowError:
        raise FormatError("dense manifest frame header: commit time out of range") from None
    return ManifestFields(version_id=uuid.UUID(bytes=bytes(frame_id[:16])), path_id=path_id.hex(),
                          committed_at=committed_at, deleted=bool(flags & FLAG_DELETED), stored_size=stored_size,
                          block_ids=block_ids, run_id=run_id)


def manifest_frame_fields(payload: Buffer, frame_id: Buffer) -> tuple[ManifestFields | dict[str, Any], bytes]:
    """(server fields, manifest blob) of a manifest frame: a ManifestFields for a dense header
    (its version id read from the frame id, whose last 16 bytes must be zero), the JSON object
    of a version-1 header as it was written (the server chose its keys)."""
    header, blob = _split(payload)
    if header and header[0] == _JSON_OBJECT:
        return strict_json_object(header), bytes(blob)
    if not header or header[0] != DENSE_HEADER:
        raise FormatError("manifest frame header is neither a JSON object nor a dense header")
    frame_id = bytes(frame_id)
    if len(frame_id) != FRAME_ID_SIZE or frame_id[16:] != bytes(16):
        raise FormatError("a manifest frame id is a version id and 16 zero bytes")
    return _dense(header, frame_id), bytes(blob)

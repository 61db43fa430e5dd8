"""Frames, upload batches and pack files (docs/formats.md §6).

The server can verify and index these without any key: payloads are already
encrypted, the frame only says whose they are, what they are and how long.
"""

from __future__ import annotations

import json
import os
import struct
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import blake3

from formats.errors import FormatError

Buffer = bytes | bytearray | memoryview

PACK_MAGIC = b"HVNPACK1"
FRAME_MAGIC = b"HF"
FRAME_BLOCK = 1
FRAME_MANIFEST = 2
FRAME_KINDS = (FRAME_BLOCK, FRAME_MANIFEST)
FRAME_ID_SIZE = 32
CHECKSUM_SIZE = 32
MAX_FRAME_PAYLOAD = 8 * 1024 * 1024

# magic(2) | kind(1) | archive_id(16) | block_id(32) | length(u32) | checksum(32)
_HEADER = struct.Struct(">2sB16s32sI32s")
FRAME_HEADER_SIZE = _HEADER.size  # 87
_U32 = struct.Struct(">I")
_MAX_U32 = 0xFFFFFFFF


_CHECKED_HEADER = struct.Struct(">B16s32sI")


def frame_checksum(kind: int, archive_id: bytes, block_id: bytes, payload: Buffer) -> bytes:
    """Unkeyed BLAKE3 over kind, archive id, block id, length and payload.

    Lets the server verify uploads and scrub packs without keys; covering the header too means a
    flipped bit in a stored block id or archive id is caught by a scrub, not only at decryption.
    """
    hasher = blake3.blake3(max_threads=1)
    hasher.update(_CHECKED_HEADER.pack(kind, archive_id, block_id, memoryview(payload).nbytes))
    hasher.update(payload)
    return hasher.digest()


@dataclass(frozen=True)
class Frame:
    """One frame. Decoded frames carry ``payload`` as a view into the input buffer
    and the (verified) ``checksum``; it is ignored when encoding."""

    kind: int
    archive_id: uuid.UUID
    block_id: bytes
    payload: Buffer
    checksum: bytes | None = field(default=None, compare=False)

    @property
    def length(self) -> int:
        """Payload length."""
        return len(self.payload)

    @property
    def size(self) -> int:
        """Encoded size (header + payload): the length stored in the index."""
        return FRAME_HEADER_SIZE + len(self.payload)


def _header(kind: int, archive_id: uuid.UUID, block_id: bytes, payload: Buffer) -> bytes:
    if kind not in FRAME_KINDS:
        raise ValueError(f"unknown frame kind {kind}")
    if not isinstance(archive_id, uuid.UUID):
        raise TypeError("archive_id must be a uuid.UUID")
    if len(block_id) != FRAME_ID_SIZE:
        raise ValueError(f"frame block id must be {FRAME_ID_SIZE} bytes")
    n = memoryview(payload).nbytes
    if n > _MAX_U32:
        raise ValueError("frame payload too large")
    return _HEADER.pack(
        FRAME_MAGIC, kind, archive_id.bytes, bytes(block_id), n,
        frame_checksum(kind, archive_id.bytes, bytes(block_id), payload),
    )


def frame_header(kind: int, archive_id: uuid.UUID, block_id: bytes, payload: Buffer) -> bytes:
    """The header of a frame (checksum included) without its payload: header + payload is
    frame_encode's output, so a batch can be joined once from headers and payloads instead of
    copying every encrypted block into a frame first."""
    return _header(kind, archive_id, block_id, payload)


def frame_encode(kind: int, archive_id: uuid.UUID, block_id: bytes, payload: Buffer) -> bytes:
    """Encode one frame (header + payload)."""
    return b"".join((_header(kind, archive_id, block_id, payload), payload))


def frames_encode(frames: Iterable[Frame]) -> bytes:
    """Encode frames back to back (an upload batch; a pack minus PACK_MAGIC).

    Joins once at the end so each payload is copied exactly once.
    """
    parts: list[Buffer] = []
    for f in frames:
        parts.append(_header(f.kind, f.archive_id, f.block_id, f.payload))
        parts.append(f.payload)
    return b"".join(parts)


def _where(index: int, pos: int) -> str:
    return f"frame {index} at byte offset {pos}"


def _decode(
    mv: memoryview, start: int, max_payload: int, *, first_index: int = 0, verify: bool = True
) -> Iterator[tuple[int, Frame]]:
    end = len(mv)
    pos = start
    index = first_index
    # A batch or pack holds one archive's frames: building a uuid.UUID per frame was the biggest
    # self-time entry of the server's upload profile, so the raw 16 bytes are compared with the
    # previous frame's and its (immutable) UUID is reused.
    last_raw, last_uuid = None, None
    while pos < end:
        # The error messages name the frame ("frame N at byte offset P"); built only on error.
        if end - pos < FRAME_HEADER_SIZE:
            raise FormatError(
                f"{_where(index, pos)}: truncated header ({end - pos} of {FRAME_HEADER_SIZE} bytes)"
            )
        magic, kind, archive_id, block_id, length, checksum = _HEADER.unpack_from(mv, pos)
        if magic != FRAME_MAGIC:
            raise FormatError(f"{_where(index, pos)}: bad frame magic {magic!r}, expected {FRAME_MAGIC!r}")
        if kind not in FRAME_KINDS:
            raise FormatError(f"{_where(index, pos)}: unknown frame kind {kind}")
        if length > max_payload:
            raise FormatError(
                f"{_where(index, pos)}: payload length {length} exceeds the limit of {max_payload}"
            )
        body = pos + FRAME_HEADER_SIZE
        if length > end - body:
            raise FormatError(
                f"{_where(index, pos)}: payload length {length} runs past the end of the buffer "
                f"({end - body} bytes left)"
            )
        payload = mv[body : body + length]
        if verify and frame_checksum(kind, archive_id, block_id, payload) != checksum:
            raise FormatError(f"{_where(index, pos)}: checksum mismatch (header or payload damaged)")
        if archive_id != last_raw:
            last_raw, last_uuid = archive_id, uuid.UUID(bytes=archive_id)
        yield pos, Frame(kind, last_uuid, block_id, payload, checksum)
        pos = body + length
        index += 1


def frames_decode(
    buf: Buffer, *, max_payload: int = MAX_FRAME_PAYLOAD, verify_checksums: bool = True
) -> Iterator[tuple[int, Frame]]:
    """Strictly decode back-to-back frames, yielding (offset of frame start, frame).

    Payloads are memoryview slices of ``buf`` (no copies). Raises FormatError
    naming the frame index and byte offset at the first problem; frames
    yielded before it were fully verified. A reader that authenticates every
    payload itself (the agent restoring: GCM tag and keyed block id) may skip
    the checksums with ``verify_checksums=False``; the structure is still checked.
    """
    return _decode(memoryview(buf).cast("B"), 0, max_payload, verify=verify_checksums)


def frame_decode(buf: Buffer, *, max_payload: int = MAX_FRAME_PAYLOAD, verify_checksums: bool = True) -> Frame:
    """Decode a buffer holding exactly one frame (e.g. read from a pack at an index offset);
    `verify_checksums` as frames_decode's."""
    frames = list(frames_decode(buf, max_payload=max_payload, verify_checksums=verify_checksums))
    if len(frames) != 1:
        raise FormatError(f"expected exactly one frame, found {len(frames)}")
    return frames[0][1]


def pack_decode(
    path_or_bytes: str | os.PathLike[str] | Buffer, *, max_payload: int = MAX_FRAME_PAYLOAD
) -> Iterator[tuple[int, Frame]]:
    """Decode a pack file (path or contents); offsets count from the file start.

    A path is read fully into memory (packs are tens of MiB) rather than
    mmapped, so a pack truncated underneath cannot crash the process.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data: Buffer = path_or_bytes
    else:
        with open(path_or_bytes, "rb") as f:
            data = f.read()
    mv = memoryview(data).cast("B")
    if bytes(mv[: len(PACK_MAGIC)]) != PACK_MAGIC:
        raise FormatError(
            f"not a Haven pack: magic {bytes(mv[:len(PACK_MAGIC)])!r}, expected {PACK_MAGIC!r}"
        )
    return _decode(mv, len(PACK_MAGIC), max_payload)


def manifest_frame_id(version_id: uuid.UUID) -> bytes:
    """The block_id field of a manifest frame: version id bytes + 16 zero bytes."""
    return version_id.bytes + bytes(16)


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8, no NaN: one byte string per value."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise FormatError("duplicate key in JSON object")
    return obj


def _no_constants(name: str) -> Any:
    raise FormatError(f"{name} is not allowed in JSON")


def strict_json_object(data: Buffer) -> dict[str, Any]:
    """Parse a UTF-8 JSON object, rejecting duplicate keys and NaN/Infinity."""
    try:
        obj = json.loads(
            bytes(data).decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"invalid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise FormatError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def manifest_frame_payload(server_fields: dict[str, Any], manifest_blob: Buffer) -> bytes:
    """Payload of a manifest frame: u32 JSON length | canonical JSON | manifest blob."""
    if not isinstance(server_fields, dict):
        raise TypeError("server_fields must be a dict")
    header = canonical_json(server_fields)
    return b"".join((_U32.pack(len(header)), header, manifest_blob))


def manifest_frame_parse(payload: Buffer) -> tuple[dict[str, Any], bytes]:
    """Split a manifest frame payload into (server fields, manifest blob)."""
    mv = memoryview(payload).cast("B")
    if len(mv) < _U32.size:
        raise FormatError("manifest frame payload too short for its JSON length")
    (n,) = _U32.unpack_from(mv, 0)
    if n > len(mv) - _U32.size:
        raise FormatError(
            f"manifest frame JSON length {n} runs past the payload ({len(mv) - 4} bytes left)"
        )
    fields = strict_json_object(mv[_U32.size : _U32.size + n])
    return fields, bytes(mv[_U32.size + n :])

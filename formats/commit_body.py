"""The binary body of a version commit (docs/formats.md §11, version 1): what the agent sends to
`POST archives/<archive>/versions` as `application/vnd.haven.commit`, in place of the JSON body
whose per-version dicts, hex block ids and base64 manifests cost both sides more than the
commit's database work on trees of small files. No Django here: the agent and the server share it.
"""
import struct
import uuid
from collections.abc import Sequence
from typing import NamedTuple

from formats.blocks import BLOCK_ID_SIZE
from formats.errors import FormatError

MEDIA_TYPE = "application/vnd.haven.commit"
MAGIC = b"HVC1"  # the last byte is the version
FLAG_DELETED = 0x01
_HEAD = struct.Struct(">4s16sI")  # magic, run id (zero: none), version count
_ITEM = struct.Struct(">16s32sBII")  # version id, path id, flags, block count, manifest length
_NO_RUN = bytes(16)


class CommitVersion(NamedTuple):
    """One version of a commit, as both encodings carry it."""

    version_id: uuid.UUID
    path_id: str  # 64 lowercase hex characters (the manifest's keyed path id)
    deleted: bool
    block_ids: list[bytes]  # 32 bytes each, in file order
    manifest: bytes  # the encrypted manifest blob (docs/formats.md §5)


class CommitBodyError(FormatError):
    """Not a commit body of version 1; the message says where and why."""


def commit_body_encode(run_id: uuid.UUID | None, versions: Sequence[CommitVersion]) -> bytes:
    """The body, in one piece: the server wants a Content-Length before it reads a body."""
    parts = [_HEAD.pack(MAGIC, run_id.bytes if run_id is not None else _NO_RUN, len(versions))]
    pack = _ITEM.pack
    for version in versions:
        block_ids = version.block_ids
        parts.append(pack(version.version_id.bytes, bytes.fromhex(version.path_id),
                          FLAG_DELETED if version.deleted else 0, len(block_ids), len(version.manifest)))
        if block_ids:
            parts.append(b"".join(block_ids))
        parts.append(version.manifest)
    return b"".join(parts)


def commit_body_decode(body: bytes, *, max_versions: int, max_manifest: int) -> tuple[uuid.UUID | None, list[CommitVersion]]:
    """(run id, versions) of a body, or CommitBodyError: a wrong magic or version, a count outside
    1..max_versions, an unknown flag, a deleted version with blocks, an empty or too large
    manifest, bytes missing or left over."""
    view = memoryview(body)
    if len(view) < _HEAD.size:
        raise CommitBodyError(f"a commit body starts with a {_HEAD.size}-byte header; this one has {len(view)} bytes")
    magic, run_raw, count = _HEAD.unpack_from(view, 0)
    if magic != MAGIC:
        raise CommitBodyError(f"not a commit body of version 1 (it starts {bytes(magic)!r}, not {MAGIC!r})")
    if not 1 <= count <= max_versions:
        raise CommitBodyError(f"give 1 to {max_versions} versions (the header says {count})")
    run_id = None if run_raw == _NO_RUN else uuid.UUID(bytes=run_raw)
    offset, end = _HEAD.size, len(view)
    versions: list[CommitVersion] = []
    item_size, unpack = _ITEM.size, _ITEM.unpack_from
    for index in range(count):
        if offset + item_size > end:
            raise CommitBodyError(f"version {index}: the body ends inside its {item_size}-byte header")
        version_raw, path_raw, flags, blocks, manifest_size = unpack(view, offset)
        offset += item_size
        if flags & ~FLAG_DELETED:
            raise CommitBodyError(f"version {index}: unknown flags 0x{flags:02x}")
        deleted = bool(flags & FLAG_DELETED)
        if deleted and blocks:
            raise CommitBodyError(f"version {index}: a deleted version cannot reference blocks")
        if not 1 <= manifest_size <= max_manifest:
            raise CommitBodyError(f"version {index}: a manifest is 1 to {max_manifest} bytes (this one {manifest_size})")
        blocks_end = offset + blocks * BLOCK_ID_SIZE
        if blocks_end + manifest_size > end:
            raise CommitBodyError(f"version {index}: the body ends inside its block ids or manifest")
        raw = bytes(view[offset:blocks_end])
        block_ids = [raw[start:start + BLOCK_ID_SIZE] for start in range(0, len(raw), BLOCK_ID_SIZE)]
        manifest = bytes(view[blocks_end:blocks_end + manifest_size])
        offset = blocks_end + manifest_size
        versions.append(CommitVersion(uuid.UUID(bytes=version_raw), path_raw.hex(), deleted, block_ids, manifest))
    if offset != end:
        raise CommitBodyError(f"{end - offset} bytes after the last version")
    return run_id, versions

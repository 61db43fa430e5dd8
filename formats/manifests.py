"""Path ids and encrypted file-version manifests (docs/formats.md §4, §5)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag

from formats.blocks import (
    BLOCK_ID_SIZE,
    DEFAULT_LEVEL,
    FORMAT_VERSION,
    MAX_BLOCK_SIZE,
    NONCE_SIZE,
    TAG_SIZE,
    _aead,
    zstd_compress,
    zstd_decompress_bounded,
)
from formats.directories import (
    LISTING_VERSION,
    DirectoryEntry,
    listing_from_json,
    listing_id_for,
    listing_to_json,
    listing_validate,
)
from formats.errors import FormatError, IntegrityError
from formats.frames import canonical_json, strict_json_object
from formats.keys import KEY_ID_SIZE, KeySet
from formats.manifest_binary import ENCODING_RAW, ENCODING_ZSTD, binary_decode, binary_encode

Buffer = bytes | bytearray | memoryview

DENSE_VERSION = 3  # a file manifest whose plaintext is §5.3's binary body (version 1: JSON, still read)
MAX_MANIFEST_SIZE = 256 * 1024 * 1024  # decompressed JSON; ~3 TiB files at 1 MiB blocks
# version(1) | key_id(16) | nonce(12)
MANIFEST_HEADER_SIZE = 1 + KEY_ID_SIZE + NONCE_SIZE
_NONCE_AT = 1 + KEY_ID_SIZE
_PATH_ID_RE = re.compile(r"[0-9a-f]{64}")
_MAX_MODE = 0xFFFFFFFF


def _path_bytes(path: str) -> bytes:
    """The exact bytes hashed and stored for a path (§4); rejects non-canonical paths."""
    if not isinstance(path, str):
        raise TypeError("path must be str (use os.fsdecode for bytes paths)")
    if not path.startswith("/") or "\0" in path:
        raise ValueError(f"path must be absolute and contain no NUL: {path!r}")
    # An empty, "." or ".." component, or a trailing "/" (string searches: this runs per file).
    if path != "/" and ("//" in path or "/./" in path or "/../" in path or path.endswith(("/", "/.", "/.."))):
        raise ValueError(f"path is not normalized (empty, '.', '..' or trailing '/'): {path!r}")
    try:
        return path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise ValueError(f"path contains an unencodable lone surrogate: {path!r}") from None


_path_macs: dict[bytes, hmac.HMAC] = {}


def _path_mac(key: bytes, path_bytes: bytes) -> bytes:
    """HMAC-SHA256 of a path (path_id_for, manifest_seal), from a keyed object copied per path:
    building an HMAC object per path showed at 30 µs a file on small-file trees, and the one-shot
    hmac.digest lets go of the GIL for its few microseconds, so getting it back behind the
    backup's busy threads cost the committing thread far more than the MAC. Same value (test
    vectors)."""
    template = _path_macs.get(key)
    if template is None:
        if len(_path_macs) > 64:
            _path_macs.clear()
        template = _path_macs[key] = hmac.new(key, digestmod=hashlib.sha256)
    mac = template.copy()
    mac.update(path_bytes)
    return mac.digest()


def path_id_for(keys: KeySet, path: str) -> str:
    """Keyed id of a path: the server groups versions by it without learning the path.

    ``path`` is the absolute POSIX path as the agent saw it (docs/formats.md §4).
    """
    return _path_mac(keys.path_id_key, _path_bytes(path)).hex()


@dataclass(slots=True)
class Manifest:
    """One version of one file: metadata plus the ordered blocks of its content."""

    path: str
    size: int
    mtime_ns: int
    mode: int
    block_ids: list[bytes] = field(default_factory=list)
    block_sizes: list[int] = field(default_factory=list)  # plaintext sizes
    deleted: bool = False
    # A directory listing (§9): the directories under the root `path`; then size 0, no blocks.
    directories: list[DirectoryEntry] | None = None

    @property
    def is_listing(self) -> bool:
        return self.directories is not None

    def validate(self) -> None:
        """Raise ValueError unless the fields are consistent (§5.1, §9)."""
        _path_bytes(self.path)
        if self.directories is not None:
            listing_validate(self.path, self.directories)
            if self.size or self.block_ids or self.block_sizes or self.deleted:
                raise ValueError("a directory listing has no size, no blocks and is not deleted")
        if not _is_int(self.size) or self.size < 0:
            raise ValueError("size must be an integer >= 0")
        if not _is_int(self.mtime_ns):
            raise ValueError("mtime_ns must be an integer")
        if not _is_int(self.mode) or not 0 <= self.mode <= _MAX_MODE:
            raise ValueError("mode must be an integer in [0, 2**32)")
        if not isinstance(self.deleted, bool):
            raise ValueError("deleted must be a bool")
        if len(self.block_ids) != len(self.block_sizes):
            raise ValueError("block_ids and block_sizes differ in length")
        for b in self.block_ids:
            if not isinstance(b, bytes) or len(b) != BLOCK_ID_SIZE:
                raise ValueError(f"block ids must be {BLOCK_ID_SIZE} bytes")
        for s in self.block_sizes:
            if not _is_int(s) or not 1 <= s <= MAX_BLOCK_SIZE:
                raise ValueError(f"block sizes must be integers in [1, {MAX_BLOCK_SIZE}]")
        if sum(self.block_sizes) != self.size:
            raise ValueError("size differs from the sum of block_sizes")
        if self.deleted and self.block_ids:
            raise ValueError("a deleted (tombstone) manifest has no blocks")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _to_json(m: Manifest) -> bytes:
    return canonical_json(
        {
            "path": base64.b64encode(_path_bytes(m.path)).decode("ascii"),
            "size": m.size,
            "mtime_ns": m.mtime_ns,
            "mode": m.mode,
            "block_ids": [b.hex() for b in m.block_ids],
            "block_sizes": list(m.block_sizes),
            "deleted": m.deleted,
        }
    )


def _from_json(data: bytes) -> Manifest:
    obj = strict_json_object(data)
    try:
        path_b = base64.b64decode(obj["path"], validate=True)
        block_ids = obj["block_ids"]
        if not isinstance(block_ids, list) or not all(
            isinstance(h, str) and len(h) == 2 * BLOCK_ID_SIZE for h in block_ids
        ):
            raise ValueError("block_ids must be a list of 64-char hex strings")
        block_sizes = obj["block_sizes"]
        if not isinstance(block_sizes, list):
            raise ValueError("block_sizes must be a list")
        m = Manifest(
            path=path_b.decode("utf-8", "surrogateescape"),
            size=obj["size"],
            mtime_ns=obj["mtime_ns"],
            mode=obj["mode"],
            block_ids=[bytes.fromhex(h) for h in block_ids],
            block_sizes=block_sizes,
            deleted=obj["deleted"],
        )
        m.validate()
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        raise FormatError(f"malformed manifest: {type(e).__name__}: {e}") from None
    return m


# Shorter dense bodies are written raw without trying zstd (docs/formats.md §5.3): a frame's
# own header eats what it would save, and the call (which lets go of the GIL) cost more than
# the rest of the manifest on trees of small files.
DENSE_COMPRESS_FROM = 256
_RAW_PREFIX, _ZSTD_PREFIX = bytes((ENCODING_RAW,)), bytes((ENCODING_ZSTD,))


def _to_dense(m: Manifest, path_bytes: bytes | None = None) -> bytes:
    body = binary_encode(_path_bytes(m.path) if path_bytes is None else path_bytes, m.size, m.mtime_ns, m.mode, m.deleted, m.block_ids, m.block_sizes)
    if len(body) >= DENSE_COMPRESS_FROM:
        compressed = zstd_compress(body, DEFAULT_LEVEL)
        if len(compressed) < len(body):
            return _ZSTD_PREFIX + compressed
    return _RAW_PREFIX + body


def _from_dense(plaintext: bytes) -> Manifest:
    if not plaintext or plaintext[0] not in (ENCODING_RAW, ENCODING_ZSTD):
        raise FormatError("malformed manifest: unknown body encoding")
    body = plaintext[1:]
    if plaintext[0] == ENCODING_ZSTD:
        body = zstd_decompress_bounded(body, MAX_MANIFEST_SIZE)
    path_b, size, mtime_ns, mode, deleted, block_ids, block_sizes = binary_decode(body)
    m = Manifest(path=path_b.decode("utf-8", "surrogateescape"), size=size, mtime_ns=mtime_ns, mode=mode,
                 block_ids=block_ids, block_sizes=block_sizes, deleted=deleted)
    try:
        m.validate()
        if _path_bytes(m.path) != path_b:
            raise ValueError("path bytes do not round-trip")
    except ValueError as e:
        raise FormatError(f"malformed manifest: {type(e).__name__}: {e}") from None
    return m


def _check_ids(archive_id: uuid.UUID, path_id: str, version_id: uuid.UUID) -> bytes:
    if not isinstance(archive_id, uuid.UUID) or not isinstance(version_id, uuid.UUID):
        raise TypeError("archive_id and version_id must be uuid.UUID")
    if not isinstance(path_id, str) or not _PATH_ID_RE.fullmatch(path_id):
        raise ValueError("path_id must be 64 lowercase hex chars")
    return bytes.fromhex(path_id)


def _manifest_ad(
    key_id: bytes, archive_id: uuid.UUID, path_id_raw: bytes, version_id: uuid.UUID,
    version: int = FORMAT_VERSION,
) -> bytes:
    return bytes((version,)) + key_id + archive_id.bytes + path_id_raw + version_id.bytes


def _listing(root: str, entries: list[DirectoryEntry]) -> Manifest:
    return Manifest(path=root, size=0, mtime_ns=0, mode=0, directories=entries)


def listing_manifest(root: str, entries: list[DirectoryEntry]) -> Manifest:
    """A directory listing (§9) as the Manifest it is committed and read back as."""
    return _listing(root, sorted(entries, key=lambda e: e.path.encode("utf-8", "surrogateescape")))


def _expected_id(keys: KeySet, manifest: Manifest) -> str:
    return listing_id_for(keys, manifest.path) if manifest.is_listing else path_id_for(keys, manifest.path)


def manifest_encrypt(
    keys: KeySet,
    manifest: Manifest,
    *,
    archive_id: uuid.UUID,
    path_id: str,
    version_id: uuid.UUID,
    version: int = DENSE_VERSION,
    _nonce: bytes | None = None,
) -> bytes:
    """Encrypt a manifest bound (by the AD) to its archive, path and version.

    A file's manifest is written as ``version`` 3 (§5.3) unless 1 (§5.1, JSON) is asked for;
    a listing is always version 2 (§9). ``path_id`` must be the path's (or listing's) id.
    ``_nonce`` exists only for test vectors: reusing a nonce breaks GCM.
    """
    if version not in (FORMAT_VERSION, DENSE_VERSION):
        raise ValueError("a file manifest is written as version 1 or 3")
    path_id_raw = _check_ids(archive_id, path_id, version_id)
    manifest.validate()
    if path_id != _expected_id(keys, manifest):
        raise ValueError("path_id is not the path id (or listing id) of manifest.path")
    return _seal(keys, manifest, archive_id, path_id_raw, version_id, version, _nonce)


def manifest_seal(keys: KeySet, manifest: Manifest, *, archive_id: uuid.UUID, version_id: uuid.UUID,
                  nonce: bytes | None = None) -> tuple[str, bytes]:
    """(path id, encrypted manifest) of a new version (manifest_encrypt's blob): the id is
    computed here, once, instead of by the caller and again to check it (issue 12: on trees of
    small files that HMAC and the path's checks were a tenth of a manifest's cost).

    ``nonce``: 12 fresh random bytes the caller drew (one os.urandom for a whole commit's
    manifests instead of one system call each); never one used before. Drawn here if None.
    """
    if not isinstance(archive_id, uuid.UUID) or not isinstance(version_id, uuid.UUID):
        raise TypeError("archive_id and version_id must be uuid.UUID")
    manifest.validate()
    if manifest.is_listing:
        path_id = listing_id_for(keys, manifest.path)
        return path_id, _seal(keys, manifest, archive_id, bytes.fromhex(path_id), version_id, DENSE_VERSION, nonce)
    path_bytes = manifest.path.encode("utf-8", "surrogateescape")  # as _path_bytes, which validate() ran
    path_id_raw = _path_mac(keys.path_id_key, path_bytes)
    return path_id_raw.hex(), _seal(keys, manifest, archive_id, path_id_raw, version_id, DENSE_VERSION, nonce,
                                    path_bytes)


def _seal(keys: KeySet, manifest: Manifest, archive_id: uuid.UUID, path_id_raw: bytes, version_id: uuid.UUID,
          version: int, _nonce: bytes | None, path_bytes: bytes | None = None) -> bytes:
    """The blob of a validated manifest whose path id was checked (or computed) by the caller."""
    nonce = os.urandom(NONCE_SIZE) if _nonce is None else _nonce
    if len(nonce) != NONCE_SIZE:
        raise ValueError("nonce must be 12 bytes")
    key_id = keys.key_id_bytes
    if manifest.is_listing:
        version = LISTING_VERSION
        plaintext = zstd_compress(listing_to_json(manifest.path, manifest.directories), DEFAULT_LEVEL)
    elif version == DENSE_VERSION:
        plaintext = _to_dense(manifest, path_bytes)
    else:
        plaintext = zstd_compress(_to_json(manifest), DEFAULT_LEVEL)
    ct = _aead(keys.manifest_key).encrypt(
        nonce, plaintext, _manifest_ad(key_id, archive_id, path_id_raw, version_id, version))
    return b"".join((bytes((version,)), key_id, nonce, ct))


def manifest_decrypt(
    keys: KeySet,
    blob: Buffer,
    *,
    archive_id: uuid.UUID,
    path_id: str,
    version_id: uuid.UUID,
) -> Manifest:
    """Decrypt and validate a manifest; IntegrityError unless everything checks out."""
    path_id_raw = _check_ids(archive_id, path_id, version_id)
    mv = memoryview(blob).cast("B")
    if len(mv) < MANIFEST_HEADER_SIZE + TAG_SIZE:
        raise IntegrityError(f"manifest blob too short ({len(mv)} bytes)")
    version = mv[0]
    if version not in (FORMAT_VERSION, LISTING_VERSION, DENSE_VERSION):
        raise IntegrityError(f"unsupported manifest format version {version}")
    key_id = bytes(mv[1:_NONCE_AT])
    if key_id != keys.key_id_bytes:
        raise IntegrityError(
            f"manifest was encrypted with key {key_id.hex()}, not {keys.key_id}"
        )
    try:
        compressed = _aead(keys.manifest_key).decrypt(
            bytes(mv[_NONCE_AT:MANIFEST_HEADER_SIZE]),
            mv[MANIFEST_HEADER_SIZE:],
            _manifest_ad(key_id, archive_id, path_id_raw, version_id, version),
        )
    except InvalidTag:
        raise IntegrityError(
            f"manifest for path id {path_id} version {version_id}: authentication failed "
            "(corrupted, tampered with, or for another archive/path/version)"
        ) from None
    try:
        if version == DENSE_VERSION:
            manifest = _from_dense(compressed)
        else:
            plaintext = zstd_decompress_bounded(compressed, MAX_MANIFEST_SIZE)
            manifest = _listing(*listing_from_json(plaintext)) if version == LISTING_VERSION else _from_json(plaintext)
    except IntegrityError:
        raise
    except FormatError as e:
        raise IntegrityError(str(e)) from None
    if not hmac.compare_digest(_expected_id(keys, manifest), path_id):
        raise IntegrityError("manifest path does not match its path id")
    return manifest

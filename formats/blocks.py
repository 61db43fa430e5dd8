"""Block ids and block encryption (docs/formats.md §3)."""

from __future__ import annotations

import hmac
import os
import threading

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from formats.errors import IntegrityError
from formats.keys import KEY_ID_SIZE, KeySet

Buffer = bytes | bytearray | memoryview

FORMAT_VERSION = 1
BLOCK_ID_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
FLAG_ZSTD = 0x01
_KNOWN_FLAGS = FLAG_ZSTD
MAX_BLOCK_SIZE = 4 * 1024 * 1024  # == chunking.MAX_CHUNK
DEFAULT_LEVEL = 3

# version(1) | flags(1) | key_id(16) | nonce(12)
BLOCK_HEADER_SIZE = 2 + KEY_ID_SIZE + NONCE_SIZE
BLOCK_OVERHEAD = BLOCK_HEADER_SIZE + TAG_SIZE
_NONCE_AT = 2 + KEY_ID_SIZE

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    """One compressor per (thread, level): zstd contexts are not thread-safe."""
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "cctx", None)
    if cache is None:
        cache = _local.cctx = {}
    cctx = cache.get(level)
    if cctx is None:
        cctx = cache[level] = zstandard.ZstdCompressor(
            level=level, write_content_size=True, write_checksum=False
        )
    return cctx


def _decompressor() -> zstandard.ZstdDecompressor:
    dctx: zstandard.ZstdDecompressor | None = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor()
    return dctx


def zstd_compress(data: Buffer, level: int = DEFAULT_LEVEL) -> bytes:
    """zstd with the content size in the frame (decoders bound it before inflating)."""
    return _compressor(level).compress(data)


def zstd_decompress_bounded(data: Buffer, limit: int) -> bytes:
    """Inflate exactly one zstd frame whose declared size is at most ``limit``.

    zstandard ignores ``max_output_size`` when the frame declares its size, so
    the declared size is checked first.
    """
    try:
        size = zstandard.frame_content_size(data)
    except zstandard.ZstdError as e:
        raise IntegrityError(f"bad zstd frame header: {e}") from None
    if size < 0:
        raise IntegrityError("zstd frame does not declare its content size")
    if size > limit:
        raise IntegrityError(f"zstd frame declares {size} bytes, limit is {limit}")
    try:
        out = _decompressor().decompress(data, allow_extra_data=False)
    except zstandard.ZstdError as e:
        raise IntegrityError(f"zstd decompression failed: {e}") from None
    if len(out) != size:
        raise IntegrityError(f"zstd frame declared {size} bytes but produced {len(out)}")
    return out


def block_id_for(keys: KeySet, plaintext: Buffer) -> bytes:
    """Keyed BLAKE3 of the plaintext: dedup for the server, no known-file tests."""
    return blake3.blake3(plaintext, key=keys.block_id_key, max_threads=1).digest()


def _block_ad(flags: int, key_id: bytes, block_id: bytes) -> bytes:
    return bytes((FORMAT_VERSION, flags)) + key_id + block_id


def block_encrypt(
    keys: KeySet,
    block_id: bytes,
    plaintext: Buffer,
    *,
    level: int = DEFAULT_LEVEL,
    _nonce: bytes | None = None,
) -> bytes:
    """Compress (if it helps) then AES-256-GCM a block; the AD binds its id.

    ``plaintext`` must not change during the call (pass bytes, not a live mmap).
    ``_nonce`` exists only for test vectors: reusing a nonce breaks GCM.
    """
    if len(block_id) != BLOCK_ID_SIZE:
        raise ValueError(f"block id must be {BLOCK_ID_SIZE} bytes")
    plaintext = memoryview(plaintext).cast("B")  # count bytes, whatever the buffer
    n = len(plaintext)
    if n > MAX_BLOCK_SIZE:
        raise ValueError(f"block plaintext is {n} bytes, max is {MAX_BLOCK_SIZE}")
    payload, flags = block_compress(plaintext, level)
    return _block_seal(keys, block_id, payload, flags, _nonce)


PROBE_FROM = 64 * 1024  # smaller blocks are simply compressed: zstd gives up on noise quickly there
PROBE_SLICE = 4 * 1024
PROBE_RATIO = 0.97


def _looks_incompressible(data: memoryview) -> bool:
    """A cheap probe of a big block: three 4 KiB slices (start, middle, end) at zstd level 1.
    Random or already-compressed data (photos, archives, video) is then stored as it is,
    without spending a level-3 pass on it; anything that shrinks by 3 % or more is compressed."""
    n = len(data)
    middle = n // 2 - PROBE_SLICE // 2
    sample = b"".join((data[:PROBE_SLICE], data[middle:middle + PROBE_SLICE], data[n - PROBE_SLICE:]))
    return len(_compressor(1).compress(sample)) >= PROBE_RATIO * len(sample)


def block_compress(plaintext: memoryview, level: int = DEFAULT_LEVEL) -> tuple[Buffer, int]:
    """(payload, flags): zstd when it makes the block smaller, else the plaintext itself."""
    n = len(plaintext)
    if not n or (n >= PROBE_FROM and _looks_incompressible(plaintext)):
        return plaintext, 0
    compressed = _compressor(level).compress(plaintext)
    if len(compressed) < n:
        return compressed, FLAG_ZSTD
    return plaintext, 0


_aeads: dict[bytes, AESGCM] = {}


def _aead(key: bytes) -> AESGCM:
    """One AESGCM per key (it holds only the key; every call makes its own cipher context)."""
    aead = _aeads.get(key)
    if aead is None:
        if len(_aeads) > 64:
            _aeads.clear()
        aead = _aeads[key] = AESGCM(key)
    return aead


def _block_seal(keys: KeySet, block_id: bytes, payload: Buffer, flags: int, _nonce: bytes | None) -> bytes:
    nonce = os.urandom(NONCE_SIZE) if _nonce is None else bytes(_nonce)
    if len(nonce) != NONCE_SIZE:
        raise ValueError("nonce must be 12 bytes")
    key_id = keys.key_id_bytes
    # Encrypt straight after the header: no ciphertext temp + concatenation.
    out = bytearray(BLOCK_HEADER_SIZE + len(payload) + TAG_SIZE)
    out[0] = FORMAT_VERSION
    out[1] = flags
    out[2:_NONCE_AT] = key_id
    out[_NONCE_AT:BLOCK_HEADER_SIZE] = nonce
    _aead(keys.block_key).encrypt_into(
        nonce, payload, _block_ad(flags, key_id, block_id), memoryview(out)[BLOCK_HEADER_SIZE:]
    )
    return bytes(out)  # immutable result; the copy measured as noise next to zstd


def block_key_id(blob: Buffer) -> bytes:
    """The key id in a block blob's header (public: the server checks it without any key)."""
    return bytes(memoryview(blob).cast("B")[2:_NONCE_AT])


def block_decrypt(keys: KeySet, block_id: bytes, blob: Buffer) -> bytes:
    """Return the plaintext of ``blob`` only if every check passes (§3.3)."""
    mv = memoryview(blob).cast("B")
    if len(block_id) != BLOCK_ID_SIZE:
        raise IntegrityError(f"block id must be {BLOCK_ID_SIZE} bytes, got {len(block_id)}")
    if len(mv) < BLOCK_OVERHEAD:
        raise IntegrityError(f"block blob too short ({len(mv)} bytes)")
    version, flags = mv[0], mv[1]
    if version != FORMAT_VERSION:
        raise IntegrityError(f"unsupported block format version {version}")
    if flags & ~_KNOWN_FLAGS:
        raise IntegrityError(f"unknown block flags 0x{flags:02x}")
    key_id = block_key_id(mv)
    if key_id != keys.key_id_bytes:
        raise IntegrityError(
            f"block was encrypted with key {key_id.hex()}, not {keys.key_id}"
        )
    try:
        payload = _aead(keys.block_key).decrypt(
            bytes(mv[_NONCE_AT:BLOCK_HEADER_SIZE]),
            mv[BLOCK_HEADER_SIZE:],
            _block_ad(flags, key_id, bytes(block_id)),
        )
    except InvalidTag:
        raise IntegrityError(
            f"block {bytes(block_id).hex()}: authentication failed "
            "(corrupted, tampered with, or not this block)"
        ) from None
    if flags & FLAG_ZSTD:
        plaintext = zstd_decompress_bounded(payload, MAX_BLOCK_SIZE)
    else:
        if len(payload) > MAX_BLOCK_SIZE:
            raise IntegrityError(f"raw block of {len(payload)} bytes exceeds {MAX_BLOCK_SIZE}")
        plaintext = payload
    if not hmac.compare_digest(block_id_for(keys, plaintext), bytes(block_id)):
        raise IntegrityError(f"block {bytes(block_id).hex()}: content does not match its id")
    return plaintext

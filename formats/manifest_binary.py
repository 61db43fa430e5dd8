"""The dense plaintext of a version-3 file manifest (docs/formats.md §5.3).

Version 1 spelt every manifest as canonical JSON with a base64 path and hex block ids, ~300
bytes for a small file before the envelope; version 3 writes the same fields as varints and raw
bytes (~110 bytes for the same file), compressed only when that makes it shorter. Readers of
version 1 stay in formats/manifests.py.
"""

from __future__ import annotations

from formats.blocks import BLOCK_ID_SIZE
from formats.errors import FormatError

ENCODING_RAW = 0
ENCODING_ZSTD = 1
_MAX_VARINT_BYTES = 10  # 64 bits


def _varint(value: int, out: bytearray) -> None:
    if value < 0x80:  # most block counts, sizes' last bytes, short paths: one byte
        out.append(value)
        return
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _zigzag(value: int) -> int:
    return value * 2 if value >= 0 else -value * 2 - 1


def _unzigzag(value: int) -> int:
    return value >> 1 if not value & 1 else -((value + 1) >> 1)


def binary_encode(path_bytes: bytes, size: int, mtime_ns: int, mode: int, deleted: bool,
                  block_ids: list[bytes], block_sizes: list[int]) -> bytes:
    """The §5.3 body (fields already validated by Manifest.validate)."""
    out = bytearray()
    _varint(len(path_bytes), out)
    out += path_bytes
    _varint(size, out)
    _varint(_zigzag(mtime_ns), out)
    _varint(mode, out)
    out.append(1 if deleted else 0)
    _varint(len(block_ids), out)
    for block_id in block_ids:
        out += block_id
    for block_size in block_sizes:
        _varint(block_size, out)
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def varint(self) -> int:
        value = shift = 0
        for count in range(_MAX_VARINT_BYTES):
            if self.at >= len(self.data):
                raise ValueError("truncated varint")
            byte = self.data[self.at]
            self.at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                if byte == 0 and count:
                    raise ValueError("varint is not in its shortest form")
                return value
        raise ValueError("varint longer than 10 bytes")

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.at:
            raise ValueError("truncated field")
        piece = self.data[self.at:self.at + n]
        self.at += n
        return piece


def binary_decode(body: bytes) -> tuple[bytes, int, int, int, bool, list[bytes], list[int]]:
    """(path bytes, size, mtime_ns, mode, deleted, block ids, block sizes); FormatError unless the
    body is exactly one well-formed §5.3 body (the caller validates the fields' meaning)."""
    try:
        reader = _Reader(body)
        path_bytes = reader.take(reader.varint())
        size = reader.varint()
        mtime_ns = _unzigzag(reader.varint())
        mode = reader.varint()
        deleted_byte = reader.take(1)[0]
        if deleted_byte not in (0, 1):
            raise ValueError("deleted must be 0 or 1")
        count = reader.varint()
        if count * BLOCK_ID_SIZE > len(body) - reader.at:
            raise ValueError("more block ids than bytes")
        ids = reader.take(count * BLOCK_ID_SIZE)
        block_ids = [ids[i:i + BLOCK_ID_SIZE] for i in range(0, len(ids), BLOCK_ID_SIZE)]
        block_sizes = [reader.varint() for _ in range(count)]
        if reader.at != len(body):
            raise ValueError("trailing bytes after the manifest")
    except ValueError as e:
        raise FormatError(f"malformed manifest: {e}") from None
    return path_bytes, size, mtime_ns, mode, bool(deleted_byte), block_ids, block_sizes

"""The push restore stream (docs/formats.md §10): another user's files, decrypted by the server's
restore job and re-encrypted to a one-time X25519 key the target agent generated for that job.

X25519 + HKDF-SHA256 + AES-256-GCM from `cryptography`; nonces are a chunk counter (the key is
new for every stream), and each chunk's associated data binds the stream header (job id, server
public key), the chunk's index and whether it is the last one, so a reordered, dropped, replayed
or truncated chunk fails authentication or the end-of-stream check.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from formats.errors import FormatError, IntegrityError

MAGIC = b"HVPS"
VERSION = 1
PUBLIC_KEY_SIZE = 32
CHUNK_SIZE = 1024 * 1024  # plaintext bytes per chunk (the last may be shorter)
MAX_CHUNK_SIZE = 4 * 1024 * 1024
TAG_SIZE = 16
HEADER = struct.Struct(">4sB16s32sI")  # magic, version, job id, server public key, chunk size
CHUNK_HEAD = struct.Struct(">BI")  # flags, ciphertext length
FLAG_FINAL = 0x01
RECORD_FILE = 0x01
RECORD_END = 0x00
_FILE = struct.Struct(">H")  # path length; then path, then _FILE_META
_FILE_META = struct.Struct(">QIq")  # size, mode, mtime_ns
_END = struct.Struct(">QQ")  # files, bytes
_INFO = b"haven/v1/push-stream"


class StreamError(IntegrityError):
    """The stream is not one this job's key wrote in full: tampered, reordered or truncated."""


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def push_keypair_generate() -> tuple[X25519PrivateKey, bytes]:
    """The target agent's one-time key pair: the private key object (kept in memory, never
    serialized) and the 32-byte public key it sends to the server."""
    private = X25519PrivateKey.generate()
    return private, _raw(private.public_key())


def push_stream_key(shared: bytes, *, job_id: uuid.UUID, agent_public: bytes, server_public: bytes) -> bytes:
    """HKDF-SHA256 over the X25519 shared secret; salt = job id, info binds both public keys."""
    if len(agent_public) != PUBLIC_KEY_SIZE or len(server_public) != PUBLIC_KEY_SIZE:
        raise FormatError("X25519 public keys are 32 bytes")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=job_id.bytes,
                info=_INFO + job_id.bytes + agent_public + server_public).derive(shared)


def _exchange(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as error:  # a malformed or low-order (all-zero result) public key
        raise FormatError(f"unusable X25519 public key: {error}") from None


def _nonce(index: int) -> bytes:
    return b"\x00\x00\x00\x00" + index.to_bytes(8, "big")


def _ad(header: bytes, index: int, final: bool) -> bytes:
    return header + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


@dataclass(frozen=True)
class PushFile:
    """A file record: its content (exactly `size` bytes) follows."""

    path: str
    size: int
    mode: int
    mtime_ns: int


@dataclass(frozen=True)
class PushEnd:
    """The end record, inside the final chunk: what the stream held."""

    files: int
    bytes: int


class PushStreamWriter:
    """Writes one stream to `write`: header, then chunks as records fill them; `close` adds the
    end record and the final chunk. `_server_private` exists for the test vectors only."""

    def __init__(self, write: Callable[[bytes], object], *, job_id: uuid.UUID, agent_public: bytes,
                 chunk_size: int = CHUNK_SIZE, _server_private: X25519PrivateKey | None = None):
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size must be 1..{MAX_CHUNK_SIZE}")
        server = _server_private or X25519PrivateKey.generate()  # ephemeral: one stream, memory only
        server_public = _raw(server.public_key())
        key = push_stream_key(_exchange(server, agent_public), job_id=job_id, agent_public=agent_public,
                              server_public=server_public)
        self._aead, self._write, self._chunk_size = AESGCM(key), write, chunk_size
        self.header = HEADER.pack(MAGIC, VERSION, job_id.bytes, server_public, chunk_size)
        self._buffer, self._index, self._file_left, self._closed = bytearray(), 0, 0, False
        self.files = self.bytes = 0
        write(self.header)

    def _emit(self, plaintext: bytes, final: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._index), plaintext, _ad(self.header, self._index, final))
        self._write(CHUNK_HEAD.pack(FLAG_FINAL if final else 0, len(sealed)) + sealed)
        self._index += 1

    def _put(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) > self._chunk_size:  # keep the tail: the final chunk is never empty-by-accident
            self._emit(bytes(self._buffer[:self._chunk_size]), False)
            del self._buffer[:self._chunk_size]

    def file_begin(self, entry: PushFile) -> None:
        if self._file_left or self._closed:
            raise ValueError("the previous file is not complete")
        path = entry.path.encode("utf-8", "surrogateescape")
        if not path or len(path) > 0xFFFF:
            raise ValueError("path must be 1..65535 bytes")
        self._put(bytes([RECORD_FILE]) + _FILE.pack(len(path)) + path
                  + _FILE_META.pack(entry.size, entry.mode, entry.mtime_ns))
        self._file_left = entry.size
        self.files += 1

    def file_data(self, data: bytes) -> None:
        if len(data) > self._file_left:
            raise ValueError("more data than the file's size")
        self._file_left -= len(data)
        self.bytes += len(data)
        self._put(data)

    def close(self) -> None:
        if self._file_left:
            raise ValueError("the last file is not complete")
        self._buffer += bytes([RECORD_END]) + _END.pack(self.files, self.bytes)
        while len(self._buffer) > self._chunk_size:
            self._emit(bytes(self._buffer[:self._chunk_size]), False)
            del self._buffer[:self._chunk_size]
        self._emit(bytes(self._buffer), True)
        self._buffer.clear()
        self._closed = True


def _read_exact(read: Callable[[int], bytes], n: int, what: str) -> bytes:
    data = b""
    while len(data) < n:
        piece = read(n - len(data))
        if not piece:
            raise StreamError(f"the stream ends early (in the {what})")
        data += piece
    return data


def _chunks(read: Callable[[int], bytes], *, job_id: uuid.UUID, private: X25519PrivateKey) -> Iterator[bytes]:
    """Authenticated plaintext chunks in order; raises unless the final chunk ends the stream."""
    header = _read_exact(read, HEADER.size, "header")
    magic, version, job, server_public, chunk_size = HEADER.unpack(header)
    if magic != MAGIC:
        raise StreamError("not a push restore stream")
    if version != VERSION:
        raise StreamError(f"unknown push stream version {version}")
    if job != job_id.bytes:
        raise StreamError("the stream belongs to another job")
    if not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise StreamError("bad chunk size")
    agent_public = _raw(private.public_key())
    aead = AESGCM(push_stream_key(_exchange(private, server_public), job_id=job_id, agent_public=agent_public,
                                  server_public=server_public))
    index = 0
    while True:
        flags, length = CHUNK_HEAD.unpack(_read_exact(read, CHUNK_HEAD.size, "chunk header"))
        if flags & ~FLAG_FINAL or not TAG_SIZE <= length <= chunk_size + TAG_SIZE:
            raise StreamError(f"chunk {index} has a bad header")
        final = bool(flags & FLAG_FINAL)
        sealed = _read_exact(read, length, f"chunk {index}")
        try:
            plaintext = aead.decrypt(_nonce(index), sealed, _ad(header, index, final))
        except InvalidTag:
            raise StreamError(f"chunk {index} failed authentication") from None
        if final:
            if read(1):
                raise StreamError("data follows the final chunk")
            yield plaintext
            return
        yield plaintext
        index += 1


def push_stream_read(read: Callable[[int], bytes], *, job_id: uuid.UUID,
                     private: X25519PrivateKey) -> Iterator[PushFile | bytes | PushEnd]:
    """The stream's records: a PushFile, then its content as bytes pieces, ...; PushEnd last.

    PushEnd is yielded only after the final chunk authenticated and the stream ended, so a
    consumer that places files only on PushEnd never places anything from a partial stream."""
    chunks = _chunks(read, job_id=job_id, private=private)
    buffer = bytearray()

    def need(n: int) -> bytes:
        while len(buffer) < n:
            piece = next(chunks, None)
            if piece is None:
                raise StreamError("the stream's records end early")
            buffer.extend(piece)
        out = bytes(buffer[:n])
        del buffer[:n]
        return out

    files = nbytes = 0
    while True:
        kind = need(1)[0]
        if kind == RECORD_END:
            declared = PushEnd(*_END.unpack(need(_END.size)))
            if next(chunks, None) is not None or buffer:  # the end record closes the final chunk
                raise StreamError("records follow the end record")
            if declared != PushEnd(files, nbytes):
                raise StreamError("the end record does not match the stream's content")
            yield declared
            return
        if kind != RECORD_FILE:
            raise StreamError(f"unknown record type {kind}")
        (length,) = _FILE.unpack(need(_FILE.size))
        path = need(length).decode("utf-8", "surrogateescape")
        size, mode, mtime_ns = _FILE_META.unpack(need(_FILE_META.size))
        files += 1
        yield PushFile(path=path, size=size, mode=mode, mtime_ns=mtime_ns)
        left = size
        while left:
            if not buffer:
                piece = next(chunks, None)
                if piece is None:
                    raise StreamError("the stream ends inside a file")
                buffer.extend(piece)
            take = bytes(buffer[:left])
            del buffer[:len(take)]
            left -= len(take)
            nbytes += len(take)
            yield take

"""An upload batch read as it arrives: each frame checked when its last byte is in, the checked
bytes spooled to an unnamed temporary file, never the whole body in memory (archives/ingest.py
then builds the pack from the spool in random order).

The body comes in pieces of whatever size its reader gives. A frame that lies wholly inside a
piece is checked and spooled from that piece without a copy; only a frame cut by a piece
boundary is gathered in a buffer (at most one frame, so memory stays below a frame plus a piece).
Errors name the frame by its index and byte offset in the whole body, as frames_decode does for
a body in one buffer.
"""
import os
import re
import struct
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from formats.blocks import BLOCK_OVERHEAD, FORMAT_VERSION, MAX_BLOCK_SIZE, block_key_id
from formats.errors import FormatError
from formats.frames import FRAME_BLOCK, FRAME_HEADER_SIZE, FRAME_MAGIC, frames_decode

MAX_BLOCK_FRAME_PAYLOAD = MAX_BLOCK_SIZE + BLOCK_OVERHEAD
_LENGTH = struct.Struct(">I")
_LENGTH_AT = len(FRAME_MAGIC) + 1 + 16 + 32  # magic | kind | archive id | block id | length ...
_WHERE = re.compile(r"frame (\d+) at byte offset (\d+)")


class BatchInvalid(Exception):
    """An upload batch broke the format or the rules; nothing of it was stored."""


@dataclass
class SpooledBatch:
    """The checked frames of a batch: `fd` holds them back to back as they came; `blocks` maps
    each distinct block id to its first copy (offset in the spool, frame size)."""

    fd: int
    frames: int = 0
    blocks: dict[bytes, tuple[int, int]] = field(default_factory=dict)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view):]


class _Reader:
    def __init__(self, archive_uuid: uuid.UUID, key_id: bytes, batch: SpooledBatch):
        self.archive_uuid, self.key_id, self.batch = archive_uuid, key_id, batch
        self.offset = 0  # body offset of the first byte not yet spooled

    def complete(self, view: memoryview) -> int:
        """How many leading bytes of `view` are whole frames (or a header that is wrong already,
        so that decoding it reports the error now rather than at the end of the body)."""
        pos, size = 0, len(view)
        while size - pos >= FRAME_HEADER_SIZE:
            length = _LENGTH.unpack_from(view, pos + _LENGTH_AT)[0]
            if view[pos:pos + 2] != FRAME_MAGIC or length > MAX_BLOCK_FRAME_PAYLOAD:
                return pos + FRAME_HEADER_SIZE
            if size - pos - FRAME_HEADER_SIZE < length:
                break
            pos += FRAME_HEADER_SIZE + length
        return pos

    def take(self, view: memoryview) -> None:
        """Check the whole frames in `view` (as `complete` measured it) and spool them."""
        batch, first = self.batch, self.batch.frames
        try:
            for offset, frame in frames_decode(view, max_payload=MAX_BLOCK_FRAME_PAYLOAD):
                index = batch.frames
                if frame.kind != FRAME_BLOCK:
                    raise BatchInvalid(self._where(index, offset) + f": only block frames may be uploaded "
                                                                    f"(kind {frame.kind})")
                if frame.archive_id != self.archive_uuid:
                    raise BatchInvalid(self._where(index, offset) + f": the frame names archive "
                                                                    f"{frame.archive_id}, not this archive")
                payload = frame.payload
                if len(payload) < BLOCK_OVERHEAD or payload[0] != FORMAT_VERSION:
                    raise BatchInvalid(self._where(index, offset) + f": the payload is not a "
                                                                    f"version-{FORMAT_VERSION} block")
                if block_key_id(payload) != self.key_id:
                    raise BatchInvalid(self._where(index, offset) + ": the block is encrypted with a key that "
                                                                    "is not the user's escrowed key")
                batch.blocks.setdefault(frame.block_id, (self.offset + offset, FRAME_HEADER_SIZE + len(payload)))
                batch.frames += 1
        except FormatError as error:  # its frame index and offset count from the start of `view`
            raise BatchInvalid(_WHERE.sub(lambda m: self._where(first + int(m[1]), int(m[2])), str(error), 1)) \
                from None
        _write_all(batch.fd, view)
        self.offset += len(view)

    def _where(self, index: int, offset: int) -> str:
        return f"frame {index} at byte offset {self.offset + offset}"


def batch_spool(pieces: Iterable[bytes], *, archive_uuid: uuid.UUID, key_id: bytes,
                directory: str | None = None) -> SpooledBatch:
    """Read, check and spool a batch; the caller closes `.fd` (an unnamed file: it disappears
    then, or with the process). BatchInvalid at the first frame that breaks a rule."""
    fd = _unnamed_file(directory)
    batch = SpooledBatch(fd=fd)
    try:
        reader = _Reader(archive_uuid, key_id, batch)
        pending = bytearray()  # the start of a frame that a piece boundary cut
        for piece in pieces:
            if pending:
                pending += piece
                buffer = pending
            else:
                buffer = piece
            tail = None
            with memoryview(buffer) as view:
                done = reader.complete(view)
                if done:
                    reader.take(view[:done])
                if done or buffer is not pending:  # a new buffer: views of the old one may live on
                    tail = bytearray(view[done:])
            if tail is not None:
                pending = tail
        if pending:  # a truncated last frame: decoding it names what is missing
            with memoryview(pending) as view:
                reader.take(view)
    except BaseException:
        os.close(fd)
        raise
    return batch


def _unnamed_file(directory: str | None) -> int:
    """A read-write file with no name (O_TMPFILE): nothing to clean up after a crash."""
    directory = directory or tempfile.gettempdir()
    try:
        return os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o600)
    except (AttributeError, OSError):  # a file system without O_TMPFILE
        fd, path = tempfile.mkstemp(dir=directory)
        os.unlink(path)
        return fd

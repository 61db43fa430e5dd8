"""Files back from their blocks: the one implementation the agent's restore and the server's web
restore share (DESIGN §2: the server reads encrypted data through the code the agent writes it with).

Not a format of its own: it applies what docs/formats.md already specifies — a frame's kind, ids
and checksum (§6.1), the block's key id, GCM tag and keyed id (§3.3), and the manifest's block
order and sizes (§5.1) — to turn fetched frames into file contents. Callers own the I/O: where
frames come from (HTTP for the agent, pack files for the server) and where bytes go (a file at
an offset, a zip entry).
"""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from formats.blocks import BLOCK_OVERHEAD, MAX_BLOCK_SIZE, block_decrypt
from formats.errors import FormatError, IntegrityError
from formats.frames import CHECKSUM_SIZE, FRAME_BLOCK, FRAME_HEADER_SIZE, Frame, frames_decode
from formats.keys import KeySet
from formats.manifests import Manifest

Buffer = bytes | bytearray | memoryview
ReadInto = Callable[[memoryview], int]  # fills (part of) the view, 0 at the end of the data

MAX_BLOCK_FRAME_PAYLOAD = MAX_BLOCK_SIZE + BLOCK_OVERHEAD
FETCH_BYTES = 16 * 1024 * 1024  # plaintext bytes asked for at once: memory stays bounded
FETCH_BLOCKS = 5000


class ReassemblyError(IntegrityError):
    """Fetched data or a listing did not check out: nothing of it may be used."""


# --- which files ------------------------------------------------------------------------------

def path_within(path: str, prefix: str) -> bool:
    """Is `path` the prefix itself or under it? ("/a/b" is not under "/a/bc".)"""
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def path_prefix_normalize(prefix: str) -> str:
    """An absolute POSIX prefix in the form manifests store paths (no "..", no trailing "/").

    ValueError for anything relative: a restore selection is never resolved against a working
    directory the caller did not choose.
    """
    if not isinstance(prefix, str) or not prefix.startswith("/") or "\0" in prefix:
        raise ValueError(f"a path to restore must be absolute: {prefix!r}")
    normalized = posixpath.normpath(prefix)
    return "/" + normalized.lstrip("/")  # normpath keeps a leading "//" (POSIX allows it; manifests never have it)


def restore_selection(manifests: Iterable[Manifest], prefixes: Sequence[str] = ()) -> list[Manifest]:
    """The files to restore, by path: deleted ones and directory listings (docs/formats.md §9)
    left out, only those under a prefix (if any).

    A path listed twice is refused: two versions of one file would share one destination.
    """
    chosen = sorted((m for m in manifests if not m.deleted and m.directories is None
                     and (not prefixes or any(path_within(m.path, p) for p in prefixes))), key=lambda m: m.path)
    duplicated = {a.path for a, b in zip(chosen, chosen[1:]) if a.path == b.path}
    if duplicated:
        raise ReassemblyError(f"the server listed {len(duplicated)} path(s) twice, e.g. {sorted(duplicated)[0]!r}")
    return chosen


# --- one file's layout ------------------------------------------------------------------------

class Extent(NamedTuple):
    """Where one block's plaintext goes in its file (a tuple: a restore makes one per block of
    every file before fetching, and a frozen dataclass is slower to make)."""

    block_id: bytes
    offset: int
    size: int


def file_extents(manifest: Manifest) -> list[Extent]:
    """The blocks of a file in manifest order with their offsets; the sizes must add up."""
    if len(manifest.block_ids) != len(manifest.block_sizes) or sum(manifest.block_sizes) != manifest.size:
        raise ReassemblyError(f"the manifest of {manifest.path!r} does not add up to its size")
    extents, offset = [], 0
    for block_id, size in zip(manifest.block_ids, manifest.block_sizes):
        extents.append(Extent(block_id, offset, size))
        offset += size
    return extents


@dataclass(slots=True)
class FileAssembly:
    """One file whose blocks may arrive in any order (the agent fetches several batches at once,
    and a block shared by files is fetched once). Not thread-safe: callers hold a lock."""

    manifest: Manifest
    extents: list[Extent] = field(init=False)
    remaining: int = field(init=False)  # blocks still to write
    written: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.extents = file_extents(self.manifest)
        self.remaining = len(self.extents)

    @property
    def complete(self) -> bool:
        return self.remaining == 0

    def blocks_written(self, count: int, size: int) -> bool:
        """Count `count` written blocks of `size` bytes in all (written elsewhere, e.g. by the
        restore's worker processes); True once the whole file is written (and its size checks)."""
        if count > self.remaining:
            raise ReassemblyError(f"more blocks were written to {self.manifest.path!r} than it has")
        self.remaining -= count
        self.written += size
        if self.remaining == 0 and self.written != self.manifest.size:
            raise ReassemblyError(f"{self.manifest.path!r}: wrote {self.written} bytes, its manifest says "
                                  f"{self.manifest.size}")
        return self.remaining == 0

    def block_written(self, size: int) -> bool:
        """Count one written block; True once the whole file is written (and its size checks)."""
        return self.blocks_written(1, size)


# --- blocks -----------------------------------------------------------------------------------

def _frames(data: Buffer | Sequence[Buffer], verify_checksums: bool) -> list[Frame]:
    """Frames back to back in one buffer (the agent's fetch answer), or one frame per buffer
    (the server's reads from its packs)."""
    buffers = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        return [frame for buffer in buffers for _, frame in
                frames_decode(buffer, max_payload=MAX_BLOCK_FRAME_PAYLOAD, verify_checksums=verify_checksums)]
    except FormatError as error:
        raise ReassemblyError(f"damaged data: {error}") from None


def block_open(keys: KeySet, block_id: bytes, frame: Frame, *, size: int | None = None,
               archive_id: uuid.UUID | None = None) -> bytes:
    """The plaintext of one block frame, only if it is the block asked for and every check passes."""
    if frame.kind != FRAME_BLOCK or bytes(frame.block_id) != bytes(block_id):
        raise ReassemblyError(f"got block {bytes(frame.block_id).hex()} for {bytes(block_id).hex()}")
    if archive_id is not None and frame.archive_id != archive_id:
        raise ReassemblyError(f"block {bytes(block_id).hex()} belongs to archive {frame.archive_id}")
    try:
        plaintext = block_decrypt(keys, block_id, frame.payload)
    except IntegrityError as error:
        raise ReassemblyError(f"block {bytes(block_id).hex()} failed verification: {error}") from None
    if size is not None and len(plaintext) != size:
        raise ReassemblyError(f"block {bytes(block_id).hex()} is {len(plaintext)} bytes, its manifest says {size}")
    return plaintext


def blocks_open(keys: KeySet, block_ids: Sequence[bytes], data: Buffer | Sequence[Buffer], *,
                sizes: Sequence[int] | None = None, archive_id: uuid.UUID | None = None,
                verify_checksums: bool = True) -> Iterator[tuple[bytes, bytes]]:
    """(block id, plaintext) for each block asked for, in that order, from the frames fetched.

    The frame checksum is redundant for a reader that authenticates each payload (GCM and the
    keyed id below); `verify_checksums=False` skips hashing each payload twice.
    """
    frames = _frames(data, verify_checksums)
    if len(frames) != len(block_ids):
        raise ReassemblyError(f"asked for {len(block_ids)} blocks, received {len(frames)}")
    for index, (block_id, frame) in enumerate(zip(block_ids, frames)):
        yield block_id, block_open(keys, block_id, frame, size=None if sizes is None else sizes[index],
                                   archive_id=archive_id)


def _frame_take(keys: KeySet, frame: Frame, wanted: set[bytes], sizes: dict[bytes, int],
                archive_id: uuid.UUID) -> tuple[bytes, bytes]:
    """One frame of a fetch answer: its block must be one still `wanted` (taken off it), then opened."""
    block_id = bytes(frame.block_id)
    if block_id not in wanted:
        raise ReassemblyError(f"got block {block_id.hex()}, which was not asked for (or twice)")
    wanted.discard(block_id)
    return block_id, block_open(keys, block_id, frame, size=sizes[block_id], archive_id=archive_id)


def frames_open(keys: KeySet, block_ids: Sequence[bytes], data: Buffer, *, sizes: dict[bytes, int],
                archive_id: uuid.UUID) -> Iterator[tuple[bytes, bytes]]:
    """(block id, plaintext) of each (distinct) block asked for, in the order the frames came
    (the server answers in pack order): each frame is placed by the block id in its header, which
    must be one asked for and not seen before, and all must come back. GCM and the keyed block id
    authenticate each payload (block_open); the frame checksum (for key-less scrubbing on the
    server) would only hash it a second time."""
    wanted = set(block_ids)
    frames = _frames(data, verify_checksums=False)
    if len(frames) != len(wanted):
        raise ReassemblyError(f"asked for {len(wanted)} blocks, received {len(frames)}")
    for frame in frames:
        yield _frame_take(keys, frame, wanted, sizes, archive_id)


_LENGTH_AT = FRAME_HEADER_SIZE - CHECKSUM_SIZE - 4  # the header's u32 payload length (docs/formats.md §6.1)


def _read_exactly(readinto: ReadInto, view: memoryview) -> int:
    """Fill `view` unless the data ends first; the bytes read."""
    got = 0
    while got < len(view):
        n = readinto(view[got:])
        if not n:
            break
        got += n
    return got


def frame_buffer() -> bytearray:
    """Room for the largest block frame: frames_read reads each frame into it."""
    return bytearray(FRAME_HEADER_SIZE + MAX_BLOCK_FRAME_PAYLOAD)


def frames_read(keys: KeySet, block_ids: Sequence[bytes], readinto: ReadInto, *, sizes: dict[bytes, int],
                archive_id: uuid.UUID, buffer: bytearray | None = None) -> Iterator[tuple[bytes, bytes]]:
    """frames_open for an answer read as it arrives: each frame is read into `buffer` (reused,
    frame_buffer()) and checked and decrypted before the next is read, so at most one frame and
    its plaintext are held, whatever the answer's size. The same checks as frames_open, in
    stream order: a frame not asked for (or twice), damaged, or cut off, or data after the last
    block asked for, raises ReassemblyError when it is reached; blocks yielded before it passed
    every check. Fewer frames than asked for: ReassemblyError at the end."""
    wanted = set(block_ids)
    view = memoryview(frame_buffer() if buffer is None else buffer)
    index = 0
    while True:
        got = _read_exactly(readinto, view[:FRAME_HEADER_SIZE])
        if got == 0:
            break
        if got < FRAME_HEADER_SIZE:
            raise ReassemblyError(f"damaged data: frame {index}: the answer ends inside its header "
                                  f"({got} of {FRAME_HEADER_SIZE} bytes)")
        length = int.from_bytes(view[_LENGTH_AT:_LENGTH_AT + 4], "big")
        if length > MAX_BLOCK_FRAME_PAYLOAD:
            raise ReassemblyError(f"damaged data: frame {index}: payload length {length} exceeds the limit of "
                                  f"{MAX_BLOCK_FRAME_PAYLOAD}")
        end = FRAME_HEADER_SIZE + length
        got = _read_exactly(readinto, view[FRAME_HEADER_SIZE:end])
        if got < length:
            raise ReassemblyError(f"damaged data: frame {index}: the answer ends inside its payload "
                                  f"({got} of {length} bytes)")
        (frame,) = _frames(view[:end], verify_checksums=False)
        yield _frame_take(keys, frame, wanted, sizes, archive_id)
        index += 1
    if wanted:
        raise ReassemblyError(f"asked for {index + len(wanted)} blocks, received {index}")


def fetch_batches(sizes: dict[bytes, int], *, max_bytes: int = FETCH_BYTES,
                  max_blocks: int = FETCH_BLOCKS) -> list[list[bytes]]:
    """Block ids (in the order given) cut into batches of bounded plaintext size and count."""
    batches, batch, batch_bytes = [], [], 0
    for block_id, size in sizes.items():
        batch.append(block_id)
        batch_bytes += size
        if batch_bytes >= max_bytes or len(batch) >= max_blocks:
            batches.append(batch)
            batch, batch_bytes = [], 0
    if batch:
        batches.append(batch)
    return batches


def file_write(keys: KeySet, manifest: Manifest, *, fetch: Callable[[list[bytes]], Buffer | Sequence[Buffer]],
               write: Callable[[bytes], object], archive_id: uuid.UUID | None = None,
               max_bytes: int = FETCH_BYTES, verify_checksums: bool = True) -> int:
    """Write one file's content in order: fetch its blocks in bounded batches, verify and decrypt
    each, hand each plaintext to `write`. Returns the bytes written (checked against the manifest).

    A block repeated in the file is fetched once per batch it appears in, never held longer.
    """
    assembly = FileAssembly(manifest)
    extents = assembly.extents
    start = 0
    while start < len(extents):
        end, batch_bytes = start, 0
        while end < len(extents) and (end == start or batch_bytes + extents[end].size <= max_bytes) \
                and end - start < FETCH_BLOCKS:
            batch_bytes += extents[end].size
            end += 1
        batch = extents[start:end]
        wanted = list(dict.fromkeys(extent.block_id for extent in batch))
        opened = dict(blocks_open(keys, wanted, fetch(wanted), archive_id=archive_id,
                                  verify_checksums=verify_checksums))
        for extent in batch:
            plaintext = opened[extent.block_id]
            if len(plaintext) != extent.size:
                raise ReassemblyError(f"block {extent.block_id.hex()} is {len(plaintext)} bytes, "
                                      f"its manifest says {extent.size}")
            write(plaintext)
            assembly.block_written(extent.size)
        start = end
    if not assembly.complete:  # an empty file has no blocks: nothing to count
        raise ReassemblyError(f"{manifest.path!r} was not completed")
    return assembly.written

"""The restore's fetch phase in one process: ask the server for blocks, verify and decrypt each,
and write it into the files that hold it (agent/restore_dest.py does the file system side).
`Share` is what one process does: all of the blocks, on fetch threads, or in a worker process of
agent/restore_workers.py the blocks whose id falls to it.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from agent.client import ApiClient
from agent.fetching import FetchInterrupted
from agent.restore_dest import Destination, Parts, restored_bits
from formats.keys import KeySet
from formats.manifests import Manifest
from formats.reassembly import FETCH_BYTES, FileAssembly, ReassemblyError, fetch_batches, frame_buffer, frames_read

FETCH_WORKERS = 4  # fetch threads of a restore in one process, each on its own keep-alive connection


class FetchFailed(Exception):
    """A block could not be fetched or failed verification; restore.py turns it into RestoreError."""


@dataclass(slots=True)
class Target:
    assembly: FileAssembly
    parts: Parts
    # (device, inode) of the temporary created for it; None for a file of at most one small block,
    # created, written and placed at once when its block arrives (Destination.whole_write)
    identity: tuple[int, int] | None
    replace: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def manifest(self) -> Manifest:
        return self.assembly.manifest


@dataclass
class Tally:
    """What fetching did: files placed, skipped (the name was taken meanwhile and --skip-existing),
    errors, and, from a worker, the blocks written into each target (by index) for the parent."""
    files: int = 0
    bytes: int = 0
    blocks: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    written: dict[int, tuple[int, int]] = field(default_factory=dict)  # target index -> (blocks, bytes)

    def add(self, other: Tally) -> None:
        self.files += other.files
        self.bytes += other.bytes
        self.blocks += other.blocks
        self.skipped += other.skipped
        self.errors.extend(other.errors)
        for index, (blocks, nbytes) in other.written.items():
            had = self.written.get(index, (0, 0))
            self.written[index] = (had[0] + blocks, had[1] + nbytes)


class Share:
    """The files of one restore and the blocks of them this process fetches: all of them, or (in a
    worker) those whose id falls to it; a worker leaves files of several blocks unsealed."""

    def __init__(self, destination: Destination, targets: list[Target], *, setuid: bool, existing: str,
                 progress: Callable[[int, int], None], worker: tuple[int, int] | None = None):
        self.destination, self.targets, self.setuid, self.existing = destination, targets, setuid, existing
        self.progress, self.worker = progress, worker
        self.tally = Tally()
        self.lock = threading.Lock()
        # block id -> [(target index, offset in file)], and the plaintext size of each block
        self.places: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
        self.sizes: dict[bytes, int] = {}

    def assign(self) -> None:
        """Take the blocks this process fetches: all, or in a worker those whose id falls to it."""
        worker = self.worker
        for index, target in enumerate(self.targets):
            for extent in target.assembly.extents:
                if worker is None or _owner(extent.block_id, worker[1]) == worker[0]:
                    self.places[extent.block_id].append((index, extent.offset))
                    self.sizes[extent.block_id] = extent.size

    # -- the file system side

    def seal(self, target: Target, fd: int) -> None:
        manifest = target.manifest
        os.fchmod(fd, restored_bits(manifest.mode, is_dir=False, setuid=self.setuid))
        os.utime(fd, ns=(manifest.mtime_ns, manifest.mtime_ns))

    def whole(self, target: Target, data: bytes) -> None:
        manifest = target.manifest
        placed = self.destination.whole_write(target.parts, data, replace=target.replace, mtime_ns=manifest.mtime_ns,
                                              bits=restored_bits(manifest.mode, is_dir=False, setuid=self.setuid))
        self._placed(target, placed)

    def finish(self, target: Target, sealed: bool = False) -> None:
        """Give a file whose bytes are all written its mode and mtime, and move it into place."""
        if target.identity is None:
            return self.whole(target, b"")
        if not sealed:
            with self.destination.temporary_open(target.parts, target.identity) as fd:
                self.seal(target, fd)
        self._placed(target, self.destination.place(target.parts, replace=target.replace))

    def _placed(self, target: Target, placed: bool) -> None:
        with self.lock:
            if placed:
                self.tally.files += 1
                self.tally.bytes += target.manifest.size
            elif self.existing == "skip":
                self.tally.skipped += 1
            else:
                self.tally.errors.append(f"{self.destination.display(target.parts)} appeared during the restore; "
                                         "not overwritten")
        self.progress(1, 0)

    def place(self, block_id: bytes, plaintext: bytes) -> None:
        for index, offset in self.places[block_id]:
            target = self.targets[index]
            if target.identity is None:  # its one block: written whole, then placed
                with target.lock:
                    target.assembly.block_written(len(plaintext))
                self._count(index, len(plaintext))
                self.whole(target, plaintext)
                continue
            with self.destination.temporary_open(target.parts, target.identity) as fd:
                os.pwrite(fd, plaintext, offset)
                if self.worker is not None:  # the parent seals it once every worker is done
                    self._count(index, len(plaintext))
                    continue
                with target.lock:
                    done = target.assembly.block_written(len(plaintext))
                if done:  # every byte is written: mode and mtime through this descriptor
                    self.seal(target, fd)
            if done:
                self.finish(target, sealed=True)

    def _count(self, index: int, size: int) -> None:
        if self.worker is not None:
            with self.lock:
                blocks, nbytes = self.tally.written.get(index, (0, 0))
                self.tally.written[index] = (blocks + 1, nbytes + size)

    # -- the network side

    def fetch_all(self, client: ApiClient, keys: KeySet, archive_id: str, *, workers: int) -> None:
        self.assign()
        archive_uuid = uuid.UUID(archive_id)
        buffers = threading.local()  # each fetch thread reads its answers' frames into its own buffer

        def fetch(block_ids: list[bytes]) -> None:
            buffer = getattr(buffers, "frame", None)
            if buffer is None:
                buffer = buffers.frame = frame_buffer()
            pending = list(block_ids)
            received: set[bytes] = set()
            written = 0
            for attempt in range(client.retries + 1):
                try:
                    with client.blocks_fetch(archive_id, pending) as answer:
                        for block_id, plaintext in frames_read(keys, pending, answer.readinto, sizes=self.sizes,
                                                               archive_id=archive_uuid, buffer=buffer):
                            self.place(block_id, plaintext)
                            written += len(plaintext)
                            received.add(block_id)
                    break
                except ReassemblyError as error:
                    raise FetchFailed(f"the server sent data that failed verification ({error})") from None
                except FetchInterrupted as error:
                    # What arrived was verified and written; ask again for the rest, as a request is retried.
                    pending = [block_id for block_id in pending if block_id not in received]
                    if attempt == client.retries:
                        raise FetchFailed(f"fetching blocks failed: {error}") from None
                    time.sleep(client.backoff * 2 ** attempt)
            with self.lock:
                self.tally.blocks += len(block_ids)
            self.progress(0, written)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="haven-restore") as pool:
            futures = [pool.submit(fetch, batch) for batch in fetch_batches(self.sizes, max_bytes=FETCH_BYTES)]
            for future in futures:
                if future.exception() is not None:
                    for other in futures:
                        other.cancel()
                    raise future.exception()


def _owner(block_id: bytes, workers: int) -> int:
    return int.from_bytes(block_id[:4], "big") % workers  # block ids are keyed hashes: spread evenly

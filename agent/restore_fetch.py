"""The restore's fetch phase: ask the server for every block, verify and decrypt each, and write it
into the files that hold it (agent/restore_dest.py does the file system side).

When `agent restore` runs on Linux with two or more cores and the restore has many blocks, the
blocks are split among worker processes by block id (each block, with every place it goes to,
belongs to exactly one worker), and each worker fetches its share on its own keep-alive
connection. Threads could not do it: a restore of small files is Python work between short
system calls (open, write, fchmod, utimensat, link), each of which hands the GIL to the next
thread; with four fetch threads in one process ~14 % of the agent's CPU went to those hand-offs
(perf: futex wake and wait) and it used about one core. 50,000 small files on the 2-core
benchmark machine, interleaved runs: four threads 10.8-14.9 s wall, two worker processes
7.8-10.1 s (restic 6.4-8.0 s).

A worker writes and places each file of one small block whose block it owns. A file that has a
temporary (several blocks, or one block over 1 MiB) may have blocks in every worker: workers only
write those blocks into the temporary, and this process seals it (mode, mtime) and places it once
every worker is done, so restore.py's rules and its leftover check hold as before. A worker that
fails, is killed or goes silent fails the restore; files already placed are complete.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import wait

from agent.client import ApiClient, ApiError
from agent.fetching import FetchInterrupted, fetcher_for
from agent.restore_dest import Destination, DestinationError, Parts, restored_bits
from formats.keys import KeySet
from formats.manifests import Manifest
from formats.reassembly import FETCH_BYTES, FileAssembly, ReassemblyError, fetch_batches, frame_buffer, frames_read

FETCH_WORKERS = 4  # fetch threads of a restore in one process, each on its own keep-alive connection
PROCESSES_MAX = 4  # worker processes at most (one per core up to this), one fetch thread each
PROCESSES_MIN_BLOCKS = 512  # fewer blocks than this: one process (a fork costs more than it saves)
PROCESSES_ENV = "HAVEN_RESTORE_PROCESSES"  # a number: exactly that many workers, any restore; 1 = threads here
WORKER_SILENCE_SECONDS = 600.0  # no message from any worker for this long (or a request's timeouts): stop them
PR_SET_PDEATHSIG = 1


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


def worker_processes(client: ApiClient, blocks: int, *, allowed: bool) -> int:
    """How many worker processes to fetch `blocks` blocks with; 1 means threads in this process.
    `allowed`: the caller may fork (agent restore, whose other threads never fork-share state the
    workers use); the agent's service restores in threads, its other threads hold TLS sessions
    and locks. HAVEN_RESTORE_PROCESSES=N is the operator's choice: N workers, whatever the rest."""
    if not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    told = os.environ.get(PROCESSES_ENV, "")
    if told.isdigit():
        wanted = max(1, int(told))
    elif not allowed or blocks < PROCESSES_MIN_BLOCKS:
        return 1
    else:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
        wanted = min(cores, PROCESSES_MAX)
    if wanted == 1 or not blocks:
        return 1
    if isinstance(client, ApiClient) and fetcher_for(client).proxied:
        return 1  # answers come through httpx's connection, which a forked copy must not touch
    return wanted


def fetch_and_write(client: ApiClient, keys: KeySet, archive_id: str, destination: Destination,
                    targets: list[Target], *, setuid: bool, existing: str, progress: Callable[[int, int], None],
                    processes_allowed: bool = False) -> Tally:
    """Place every target: empty files at once, the others as their last block arrives. The
    targets' assemblies are up to date when this returns (restore.py checks none is left)."""
    here = Share(destination, targets, progress=progress, setuid=setuid, existing=existing)
    for target in targets:
        if target.assembly.complete:  # nothing to fetch (an empty file)
            here.finish(target)
    blocks = len({extent.block_id for target in targets for extent in target.assembly.extents})
    processes = worker_processes(client, blocks, allowed=processes_allowed)
    if processes == 1:
        here.fetch_all(client, keys, archive_id, workers=FETCH_WORKERS)
        return here.tally
    tally = _in_workers(processes, client, keys, archive_id, destination, targets, progress,
                        {"setuid": setuid, "existing": existing})
    for index, (count, nbytes) in tally.written.items():  # this process fetches nothing: it seals and places
        target = targets[index]
        if target.assembly.blocks_written(count, nbytes) and target.identity is not None:
            try:  # its blocks may have come from several workers
                here.finish(target)
            except BaseException:
                destination.temporary_discard(target.parts)  # "complete", so restore.py would not
                raise
    tally.add(here.tally)
    return tally


def _in_workers(processes: int, client: ApiClient, keys: KeySet, archive_id: str, destination: Destination,
                targets: list[Target], progress: Callable[[int, int], None], options: dict) -> Tally:
    context = multiprocessing.get_context("fork")
    workers: list[tuple[multiprocessing.process.BaseProcess, object]] = []
    for stream in (sys.stdout, sys.stderr):  # a worker must not write out what this process buffered
        with contextlib.suppress(Exception):
            stream.flush()
    parent = os.getpid()
    gc.freeze()  # the workers' collections then leave the inherited objects' pages alone (refcounts still do not)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})  # until a worker set its own
    try:
        for number in range(processes):
            reader, writer = context.Pipe(duplex=False)
            try:
                process = context.Process(target=_worker, name=f"haven-restore-{number}", daemon=True,
                                          args=(writer, (number, processes), parent, client, keys, archive_id,
                                                destination, targets, options))
                process.start()
            except BaseException:
                reader.close()
                raise
            finally:
                writer.close()
            workers.append((process, reader))
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        _stop(workers)
        raise
    finally:
        gc.unfreeze()
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    total = Tally()
    silent = max(WORKER_SILENCE_SECONDS, (client.retries + 1) * getattr(client, "timeout", 0))
    try:
        readers = {reader: process for process, reader in workers}
        while readers:
            ready = wait(list(readers), timeout=silent)
            if not ready:
                raise FetchFailed(f"no word from the restore's workers in {silent:.0f} s; stopped them")
            for reader in ready:
                try:
                    kind, value = reader.recv()
                except (EOFError, OSError):  # it exited, or was killed in the middle of a message
                    process = readers.pop(reader)
                    process.join()
                    reader.close()
                    raise FetchFailed(f"a restore worker stopped (exit status {process.exitcode})") from None
                if kind == "progress":
                    progress(*value)
                elif kind == "done":
                    total.add(value)
                    readers.pop(reader).join()
                    reader.close()
                else:  # "error": the worker's exception, or its text with its traceback
                    readers.pop(reader).join()
                    reader.close()
                    raise value if isinstance(value, Exception) else FetchFailed(value)
    except BaseException:
        _stop(workers)
        raise
    return total


def _stop(workers: list) -> None:
    """Stop the workers still running: no more reading (a worker blocked sending gets EPIPE), SIGTERM,
    then SIGKILL for any that did not go."""
    for process, reader in workers:
        reader.close()
        if process.is_alive():
            process.terminate()
    for process, _ in workers:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()


def _worker(connection, worker: tuple[int, int], parent: int, client: ApiClient, keys: KeySet, archive_id: str,
            destination: Destination, targets: list[Target], options: dict) -> None:
    """One worker process: its share of the blocks, on connections of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the restore decides, and stops its workers:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # by SIGTERM, whatever handler the agent set
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    if _LIBC is not None:  # stop with the restore, even a killed one
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the restore died before that took effect
        os._exit(1)
    _inherited.append(client.__dict__.pop("_fetcher", None))  # the parent's idle connections: not ours to use
    lock = threading.Lock()
    progress_files = progress_bytes = 0
    last = time.monotonic()

    def progress(files: int, nbytes: int) -> None:
        nonlocal progress_files, progress_bytes, last
        with lock:
            progress_files += files
            progress_bytes += nbytes
            if nbytes or time.monotonic() - last >= 0.2:  # after each batch, or five times a second
                connection.send(("progress", (progress_files, progress_bytes)))
                progress_files = progress_bytes = 0
                last = time.monotonic()

    try:
        share = Share(destination, targets, progress=progress, worker=worker, **options)
        share.fetch_all(client, keys, archive_id, workers=1)
        with lock:
            if progress_files or progress_bytes:
                connection.send(("progress", (progress_files, progress_bytes)))
        connection.send(("done", share.tally))
    except BaseException as error:  # every failure goes to the restore, which raises it
        with contextlib.suppress(OSError):  # the restore stopped reading: it is stopping us
            connection.send(("error", _sendable(error)))
    finally:
        connection.close()


def _sendable(error: BaseException) -> BaseException | str:
    """An error the restore can raise as itself (ApiError, OSError, FetchFailed...), otherwise its
    text and where it came from (a bug: the worker's traceback)."""
    if isinstance(error, (FetchFailed, OSError, ReassemblyError, DestinationError, ApiError)):
        try:
            pickle.loads(pickle.dumps(error))
            return error
        except Exception:  # noqa: BLE001 - any failure to pickle or rebuild: send the text
            pass
    return "".join(traceback.format_exception(error)).strip()


def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc() if sys.platform.startswith("linux") else None  # loaded before any fork
_inherited: list = []  # kept, never closed or used (closing would only close this process's copies)

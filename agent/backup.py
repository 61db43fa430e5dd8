"""Backup: find changed files, chunk, ask which blocks the server lacks, encrypt and send only
those in batches, then commit one version per changed or deleted file.

Pipeline (both cores, nothing waits on what it does not need):
1. a thread pool reads, cuts and hashes files (agent/reading.py; a big file is cut by the main
   thread and hashed in pieces by the pool), several files ahead of the rest;
2. the main thread gathers the block ids, asks the server which it lacks, and hands those
   blocks back to the pool to compress, encrypt and frame;
3. an uploader thread (agent/uploader.py) sends full batches and then the version commits
   (agent/commits.py), in order, so a version is committed only after every batch holding its
   new blocks was acknowledged; the local cache is updated only after the commit. An
   interrupted backup therefore resumes where it stopped, re-sending nothing the server has.
"""
import gc
import os
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from agent.client import ApiClient, ApiError
from agent.commits import COMMIT_VERSIONS, CommitQueue, PendingFile
from agent.healing import heal_rescan
from agent.reading import changed_while_read, read_blocks, scanned_file
from agent.scan import FileEntry, ScanResult, scan  # noqa: F401 - scan is re-exported for callers
from agent.state import LocalState
from agent.uploader import Uploader as _Uploader
from formats.blocks import block_encrypt, block_id_for
from formats.chunking import iter_chunks
from formats.frames import FRAME_BLOCK, frame_header
from formats.keys import KeySet

BATCH_BYTES = 24 * 1024 * 1024
_shuffle = random.SystemRandom().shuffle


@dataclass
class BackupSummary:
    files_scanned: int = 0
    bytes_scanned: int = 0
    files_changed: int = 0
    files_deleted: int = 0
    bytes_read: int = 0
    blocks_sent: int = 0
    bytes_sent: int = 0
    versions_committed: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    healed: list[str] = field(default_factory=list)  # re-sent because the server found their data damaged


class BackupEngine:
    WHOLE_FILE_LIMIT = 32 * 1024 * 1024  # larger files are cut by the main thread, hashed in pieces
    # Plaintext in flight: being read, staged for the "which do you lack" question, or being
    # encrypted. One bound over the three stages (agent peak RSS <= 200 MB, issue 12); 24 MiB
    # still keeps both pool threads busy (three groups or pieces each).
    READ_AHEAD_BYTES = 24 * 1024 * 1024
    PIECE_BYTES = 8 * 1024 * 1024  # a big file goes to the pool in pieces of this much
    # Small files go to the pool in groups, and missing blocks are encrypted in groups: one task
    # per file or block cost more in submit/future bookkeeping on the main thread than the work.
    GROUP_FILES = 64
    GROUP_BYTES = 4 * 1024 * 1024
    STAGING_BYTES = 8 * 1024 * 1024  # blocks gathered per "which do you lack" question
    STAGING_IDS = 4000

    def __init__(self, *, client: ApiClient, keys: KeySet, archive_id: str, state: LocalState,
                 workers: int = 2, on_progress: Callable[[int, int], None] | None = None):
        self.client, self.keys, self.state = client, keys, state
        self.archive_id = archive_id
        self.archive_uuid = uuid.UUID(archive_id)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="haven-crypto")
        self.on_progress = on_progress or (lambda files, nbytes: None)
        self.commits = CommitQueue(keys=keys, archive_uuid=self.archive_uuid, state=state,
                                   put=lambda item: self._uploader.put(item))
        self.known_present: set[bytes] = set()  # on the server: asked, or acknowledged earlier
        self.batch_of: dict[bytes, int] = {}  # block id -> number of the batch that carries it
        self.queued_ids: set[bytes] = set()  # missing, handed to the pool, not yet in a batch
        self.summary = BackupSummary()
        self._units: deque = deque()  # ([pending file], future of [[(id, data)] | OSError], nbytes, last piece?)
        self._group: list[PendingFile] = []
        self._group_bytes = 0
        self._units_bytes = 0
        self._staging: list[tuple[bytes, memoryview]] = []
        self._staging_bytes = 0
        self._encrypting: deque = deque()  # ([block id], future of [(header, payload)], plaintext bytes)
        self._encrypting_bytes = 0
        self._batch_parts: list[tuple[bytes, bytes]] = []  # the next batch's frames as (header, payload)
        self._batch_bytes = 0
        self._batch_seq = 1
        self._files: deque[PendingFile] = deque()  # read, waiting for their blocks to be batched
        self._uploader: _Uploader | None = None

    # -- work done in the pool --

    def _hash_pieces(self, pieces: list[memoryview]) -> list[list[tuple[bytes, memoryview]]]:
        return [[(block_id_for(self.keys, data), data) for data in pieces]]

    def _read_group(self, group: list[PendingFile]) -> list:
        results: list = []
        for pending in group:
            try:
                blocks, pending.read_bytes, pending.unstable = read_blocks(self.keys, pending.entry)
                results.append(blocks)
            except OSError as error:
                results.append(error)
        return results

    def _encrypt_group(self, blocks: list[tuple[bytes, memoryview]]) -> list[tuple[bytes, bytes]]:
        keys, archive_uuid = self.keys, self.archive_uuid
        frames = []
        for block_id, data in blocks:
            payload = block_encrypt(keys, block_id, data)
            frames.append((frame_header(FRAME_BLOCK, archive_uuid, block_id, payload), payload))
        return frames

    # -- the main thread's loop --

    def _add_unit(self, pendings: list[PendingFile], future, nbytes: int, last: bool) -> None:
        self._units.append((pendings, future, nbytes, last))
        self._units_bytes += nbytes
        # The unit just submitted is left to the pool; the stages ahead of it are worked off.
        while self._units_bytes + self._staging_bytes + self._encrypting_bytes > self.READ_AHEAD_BYTES:
            if len(self._units) > 1:
                self._resolve_unit()
            elif self._encrypting:
                self._collect_encrypted(wait=True, one=True)
            elif self._staging:
                self._resolve_staging()
            else:
                break

    def _add_to_group(self, pending: PendingFile) -> None:
        if self._group and self._group_bytes + pending.entry.size > self.GROUP_BYTES:
            self._flush_group()  # a group's bytes stay near GROUP_BYTES (a file of the limit: alone)
        self._group.append(pending)
        self._group_bytes += pending.entry.size
        if len(self._group) >= self.GROUP_FILES or self._group_bytes >= self.GROUP_BYTES:
            self._flush_group()

    def _flush_group(self) -> None:
        if self._group:
            group, nbytes = self._group, self._group_bytes
            self._group, self._group_bytes = [], 0
            self._add_unit(group, self.pool.submit(self._read_group, group), nbytes, last=True)

    def _resolve_unit(self) -> None:
        pendings, future, nbytes, last = self._units.popleft()
        self._units_bytes -= nbytes
        try:
            results = future.result()
        except OSError as error:
            results = [error]
        for pending, blocks in zip(pendings, results):
            self._resolve_file(pending, blocks, last)
        if self._staging_bytes >= self.STAGING_BYTES or len(self._staging) >= self.STAGING_IDS:
            self._resolve_staging()
        self._collect_encrypted(wait=False)

    def _resolve_file(self, pending: PendingFile, blocks, last: bool) -> None:
        if isinstance(blocks, OSError):
            pending.failed = True
            self.summary.errors.append(f"{pending.entry.path}: {blocks.strerror or blocks}")
            blocks = []
        known, batched, queued = self.known_present, self.batch_of, self.queued_ids
        block_ids, block_sizes, staging = pending.block_ids, pending.block_sizes, self._staging
        read = 0
        for block_id, data in blocks:
            size = len(data)
            block_ids.append(block_id)
            block_sizes.append(size)
            read += size
            if block_id not in known and block_id not in batched and block_id not in queued:
                queued.add(block_id)
                staging.append((block_id, data))
                self._staging_bytes += size
        self.summary.bytes_read += read
        self.on_progress(1 if last else 0, read)
        if last:
            self._files.append(pending)

    def _resolve_staging(self) -> None:
        if not self._staging:
            return
        staged, self._staging, self._staging_bytes = self._staging, [], 0
        missing = self.client.blocks_missing(self.archive_id, [block_id for block_id, _ in staged])
        group: list[tuple[bytes, memoryview]] = []
        group_bytes = 0
        for block_id, data in staged:
            if block_id in missing:
                group.append((block_id, data))
                group_bytes += len(data)
                if len(group) >= self.GROUP_FILES or group_bytes >= self.GROUP_BYTES:
                    self._encrypt_submit(group, group_bytes)
                    group, group_bytes = [], 0
            else:
                self.queued_ids.discard(block_id)
                self.known_present.add(block_id)
        if group:
            self._encrypt_submit(group, group_bytes)
        self._queue_commits()

    def _encrypt_submit(self, group: list[tuple[bytes, memoryview]], nbytes: int) -> None:
        self._encrypting.append(([b for b, _ in group], self.pool.submit(self._encrypt_group, group), nbytes))
        self._encrypting_bytes += nbytes

    def _collect_encrypted(self, wait: bool, one: bool = False) -> None:
        while self._encrypting and (wait or self._encrypting[0][1].done()):
            block_ids, future, nbytes = self._encrypting.popleft()
            frames = future.result()
            self._encrypting_bytes -= nbytes
            self.summary.blocks_sent += len(frames)
            queued, batch_of = self.queued_ids, self.batch_of
            for block_id, frame in zip(block_ids, frames):
                queued.discard(block_id)
                batch_of[block_id] = self._batch_seq
                self._batch_parts.append(frame)
                self._batch_bytes += len(frame[0]) + len(frame[1])
                if self._batch_bytes >= BATCH_BYTES:
                    self._send_batch()
            if one:
                return

    def _send_batch(self) -> None:
        if self._batch_parts:
            # Random order (DESIGN §4, docs/formats.md §2): blocks come out of the pool file by
            # file, so in that order their sizes would show which blocks make up which file.
            _shuffle(self._batch_parts)
            self.commits.flush()
            # The frames are sent as they are, never joined into one body (a copy of the whole
            # batch); a slot bounds the batches handed to the uploader (agent/uploader.py).
            self._uploader.batch_slot()
            frames, nbytes = self._batch_parts, self._batch_bytes
            self._batch_parts, self._batch_bytes = [], 0
            self._uploader.put(("batch", [part for frame in frames for part in frame], nbytes))
            del frames
            self._batch_seq += 1
            self._queue_commits()

    def _queue_commits(self, final: bool = False) -> None:
        """Queue commits for files whose every block is on the server or in a batch already sent."""
        sent = self._batch_seq - 1
        known, batch_of = self.known_present, self.batch_of
        ready, waiting = [], deque()
        for pending in self._files:
            if pending.failed:
                continue
            if all(b in known or batch_of.get(b, sent + 1) <= sent for b in pending.block_ids):
                ready.append(pending)
            else:
                waiting.append(pending)
        self._files = waiting
        if ready and (final or len(ready) >= COMMIT_VERSIONS):
            self.commits.files(ready)
        else:
            self._files.extendleft(reversed(ready))

    # -- the run --

    def run(self, roots: list[str], scanned: ScanResult | None = None) -> BackupSummary:
        started = time.monotonic()
        if scanned is None:
            scanned = scan(roots, self.state.lookup_all())
        s = self.summary
        s.healed = heal_rescan(self.client, self.keys, self.state, self.archive_id, scanned)
        s.files_scanned, s.bytes_scanned, s.skipped = scanned.files_scanned, scanned.bytes_scanned, scanned.skipped
        s.files_changed, s.files_deleted = len(scanned.changed), len(scanned.deleted)
        s.errors.extend(scanned.errors)
        run_id = self.client.run_start(self.archive_id)
        gc.freeze()  # the scan's objects live through the run: the uploader's collections skip them
        self._uploader = _Uploader(self, run_id)
        status = "failed"
        try:
            self._backup_changed(scanned.changed)
            self.commits.deleted(scanned.deleted)
            self.commits.listings(scanned.directories)
            self.commits.flush()
            self._uploader.finish()
            status = "completed"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            self._uploader.abandon()
            gc.unfreeze()
            self.pool.shutdown(wait=True, cancel_futures=True)
            s.bytes_sent = self._uploader.bytes_sent
            s.seconds = time.monotonic() - started
            try:
                self.client.run_finish(self.archive_id, run_id, status=status, errors=s.errors, counters={
                    "files_scanned": s.files_scanned, "bytes_scanned": s.bytes_scanned,
                    "files_changed": s.files_changed + s.files_deleted, "bytes_sent": s.bytes_sent})
            except ApiError:
                pass  # the server may be what failed; the run stays "running" there
        return s

    def _backup_changed(self, changed: list[FileEntry]) -> None:
        for entry in changed:
            pending = PendingFile(entry)
            if entry.size <= self.WHOLE_FILE_LIMIT:
                self._add_to_group(pending)
                continue
            self._flush_group()
            self._stream_file(pending)
        self._flush_group()
        while self._units:
            self._resolve_unit()
        self._resolve_staging()
        self._collect_encrypted(wait=True)
        self._send_batch()
        self._queue_commits(final=True)

    def _stream_file(self, pending: PendingFile) -> None:
        """A big file: cut here, hashed by the pool in pieces of ~PIECE_BYTES as they come."""
        entry = pending.entry
        pieces: list[memoryview] = []
        piece_bytes = 0
        try:
            with scanned_file(entry) as fd:
                for chunk in iter_chunks(self.keys, fd):
                    pieces.append(chunk)
                    piece_bytes += len(chunk)
                    pending.read_bytes += len(chunk)
                    if piece_bytes >= self.PIECE_BYTES:
                        self._add_unit([pending], self.pool.submit(self._hash_pieces, pieces), piece_bytes, last=False)
                        pieces, piece_bytes = [], 0
                pending.unstable = changed_while_read(entry, pending.read_bytes, os.fstat(fd))
        except OSError as error:
            pending.failed = True
            self.summary.errors.append(f"{entry.path}: {error.strerror or error}")
        self._add_unit([pending], self.pool.submit(self._hash_pieces, pieces), piece_bytes, last=True)

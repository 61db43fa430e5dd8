"""Backup: find changed files, chunk, ask which blocks the server lacks, encrypt and send only
those in batches, then commit one version per changed or deleted file.

Pipeline (both cores, nothing waits on what it does not need):
1. a thread pool reads, cuts and hashes files (a big file is cut by the main thread and hashed
   in pieces by the pool), several files ahead of the rest;
2. the main thread gathers the block ids, asks the server which it lacks, and hands those
   blocks back to the pool to compress, encrypt and frame;
3. an uploader thread sends full batches and then the version commits, in order, so a version
   is committed only after every batch holding its new blocks was acknowledged; the local cache
   is updated only after the commit. An interrupted backup therefore resumes where it stopped,
   re-sending nothing the server has.
"""
import base64
import gc
import hashlib
import itertools
import os
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from agent.client import ApiClient, ApiError
from agent.healing import heal_rescan
from agent.scan import FileEntry, ScanResult, scan  # noqa: F401 - scan is re-exported for callers
from agent.state import CachedFile, LocalState
from agent.uploader import Uploader as _Uploader
from formats.blocks import block_encrypt, block_id_for
from formats.chunking import iter_chunks, read_chunks
from formats.directories import DirectoryEntry, listing_id_for, listing_to_json
from formats.frames import FRAME_BLOCK, frame_header
from formats.keys import KeySet
from formats.manifests import Manifest, listing_manifest, manifest_encrypt, path_id_for

BATCH_BYTES = 24 * 1024 * 1024
COMMIT_VERSIONS = 1000
LISTING_ALONE_BYTES = 4 * 1024 * 1024  # a larger directory listing is not merged with file versions
_shuffle = random.SystemRandom().shuffle


def _changed_while_read(entry: FileEntry, read_bytes: int, after: os.stat_result | None = None) -> bool:
    """`after`: the file's fstat once read (saves a path lookup a file); else it is stat'ed by name."""
    if after is None:
        after = os.stat(entry.path, follow_symlinks=False)
    return (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (entry.size, entry.mtime_ns, entry.ctime_ns) \
        or read_bytes != entry.size


@dataclass
class _PendingFile:
    entry: FileEntry
    block_ids: list[bytes] = field(default_factory=list)
    block_sizes: list[int] = field(default_factory=list)
    read_bytes: int = 0
    done: bool = False
    failed: bool = False
    unstable: bool = False  # changed while it was read: commit what was read, re-read next time


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
    # encrypted. One bound over the three stages (agent peak RSS <= 200 MB, issue 12).
    READ_AHEAD_BYTES = 32 * 1024 * 1024
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
        self.known_present: set[bytes] = set()  # on the server: asked, or acknowledged earlier
        self.batch_of: dict[bytes, int] = {}  # block id -> number of the batch that carries it
        self.queued_ids: set[bytes] = set()  # missing, handed to the pool, not yet in a batch
        self.summary = BackupSummary()
        self._units: deque = deque()  # ([pending file], future of [[(id, data)] | OSError], nbytes, last piece?)
        self._group: list[_PendingFile] = []
        self._group_bytes = 0
        self._units_bytes = 0
        self._staging: list[tuple[bytes, memoryview]] = []
        self._staging_bytes = 0
        self._encrypting: deque = deque()  # ([block id], future of [(header, payload)], plaintext bytes)
        self._encrypting_bytes = 0
        self._batch_parts: list[tuple[bytes, bytes]] = []  # frames as (header, payload): joined once
        self._batch_bytes = 0
        self._batch_seq = 1
        self._files: deque[_PendingFile] = deque()  # read, waiting for their blocks to be batched
        self._uploader: _Uploader | None = None
        self._held_commit: tuple | None = None  # a partial commit, topped up by the next one

    # -- work done in the pool --

    def _hash_pieces(self, pieces: list[memoryview]) -> list[tuple[bytes, memoryview]]:
        return [(block_id_for(self.keys, data), data) for data in pieces]

    def _hash_pieces_one(self, pieces: list[memoryview]) -> list[list[tuple[bytes, memoryview]]]:
        return [self._hash_pieces(pieces)]

    def _read_whole(self, pending: _PendingFile) -> list[tuple[bytes, memoryview]]:
        entry = pending.entry
        chunks, after = read_chunks(self.keys, entry.path)
        pieces = self._hash_pieces(chunks)
        pending.read_bytes = sum(len(data) for _, data in pieces)
        pending.unstable = _changed_while_read(entry, pending.read_bytes, after)
        return pieces

    def _read_group(self, group: list[_PendingFile]) -> list:
        results: list = []
        for pending in group:
            try:
                results.append(self._read_whole(pending))
            except OSError as error:
                results.append(error)
        return results

    def _encrypt_frame(self, block_id: bytes, data: memoryview) -> tuple[bytes, bytes]:
        payload = block_encrypt(self.keys, block_id, data)
        return frame_header(FRAME_BLOCK, self.archive_uuid, block_id, payload), payload

    def _encrypt_group(self, blocks: list[tuple[bytes, memoryview]]) -> list[tuple[bytes, bytes]]:
        return [self._encrypt_frame(block_id, data) for block_id, data in blocks]

    # -- the main thread's loop --

    def _add_unit(self, pendings: list[_PendingFile], future, nbytes: int, last: bool) -> None:
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

    def _add_to_group(self, pending: _PendingFile) -> None:
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
        for pending, pieces in zip(pendings, results):
            self._resolve_file(pending, pieces, last)
        if self._staging_bytes >= self.STAGING_BYTES or len(self._staging) >= self.STAGING_IDS:
            self._resolve_staging()
        self._collect_encrypted(wait=False)

    def _resolve_file(self, pending: _PendingFile, pieces, last: bool) -> None:
        if isinstance(pieces, OSError):
            pending.failed = True
            self.summary.errors.append(f"{pending.entry.path}: {pieces.strerror or pieces}")
            pieces = []
        for block_id, data in pieces:
            pending.block_ids.append(block_id)
            pending.block_sizes.append(len(data))
            if block_id not in self.known_present and block_id not in self.batch_of \
                    and block_id not in self.queued_ids:
                self.queued_ids.add(block_id)
                self._staging.append((block_id, data))
                self._staging_bytes += len(data)
        read = sum(len(data) for _, data in pieces)
        self.summary.bytes_read += read
        self.on_progress(1 if last else 0, read)
        if last:
            pending.done = True
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
            for block_id, frame in zip(block_ids, frames):
                self.queued_ids.discard(block_id)
                self.batch_of[block_id] = self._batch_seq
                self._batch_parts.append(frame)
                self._batch_bytes += len(frame[0]) + len(frame[1])
                self.summary.blocks_sent += 1
                if self._batch_bytes >= BATCH_BYTES:
                    self._send_batch()
            if one:
                return

    def _send_batch(self) -> None:
        if self._batch_parts:
            # Random order (DESIGN §4, docs/formats.md §2): blocks come out of the pool file by
            # file, so in that order their sizes would show which blocks make up which file.
            _shuffle(self._batch_parts)
            self._flush_commit()
            # Joined only once the uploader has room for it: at most one batch sending and one
            # waiting exist as bytes, beside the parts of the next (memory, issue 12).
            self._uploader.batch_slot()
            parts, self._batch_parts, self._batch_bytes = self._batch_parts, [], 0
            body = b"".join(itertools.chain.from_iterable(parts))
            del parts  # before put, which may wait: the parts are garbage once joined
            self._uploader.put(("batch", body))
            self._batch_seq += 1
            self._queue_commits()

    def _queue_commits(self, final: bool = False) -> None:
        """Queue commits for files whose every block is on the server or in a batch already sent."""
        sent = self._batch_seq - 1
        ready, waiting = [], deque()
        for pending in self._files:
            if pending.failed:
                continue
            if all(b in self.known_present or self.batch_of.get(b, sent + 1) <= sent for b in pending.block_ids):
                ready.append(pending)
            else:
                waiting.append(pending)
        self._files = waiting
        if ready and (final or len(ready) >= COMMIT_VERSIONS):
            self._commit_files(ready)
        else:
            self._files.extendleft(reversed(ready))

    # -- versions --

    def _put_commit(self, versions: list[dict], cached: list[CachedFile], deleted: list[str],
                    listings: list[tuple[str, bytes]] = ()) -> None:
        """Queue a commit; a partial one waits to be merged with the next (the run's last file
        versions, its deletions and its directory listings then go in one request)."""
        held = self._held_commit
        if held is not None and len(held[1]) + len(versions) <= COMMIT_VERSIONS:
            self._held_commit = ("commit", held[1] + versions, held[2] + cached, held[3] + deleted,
                                 held[4] + list(listings))
        else:
            self._flush_commit()
            self._held_commit = ("commit", list(versions), list(cached), list(deleted), list(listings))
        if len(self._held_commit[1]) >= COMMIT_VERSIONS:
            self._flush_commit()

    def _flush_commit(self) -> None:
        if self._held_commit is not None:
            item, self._held_commit = self._held_commit, None
            self._uploader.put(item)

    def _commit_listings(self, directories: dict[str, list[DirectoryEntry]]) -> None:
        """One listing per directory root, only when it differs from the last one committed."""
        for root, entries in directories.items():
            manifest = listing_manifest(root, entries)
            digest = hashlib.blake2b(listing_to_json(root, manifest.directories), digest_size=32).digest()
            if self.state.listing_digest(root) == digest:
                continue
            body, _ = self._version(root, manifest)
            if len(body["manifest"]) > LISTING_ALONE_BYTES:  # keep a commit well under its 32 MiB limit
                self._flush_commit()
            self._put_commit([body], [], [], [(root, digest)])

    def _version(self, path: str, manifest: Manifest) -> tuple[dict, str]:
        version_id = uuid.uuid4()
        path_id = listing_id_for(self.keys, path) if manifest.is_listing else path_id_for(self.keys, path)
        blob = manifest_encrypt(self.keys, manifest, archive_id=self.archive_uuid, path_id=path_id,
                                version_id=version_id)
        return ({"version_id": str(version_id), "path_id": path_id, "deleted": manifest.deleted,
                 "block_ids": [b.hex() for b in manifest.block_ids], "manifest": base64.b64encode(blob).decode()},
                str(version_id))

    def _commit_files(self, files: list[_PendingFile]) -> None:
        # The manifests are built and encrypted by the uploader thread just before it sends the
        # commit (_materialize): on trees of small files that was a third of the main thread's
        # time, which keeps the pool fed.
        for start in range(0, len(files), COMMIT_VERSIONS):
            self._put_commit(files[start:start + COMMIT_VERSIONS], [], [])

    def _materialize(self, versions: list, cached: list[CachedFile]) -> tuple[list[dict], list[CachedFile]]:
        """Commit bodies for files queued as _PendingFile, and their cache rows."""
        if not any(isinstance(item, _PendingFile) for item in versions):
            return versions, cached
        bodies, cached = [], list(cached)
        for item in versions:
            if not isinstance(item, _PendingFile):
                bodies.append(item)
                continue
            entry = item.entry
            manifest = Manifest(path=entry.path, size=item.read_bytes, mtime_ns=entry.mtime_ns,
                                mode=entry.mode, block_ids=item.block_ids, block_sizes=item.block_sizes)
            body, version_id = self._version(entry.path, manifest)
            bodies.append(body)
            cached.append(CachedFile(entry.path, entry.size, -1 if item.unstable else entry.mtime_ns,
                                     entry.ctime_ns, entry.inode, version_id, entry.dev))
        return bodies, cached

    def _commit_deleted(self, paths: list[str]) -> None:
        for start in range(0, len(paths), COMMIT_VERSIONS):
            group = paths[start:start + COMMIT_VERSIONS]
            versions = [self._version(path, Manifest(path=path, size=0, mtime_ns=0, mode=0, block_ids=[],
                                                     block_sizes=[], deleted=True))[0] for path in group]
            self._put_commit(versions, [], group)

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
            self._commit_deleted(scanned.deleted)
            self._commit_listings(scanned.directories)
            self._flush_commit()
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
            pending = _PendingFile(entry)
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

    def _stream_file(self, pending: _PendingFile) -> None:
        """A big file: cut here, hashed by the pool in pieces of ~PIECE_BYTES as they come."""
        entry = pending.entry
        pieces: list[memoryview] = []
        piece_bytes = 0
        try:
            for chunk in iter_chunks(self.keys, entry.path):
                pieces.append(chunk)
                piece_bytes += len(chunk)
                pending.read_bytes += len(chunk)
                if piece_bytes >= self.PIECE_BYTES:
                    self._add_unit([pending], self.pool.submit(self._hash_pieces_one, pieces), piece_bytes, last=False)
                    pieces, piece_bytes = [], 0
            pending.unstable = _changed_while_read(entry, pending.read_bytes)
        except OSError as error:
            pending.failed = True
            self.summary.errors.append(f"{entry.path}: {error.strerror or error}")
        self._add_unit([pending], self.pool.submit(self._hash_pieces_one, pieces), piece_bytes, last=True)

"""Backup: find changed files, chunk, ask which blocks the server lacks, encrypt and send only
those in batches, then commit one version per changed or deleted file.

Pipeline (both cores): the main thread reads and cuts files into segments of ~32 MiB; a thread
pool computes keyed block ids, then compresses and encrypts the blocks the server lacks; an
uploader thread sends batches while the next segment is prepared. A file's version is committed
only after every batch holding its new blocks was acknowledged, and the local cache is updated
only after the commit — so an interrupted backup resumes where it stopped, re-sending nothing
the server has.
"""
import base64
import os
import queue
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from agent.client import ApiClient, ApiError
from agent.state import CachedFile, LocalState
from formats.blocks import block_encrypt, block_id_for
from formats.chunking import iter_chunks
from formats.frames import FRAME_BLOCK, frame_encode
from formats.keys import KeySet
from formats.manifests import Manifest, manifest_encrypt, path_id_for

SEGMENT_BYTES = 32 * 1024 * 1024
BATCH_BYTES = 24 * 1024 * 1024
COMMIT_VERSIONS = 1000


@dataclass
class FileEntry:
    path: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    mode: int


@dataclass
class ScanResult:
    changed: list[FileEntry] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    files_scanned: int = 0
    bytes_scanned: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def scan(roots: Iterable[str], cache: dict[str, CachedFile]) -> ScanResult:
    """Walk the roots; report changed files and files deleted under completely listed directories.

    Symlinks and special files are skipped (counted in `skipped`). A directory that could not be
    listed completely (permissions, I/O errors) marks nothing beneath it deleted, and a missing
    root (an unmounted volume) marks nothing deleted at all.
    """
    result = ScanResult()
    seen: set[str] = set()
    listed: dict[str, bool] = {}  # directory -> listed completely
    absolute_roots = [os.path.abspath(root) for root in roots]

    def consider(path: str, st: os.stat_result) -> None:
        seen.add(path)
        result.files_scanned += 1
        result.bytes_scanned += st.st_size
        cached = cache.get(path)
        # ctime too: a chmod or a content change that restored the old mtime still counts.
        if cached and (cached.size, cached.mtime_ns, cached.ctime_ns, cached.inode) == (
                st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino):
            return
        result.changed.append(FileEntry(path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
                                        stat.S_IMODE(st.st_mode)))

    for root in absolute_roots:
        try:
            st = os.lstat(root)
        except OSError as error:
            result.errors.append(f"{root}: {error.strerror}; nothing under it is marked deleted")
            continue
        if stat.S_ISREG(st.st_mode):
            consider(root, st)
            continue
        if not stat.S_ISDIR(st.st_mode):
            result.skipped += 1
            continue
        stack = [root]
        while stack:
            directory = stack.pop()
            complete = True
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        try:
                            if entry.is_symlink():
                                result.skipped += 1
                            elif entry.is_dir(follow_symlinks=False):
                                stack.append(entry.path)
                            elif entry.is_file(follow_symlinks=False):
                                consider(entry.path, entry.stat(follow_symlinks=False))
                            else:
                                result.skipped += 1
                        except OSError as error:
                            complete = False
                            result.errors.append(f"{entry.path}: {error.strerror}")
            except OSError as error:
                complete = False
                result.errors.append(f"{directory}: {error.strerror}")
            listed[directory] = complete

    for path in cache:
        if path in seen or not any(_under(path, root) for root in absolute_roots):
            continue
        ancestor = os.path.dirname(path)
        while ancestor not in listed and ancestor != os.path.dirname(ancestor):
            ancestor = os.path.dirname(ancestor)
        if listed.get(ancestor):
            result.deleted.append(path)
    result.changed.sort(key=lambda entry: entry.path)
    return result


@dataclass
class _PendingFile:
    entry: FileEntry
    block_ids: list[bytes] = field(default_factory=list)
    block_sizes: list[int] = field(default_factory=list)
    required_batch: int = 0
    read_bytes: int = 0
    done: bool = False
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


class _Uploader:
    """Sends batches in order on its own thread; remembers the last acknowledged batch."""

    def __init__(self, client: ApiClient, archive_id: str, run_id: str):
        self.client, self.archive_id, self.run_id = client, archive_id, run_id
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.acknowledged = 0
        self.error: BaseException | None = None
        self.bytes_sent = 0
        self._thread = threading.Thread(target=self._run, name="haven-uploader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            seq, batch = item
            if self.error is None:
                try:
                    self.client.blocks_upload(self.archive_id, self.run_id, batch)
                    self.bytes_sent += len(batch)
                    self.acknowledged = seq
                except BaseException as error:  # noqa: BLE001 - handed to the main thread
                    self.error = error

    def submit(self, seq: int, batch: bytes) -> None:
        while True:
            self.check()
            try:
                self.queue.put((seq, batch), timeout=0.5)
                return
            except queue.Full:
                continue

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def drain(self) -> None:
        self.queue.put(None)
        self._thread.join()
        self.check()


class BackupEngine:
    def __init__(self, *, client: ApiClient, keys: KeySet, archive_id: str, state: LocalState,
                 workers: int = 2, on_progress: Callable[[int, int], None] | None = None):
        self.client, self.keys, self.state = client, keys, state
        self.archive_id = archive_id
        self.archive_uuid = uuid.UUID(archive_id)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="haven-crypto")
        self.on_progress = on_progress or (lambda files, nbytes: None)
        self.known_present: set[bytes] = set()
        self.batch_of: dict[bytes, int] = {}  # block id -> batch number that carries it
        self.batch_seq = 1
        self.batch_parts: list[bytes] = []
        self.batch_bytes = 0
        self.summary = BackupSummary()

    # -- blocks --

    def _encrypt_frame(self, item: tuple[bytes, memoryview]) -> bytes:
        block_id, data = item
        return frame_encode(FRAME_BLOCK, self.archive_uuid, block_id, block_encrypt(self.keys, block_id, data))

    def _flush_segment(self, segment: list[tuple[_PendingFile, memoryview]], uploader: _Uploader) -> None:
        if not segment:
            return
        ids = list(self.pool.map(lambda item: block_id_for(self.keys, item[1]), segment))
        fresh: dict[bytes, memoryview] = {}
        for (pending, data), block_id in zip(segment, ids):
            pending.block_ids.append(block_id)
            pending.block_sizes.append(len(data))
            if block_id not in self.known_present and block_id not in self.batch_of:
                fresh.setdefault(block_id, data)
        if fresh:
            missing = self.client.blocks_missing(self.archive_id, list(fresh))
            self.known_present.update(block_id for block_id in fresh if block_id not in missing)
            to_send = [(block_id, fresh[block_id]) for block_id in fresh if block_id in missing]
            for (block_id, _), frame in zip(to_send, self.pool.map(self._encrypt_frame, to_send)):
                self.batch_of[block_id] = self.batch_seq
                self.batch_parts.append(frame)
                self.batch_bytes += len(frame)
                self.summary.blocks_sent += 1
                if self.batch_bytes >= BATCH_BYTES:
                    self._submit_batch(uploader)
        for (pending, _), block_id in zip(segment, ids):
            pending.required_batch = max(pending.required_batch, self.batch_of.get(block_id, 0))
        segment_bytes = sum(len(data) for _, data in segment)
        self.summary.bytes_read += segment_bytes
        self.on_progress(0, segment_bytes)

    def _submit_batch(self, uploader: _Uploader) -> None:
        if not self.batch_parts:
            return
        uploader.submit(self.batch_seq, b"".join(self.batch_parts))
        self.batch_parts, self.batch_bytes = [], 0
        self.batch_seq += 1

    # -- versions --

    def _version(self, path: str, manifest: Manifest) -> tuple[dict, str]:
        version_id = uuid.uuid4()
        path_id = path_id_for(self.keys, path)
        blob = manifest_encrypt(self.keys, manifest, archive_id=self.archive_uuid, path_id=path_id,
                                version_id=version_id)
        return ({"version_id": str(version_id), "path_id": path_id, "deleted": manifest.deleted,
                 "block_ids": [b.hex() for b in manifest.block_ids], "manifest": base64.b64encode(blob).decode()},
                str(version_id))

    def _commit_files(self, run_id: str, files: list[_PendingFile]) -> None:
        for start in range(0, len(files), COMMIT_VERSIONS):
            group = files[start:start + COMMIT_VERSIONS]
            versions, cached = [], []
            for pending in group:
                entry = pending.entry
                manifest = Manifest(path=entry.path, size=pending.read_bytes, mtime_ns=entry.mtime_ns,
                                    mode=entry.mode, block_ids=pending.block_ids, block_sizes=pending.block_sizes)
                body, version_id = self._version(entry.path, manifest)
                versions.append(body)
                cached.append(CachedFile(entry.path, entry.size, -1 if pending.unstable else entry.mtime_ns,
                                         entry.ctime_ns, entry.inode, version_id))
            self.client.versions_commit(self.archive_id, run_id, versions)
            self.state.record_committed(cached)
            self.summary.versions_committed += len(versions)

    def _commit_deleted(self, run_id: str, paths: list[str]) -> None:
        for start in range(0, len(paths), COMMIT_VERSIONS):
            group = paths[start:start + COMMIT_VERSIONS]
            versions = [self._version(path, Manifest(path=path, size=0, mtime_ns=0, mode=0, block_ids=[],
                                                     block_sizes=[], deleted=True))[0] for path in group]
            self.client.versions_commit(self.archive_id, run_id, versions)
            self.state.forget(group)
            self.summary.versions_committed += len(versions)

    # -- the run --

    def run(self, roots: list[str], scanned: ScanResult | None = None) -> BackupSummary:
        started = time.monotonic()
        if scanned is None:
            scanned = scan(roots, self.state.lookup_all())
        s = self.summary
        s.files_scanned, s.bytes_scanned, s.skipped = scanned.files_scanned, scanned.bytes_scanned, scanned.skipped
        s.files_changed, s.files_deleted = len(scanned.changed), len(scanned.deleted)
        s.errors.extend(scanned.errors)
        self.total_bytes = sum(entry.size for entry in scanned.changed)
        run_id = self.client.run_start(self.archive_id)
        status = "failed"
        try:
            self._backup_changed(run_id, scanned.changed)
            self._commit_deleted(run_id, scanned.deleted)
            status = "completed"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
            s.seconds = time.monotonic() - started
            try:
                self.client.run_finish(self.archive_id, run_id, status=status, errors=s.errors, counters={
                    "files_scanned": s.files_scanned, "bytes_scanned": s.bytes_scanned,
                    "files_changed": s.files_changed + s.files_deleted, "bytes_sent": s.bytes_sent})
            except ApiError:
                pass  # the server may be what failed; the run stays "running" there
        return s

    def _backup_changed(self, run_id: str, changed: list[FileEntry]) -> None:
        uploader = _Uploader(self.client, self.archive_id, run_id)
        segment: list[tuple[_PendingFile, memoryview]] = []
        segment_bytes = 0
        ready: list[_PendingFile] = []
        try:
            for entry in changed:
                pending = _PendingFile(entry)
                try:
                    for chunk in iter_chunks(self.keys, entry.path):
                        segment.append((pending, chunk))
                        segment_bytes += len(chunk)
                        pending.read_bytes += len(chunk)
                        if segment_bytes >= SEGMENT_BYTES:
                            self._flush_segment(segment, uploader)
                            segment, segment_bytes = [], 0
                            ready = self._commit_ready(run_id, ready, uploader)
                    after = os.stat(entry.path, follow_symlinks=False)
                    pending.unstable = (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (
                        entry.size, entry.mtime_ns, entry.ctime_ns) or pending.read_bytes != entry.size
                except OSError as error:
                    self.summary.errors.append(f"{entry.path}: {error.strerror or error}")
                    segment = [(p, d) for p, d in segment if p is not pending]
                    segment_bytes = sum(len(d) for _, d in segment)
                    continue
                pending.done = True
                ready.append(pending)
                self.on_progress(1, 0)
            self._flush_segment(segment, uploader)
            self._submit_batch(uploader)
            uploader.drain()
            self.summary.bytes_sent = uploader.bytes_sent
            self._commit_ready(run_id, ready, uploader, final=True)
        finally:
            if uploader._thread.is_alive():
                uploader.queue.put(None)
            self.summary.bytes_sent = uploader.bytes_sent

    def _commit_ready(self, run_id: str, ready: list[_PendingFile], uploader: _Uploader,
                      final: bool = False) -> list[_PendingFile]:
        uploader.check()
        acknowledged = uploader.acknowledged
        committable = [p for p in ready if p.done and p.required_batch <= acknowledged]
        if not final and len(committable) < COMMIT_VERSIONS:
            return ready
        self._commit_files(run_id, committable)
        committed = {id(p) for p in committable}
        return [p for p in ready if id(p) not in committed]

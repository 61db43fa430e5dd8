"""Where finished restores wait for their download: on the pack storage, not on one machine's disk.

The key worker that writes a web restore's zip (or a push restore's stream) and the web process
that serves it are different processes, on different machines once Haven scales out (DESIGN §10).
So a result is spooled to a local scratch file while it is written, then put once on the pack
storage under the reserved prefix `restore-results/` (pack keys start with an organization's UUID,
and `.zip`/`.push` are not `.pack`, so neither the orphan sweep nor rebuild-index sees one), read
back in chunks for the download, and deleted when it expires or the push restore ends.

Only the storage interface is used (put, open_reader, size, exists, delete): no caller touches a
path, so the S3 backend serves results like packs. A result written before this module (its key
has no prefix) was a file under HAVEN_DATA_DIR/restores; it is treated as gone, and the expiry
sweep removes the file.
"""
import io
import mmap
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.http import FileResponse

from archives.storage import pack_storage

RESULTS_PREFIX = "restore-results"
DOWNLOAD_CHUNK = 1024 * 1024  # one ranged read per MiB sent (FileResponse's default is 4 KiB)


def restore_scratch_dir() -> Path:
    """The writing worker's own scratch folder (results are spooled here, then stored)."""
    return Path(settings.DATA_DIR) / "restores"


def result_key_for(*, organization_uuid, job_uuid, suffix: str) -> str:
    return f"{RESULTS_PREFIX}/{organization_uuid}/{job_uuid}.{suffix}"


def is_stored_result(key: str) -> bool:
    return key.startswith(RESULTS_PREFIX + "/")


@contextmanager
def result_spool(key: str) -> Iterator[Path]:
    """A scratch file (mode 0600) to write the result into; on success it is put on the pack storage
    under `key`, and the scratch file is removed whatever happens."""
    folder = restore_scratch_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = folder / f".{Path(key).name}.{secrets.token_hex(6)}.tmp"
    try:
        yield tmp
        result_store(key, tmp)
    finally:
        tmp.unlink(missing_ok=True)


def result_store(key: str, source: Path) -> int:
    """Put the file at `source` under `key`, written once; the bytes go from the page cache, never
    through one buffer in memory (mmap)."""
    if not is_stored_result(key):
        raise ValueError(f"a restore result's key starts with {RESULTS_PREFIX}/, not {key!r}")
    storage = pack_storage()
    storage.delete(key)  # a job's own leftover from an attempt that died before its row was saved
    with open(source, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            storage.put(key, [b""], private=True)
            return 0
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                storage.put(key, [view], private=True)
            finally:
                view.release()
    return size


def result_exists(key: str) -> bool:
    return bool(key) and is_stored_result(key) and pack_storage().exists(key)


def result_delete(key: str) -> None:
    """Delete a stored result (absent is fine); a legacy key names a scratch file, removed instead."""
    if not key:
        return
    if is_stored_result(key):
        pack_storage().delete(key)
        return
    root = restore_scratch_dir().resolve()
    path = (root / key).resolve()
    if root in path.parents:
        path.unlink(missing_ok=True)


class StoredResult(io.RawIOBase):
    """A stored result as a seekable, read-only file: each read is one ranged read of the storage."""

    def __init__(self, key: str):
        super().__init__()
        storage = pack_storage()
        self.key, self.length = key, storage.size(key)
        self._reader = storage.open_reader(key)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.length}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        length = min(len(buffer), self.length - self._position)
        if length <= 0:
            return 0
        data = self._reader.read_at(self._position, length)
        buffer[:length] = data
        self._position += length
        return length

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
        super().close()


def result_open(key: str) -> StoredResult:
    """The stored result, open for reading; FileNotFoundError once it is gone."""
    if not result_exists(key):
        raise FileNotFoundError(key)
    return StoredResult(key)


class _ChunkedFileResponse(FileResponse):
    block_size = DOWNLOAD_CHUNK


def result_response(result: StoredResult, *, content_type: str, filename: str | None = None) -> FileResponse:
    """The download, streamed a chunk at a time with its Content-Length (and as an attachment if named)."""
    if filename is None:
        return _ChunkedFileResponse(result, content_type=content_type)
    return _ChunkedFileResponse(result, as_attachment=True, filename=filename, content_type=content_type)

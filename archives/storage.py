"""Where pack files live, behind a small interface so an S3-compatible backend can be added.

A pack is written once and never modified: `put` makes it durable under its final name or not
at all; there is no append, truncate or overwrite. Garbage collection moves orphan packs into a
quarantine *inside* the storage (same key, under `.quarantine/`), where `rebuild-index` still
reads them, and deletes them only from there; it never touches paths itself.
"""
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from django.conf import settings

Buffers = Iterable[bytes | memoryview]  # any iterable: a list, or a generator streaming an upload

QUARANTINE_DIR = ".quarantine"
META_DIR = ".haven"  # small records the collector keeps beside the packs (they outlive a database restore)


@dataclass(frozen=True)
class PackStat:
    key: str
    size: int
    modified_at: datetime  # for a quarantined pack: when it was quarantined


class PackStorage(Protocol):
    def put(self, key: str, parts: Buffers, *, private: bool = False) -> None: ...

    def read_at(self, key: str, offset: int, length: int) -> bytes: ...

    def read_all(self, key: str) -> bytes: ...

    def keys(self, prefix: str) -> Iterator[str]: ...

    def size(self, key: str) -> int: ...

    def stats(self, prefix: str) -> Iterator[PackStat]: ...

    def quarantine(self, key: str, *, at: datetime) -> None: ...

    def quarantined(self, prefix: str) -> Iterator[PackStat]: ...

    def quarantined_read_all(self, key: str) -> bytes: ...

    def quarantine_restore(self, key: str) -> None: ...

    def quarantined_delete(self, key: str) -> None: ...

    def meta_read(self, name: str) -> bytes | None: ...

    def meta_write(self, name: str, data: bytes) -> None: ...

    def meta_delete(self, name: str) -> None: ...

    def open_reader(self, key: str) -> "PackReader": ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...


@dataclass(frozen=True)
class FileRanges:
    """Parts of a pack taken from an open file: `head`, then the byte ranges (offset, length) of
    `fd`, in that order. Any backend can iterate it (each range read in turn);
    LocalPackStorage.put copies the ranges inside the kernel instead (copy_file_range)."""

    head: bytes
    fd: int
    ranges: list[tuple[int, int]]

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        for offset, length in self.ranges:
            data = os.pread(self.fd, length, offset)
            if len(data) != length:
                raise OSError(f"the source ended at {offset}+{len(data)} of a {length}-byte range")
            yield data


def _copy_ranges(fd: int, source: FileRanges) -> None:
    _write_all(fd, [memoryview(source.head)])
    copy = getattr(os, "copy_file_range", None)
    for offset, length in source.ranges:
        done = 0
        while done < length:
            try:
                copied = copy(source.fd, fd, length - done, offset + done) if copy else 0
            except OSError:  # not between these files (EXDEV, ENOSYS, EINVAL): copy through memory
                copy, copied = None, 0
            if not copied:
                data = os.pread(source.fd, length - done, offset + done)
                if not data:
                    raise OSError(f"the source ended at {offset + done} of a {length}-byte range")
                _write_all(fd, [memoryview(data)])
                copied = len(data)
            done += copied


class PackExists(Exception):
    """A pack key is written once; a second write is a bug, never an overwrite."""


_IOV_MAX = 512


def _write_all(fd: int, views: list[memoryview]) -> None:
    while views:
        group = views[:_IOV_MAX]
        written = os.writev(fd, group)
        done = 0
        for view in group:  # drop what was written; keep the rest of a partly written view
            if written >= len(view):
                written -= len(view)
                done += 1
            else:
                views[done] = view[written:]
                break
        views = views[done:]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs_durable(path: Path) -> None:
    """mkdir -p, then fsync every directory it created and the parent of each.

    A new directory's entry lives in its parent: without the parent's fsync, a power cut can
    lose the whole new archive directory — and the "durable" pack inside it with it.
    """
    missing: list[Path] = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:  # a concurrent writer made it; fsync it anyway, it may not have yet
            pass
    for directory in reversed(missing):
        fsync_dir(directory.parent)
        fsync_dir(directory)


def _move_durable(source: Path, target: Path) -> None:
    """Move a pack without ever replacing one: link, fsync the new directory, unlink, fsync the old."""
    _makedirs_durable(target.parent)
    os.link(source, target)
    fsync_dir(target.parent)
    os.unlink(source)
    fsync_dir(source.parent)


class LocalPackStorage:
    """Packs as files under a root directory (the embedded default: var/packs)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: str, *, area: Path | None = None) -> Path:
        base = (area or self.root).resolve()
        path = (base / key).resolve()
        if base not in path.parents:
            raise ValueError(f"pack key {key!r} escapes the storage root")
        if area is None and path.relative_to(base).parts[0].startswith("."):
            raise ValueError(f"pack key {key!r} names a reserved directory")
        return path

    @property
    def _quarantine(self) -> Path:
        return self.root / QUARANTINE_DIR

    def put(self, key: str, parts: Buffers, *, private: bool = False) -> None:
        """Temporary name, fsync, link into place (fails if it exists), fsync the directory.

        `private`: readable by Haven's own user only (0600; packs are 0640) — for plaintext such
        as a web restore's zip.

        `parts` are written back to back with writev, so a pack assembled from slices of an
        upload is never copied into one buffer first; `FileRanges` are copied file to file.
        """
        final = self._path(key)
        _makedirs_durable(final.parent)
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o640)
        try:
            if isinstance(parts, FileRanges):
                _copy_ranges(fd, parts)
                parts = ()
            group: list[memoryview] = []
            for part in parts:  # written as they come: a streamed body is never held whole
                view = memoryview(part).cast("B")
                if len(view):
                    group.append(view)
                if len(group) == _IOV_MAX:
                    _write_all(fd, group)
                    group = []
            _write_all(fd, group)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)  # a body that failed half way leaves nothing behind
            raise
        os.close(fd)
        try:
            os.link(tmp, final)  # unlike rename, link never replaces an existing pack
        except FileExistsError:
            raise PackExists(key) from None
        finally:
            os.unlink(tmp)
        fsync_dir(final.parent)

    def read_at(self, key: str, offset: int, length: int) -> bytes:
        fd = os.open(self._path(key), os.O_RDONLY)
        try:
            data = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        if len(data) != length:
            raise OSError(f"pack {key} is shorter than its index says ({offset}+{length})")
        return data

    def read_all(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def _walk(self, area: Path, prefix: str) -> Iterator[tuple[str, Path]]:
        base = self._path(prefix, area=area) if prefix else area
        if not base.exists():
            return
        for path in sorted(base.rglob("*.pack")):
            key = path.relative_to(area)
            if not key.parts[0].startswith("."):  # the quarantine and the collector's records
                yield str(key), path

    def keys(self, prefix: str) -> Iterator[str]:
        for key, _path in self._walk(self.root, prefix):
            yield key

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def stats(self, prefix: str) -> Iterator[PackStat]:
        for key, path in self._walk(self.root, prefix):
            try:
                st = path.stat()
            except FileNotFoundError:  # moved or retired since the listing
                continue
            yield PackStat(key, st.st_size, datetime.fromtimestamp(st.st_mtime, tz=UTC))

    # --- quarantine: orphan packs kept (same key) until their retention ends ---

    def quarantine(self, key: str, *, at: datetime) -> None:
        """Move a live pack into quarantine; its retention clock starts `at`."""
        target = self._path(key, area=self._quarantine)
        _move_durable(self._path(key), target)
        os.utime(target, (at.timestamp(), at.timestamp()))
        fd = os.open(target, os.O_RDONLY)  # a lost mtime would date the quarantine back to the upload
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def quarantined(self, prefix: str) -> Iterator[PackStat]:
        for key, path in self._walk(self._quarantine, prefix):
            st = path.stat()
            yield PackStat(key, st.st_size, datetime.fromtimestamp(st.st_mtime, tz=UTC))

    def quarantined_read_all(self, key: str) -> bytes:
        return self._path(key, area=self._quarantine).read_bytes()

    def quarantine_restore(self, key: str) -> None:
        """Put a quarantined pack back under its key (never over an existing pack)."""
        try:
            _move_durable(self._path(key, area=self._quarantine), self._path(key))
        except FileExistsError:
            raise PackExists(key) from None

    def quarantined_delete(self, key: str) -> None:
        path = self._path(key, area=self._quarantine)
        path.unlink()
        fsync_dir(path.parent)

    # --- the collector's own small records ---

    def meta_read(self, name: str) -> bytes | None:
        try:
            return self._path(name, area=self.root / META_DIR).read_bytes()
        except FileNotFoundError:
            return None

    def meta_write(self, name: str, data: bytes) -> None:
        """Replace a record atomically and durably (temporary name, fsync, rename, fsync)."""
        final = self._path(name, area=self.root / META_DIR)
        _makedirs_durable(final.parent)
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            _write_all(fd, [memoryview(data)])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        fsync_dir(final.parent)

    def meta_delete(self, name: str) -> None:
        path = self._path(name, area=self.root / META_DIR)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(path.parent)

    def open_reader(self, key: str) -> "PackReader":
        return PackReader(self._path(key))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove a live pack no row references (compaction's own crash leftover); absent is fine."""
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(path.parent)


class PackReader:
    """Several reads from one pack with one open file."""

    def __init__(self, path: Path):
        self._fd = os.open(path, os.O_RDONLY)
        self.path = path

    def read_at(self, offset: int, length: int) -> bytes:
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise OSError(f"pack {self.path} is shorter than its index says ({offset}+{length})")
        return data

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def pack_storage() -> PackStorage:
    """The configured backend: HAVEN_PACK_STORAGE=s3://bucket/prefix, else the local folder.

    Built per call (cheap; tests change settings between calls); the S3 backend's boto3 client
    is the expensive part and is cached per process in `storage_s3`.
    """
    if settings.PACK_STORAGE:
        from archives.storage_s3 import S3PackStorage, parse_s3_url

        return S3PackStorage(*parse_s3_url(settings.PACK_STORAGE))
    return LocalPackStorage(settings.PACK_DIR)

"""Where pack files live, behind a small interface so an S3-compatible backend can be added.

A pack is written once and never modified: `put` makes it durable under its final name or not
at all; there is no append, truncate or overwrite.
"""
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from django.conf import settings

Buffers = list[bytes | memoryview]


class PackStorage(Protocol):
    def put(self, key: str, parts: Buffers) -> None: ...

    def read_at(self, key: str, offset: int, length: int) -> bytes: ...

    def read_all(self, key: str) -> bytes: ...

    def keys(self, prefix: str) -> Iterator[str]: ...

    def size(self, key: str) -> int: ...


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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalPackStorage:
    """Packs as files under a root directory (the embedded default: var/packs)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"pack key {key!r} escapes the storage root")
        return path

    def put(self, key: str, parts: Buffers) -> None:
        """Temporary name, fsync, link into place (fails if it exists), fsync the directory.

        `parts` are written back to back with writev, so a pack assembled from slices of an
        upload is never copied into one buffer first.
        """
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            _write_all(fd, [memoryview(part).cast("B") for part in parts if len(part)])
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, final)  # unlike rename, link never replaces an existing pack
        except FileExistsError:
            raise PackExists(key) from None
        finally:
            os.unlink(tmp)
        _fsync_dir(final.parent)

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

    def keys(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.exists():
            return
        for path in sorted(base.rglob("*.pack")):
            yield str(path.relative_to(self.root))

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def open_reader(self, key: str) -> "PackReader":
        return PackReader(self._path(key))


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


def pack_storage() -> LocalPackStorage:
    return LocalPackStorage(settings.PACK_DIR)

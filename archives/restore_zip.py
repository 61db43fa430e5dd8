"""The zip a web restore produces: files under their original absolute paths (without the leading
"/"), with their mode and modification time, written durably or not at all.

Standard library `zipfile`; the only departure is a name that is not valid UTF-8 (a Linux file
name is bytes): zipfile can only write UTF-8 names, so those are written as their raw bytes
without the UTF-8 flag — what Info-ZIP's unzip writes back to disk unchanged.
"""
import os
import secrets
import struct
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from archives.storage import fsync_dir
from formats.manifests import Manifest

_EXTENDED_TIMESTAMP = 0x5455  # Info-ZIP "UT": mtime in UTC seconds, what unzip restores
_UTF8_FLAG = 0x800  # general purpose bit 11: the name is UTF-8
_INT32 = (-(2 ** 31), 2 ** 31 - 1)


class _RawNameZipInfo(zipfile.ZipInfo):
    """A ZipInfo whose name is given as the file system's bytes."""

    raw_name: bytes = b""

    def _encodeFilenameFlags(self):  # noqa: N802 - overrides zipfile's private hook (3.11-3.13)
        if self.raw_name.isascii():
            return self.raw_name, self.flag_bits & ~_UTF8_FLAG
        try:
            self.raw_name.decode("utf-8")
        except UnicodeDecodeError:
            return self.raw_name, self.flag_bits & ~_UTF8_FLAG
        return self.raw_name, self.flag_bits | _UTF8_FLAG


def zip_entry_info(manifest: Manifest) -> zipfile.ZipInfo:
    raw = manifest.path.lstrip("/").encode("utf-8", "surrogateescape")
    info = _RawNameZipInfo(raw.decode("utf-8", "replace"), date_time=_dos_time(manifest.mtime_ns))
    info.raw_name = raw
    info.compress_type = zipfile.ZIP_DEFLATED
    info.file_size = manifest.size  # lets zipfile choose zip64 up front for large files
    info.create_system = 3  # Unix: external_attr holds st_mode
    info.external_attr = (manifest.mode & 0xFFFF) << 16
    seconds = min(max(manifest.mtime_ns // 1_000_000_000, _INT32[0]), _INT32[1])
    info.extra = struct.pack("<HHBl", _EXTENDED_TIMESTAMP, 5, 1, seconds)
    return info


def _dos_time(mtime_ns: int) -> tuple[int, int, int, int, int, int]:
    """Zip's own field holds 1980-2107 in local time without a zone; UTC, clamped."""
    seconds = min(max(mtime_ns // 1_000_000_000, 315532800), 4354819199)
    return time.gmtime(seconds)[:6]


@contextmanager
def zip_writer(final: Path) -> Iterator[zipfile.ZipFile]:
    """A zip written to a temporary name (mode 0600), fsynced and renamed into place on success;
    removed on any failure, so `final` exists only complete."""
    final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
                yield archive
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)


def zip_entry_write(archive: zipfile.ZipFile, manifest: Manifest,
                    fill: Callable[[Callable[[bytes], object]], int]) -> int:
    """One file: `fill(write)` writes its content in order and returns the bytes written."""
    entry: BinaryIO
    with archive.open(zip_entry_info(manifest), "w") as entry:
        return fill(entry.write)

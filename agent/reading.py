"""Reading a changed file for a backup (agent/backup.py's pool): its blocks with their ids, and
whether it changed while it was read."""
import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from agent.scan import FileEntry
from formats.blocks import block_id_for
from formats.chunking import MIN_CHUNK, read_chunks
from formats.keys import KeySet


def changed_while_read(entry: FileEntry, read_bytes: int, after: os.stat_result) -> bool:
    """`after`: the file's fstat once read, through the descriptor it was read from."""
    return (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (entry.size, entry.mtime_ns, entry.ctime_ns) \
        or read_bytes != entry.size


# Never follow a symlink, never wait on a FIFO or a device: the file read must be the one scanned.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _open_scanned(entry: FileEntry) -> int:
    """A descriptor of the regular file the scan saw at `entry.path`, or OSError (see scanned_file)."""
    fd = os.open(entry.path, READ_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_ino != entry.inode or st.st_dev != entry.dev:
            raise OSError(errno.ESTALE, "replaced since the scan (not the file scanned); read next time", entry.path)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def scanned_file(entry: FileEntry) -> Iterator[int]:
    """A descriptor of the regular file the scan saw at `entry.path`, for every read of a backup
    (small files here, big ones streamed by agent/backup.py), or OSError: a symlink, a FIFO or
    another file put there since the scan (same device and inode, or it is not read) is not read
    — an agent running as root must not back up what a user's symlink points at."""
    fd = _open_scanned(entry)
    try:
        yield fd
    finally:
        os.close(fd)


def _read_small(fd: int, size: int) -> bytes | None:
    """A file the scan saw under MIN_CHUNK (one block by definition, docs/formats.md §2): one
    read of a byte more than the scan saw. None if it grew past the scan's size: the general
    path reads it then."""
    data = os.read(fd, size + 1)
    if 0 < len(data) < size:  # a short read before the end the scan saw: read on to the end
        parts = [data]
        total = len(data)
        while total <= size:
            part = os.read(fd, size + 1 - total)
            if not part:
                break
            parts.append(part)
            total += len(part)
        data = b"".join(parts)
    if len(data) > size:
        return None
    return data


def read_blocks(keys: KeySet, entry: FileEntry) -> tuple[list[tuple[bytes, memoryview]], int, bool]:
    """(block id, plaintext) of each chunk of the file, the bytes read, and whether it changed
    while it was read (then what was read is committed and the file is read again next time).

    Written out without scanned_file's context manager: on trees of small files this function's
    own Python was more than its system calls (issue 12)."""
    fd = _open_scanned(entry)
    try:
        if entry.size < MIN_CHUNK:
            data = _read_small(fd, entry.size)
            if data is not None:
                blocks = [(block_id_for(keys, data), memoryview(data))] if data else []
                return blocks, len(data), changed_while_read(entry, len(data), os.fstat(fd))
            os.lseek(fd, 0, os.SEEK_SET)  # it grew past the scan's size: read it all again
        chunks, after = read_chunks(keys, fd)
    finally:
        os.close(fd)
    blocks = [(block_id_for(keys, data), data) for data in chunks]
    read = sum(len(data) for data in chunks)
    return blocks, read, changed_while_read(entry, read, after)

"""Reading a changed file for a backup (agent/backup.py's pool): its blocks with their ids, and
whether it changed while it was read."""
import os

from agent.scan import FileEntry
from formats.blocks import block_id_for
from formats.chunking import MIN_CHUNK, read_chunks
from formats.keys import KeySet


def changed_while_read(entry: FileEntry, read_bytes: int, after: os.stat_result | None = None) -> bool:
    """`after`: the file's fstat once read (saves a path lookup a file); else it is stat'ed by name."""
    if after is None:
        after = os.stat(entry.path, follow_symlinks=False)
    return (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (entry.size, entry.mtime_ns, entry.ctime_ns) \
        or read_bytes != entry.size


def _read_small(path: str, size: int) -> tuple[bytes, os.stat_result] | None:
    """A file the scan saw under MIN_CHUNK (one block by definition, docs/formats.md §2): open,
    one read of a byte more than the scan saw, fstat, close — four system calls, where a file
    object costs seven. None if it grew past the scan's size: the general path reads it then."""
    fd = os.open(path, os.O_RDONLY)
    try:
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
        return data, os.fstat(fd)
    finally:
        os.close(fd)


def read_blocks(keys: KeySet, entry: FileEntry) -> tuple[list[tuple[bytes, memoryview]], int, bool]:
    """(block id, plaintext) of each chunk of the file, the bytes read, and whether it changed
    while it was read (then what was read is committed and the file is read again next time)."""
    small = _read_small(entry.path, entry.size) if entry.size < MIN_CHUNK else None
    if small is not None:
        data, after = small
        blocks = [(block_id_for(keys, data), memoryview(data))] if data else []
        return blocks, len(data), changed_while_read(entry, len(data), after)
    chunks, after = read_chunks(keys, entry.path)
    blocks = [(block_id_for(keys, data), data) for data in chunks]
    read = sum(len(data) for data in chunks)
    return blocks, read, changed_while_read(entry, read, after)

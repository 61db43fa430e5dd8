"""Keyed content-defined chunking (docs/formats.md §2)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pyfastcdc

from formats.keys import KeySet

KiB = 1024
MiB = 1024 * KiB

MIN_CHUNK = 256 * KiB
AVG_CHUNK = 1 * MiB  # the real average we aim for
MAX_CHUNK = 4 * MiB
# pyfastcdc's real average is about avg_size + min_size (FastCDC §3.4), so we
# pass 768 KiB to get ~1 MiB. Its mask comes from round(log2(avg_size)) = 20,
# so a non power of two is accepted and only moves the normalization point.
FASTCDC_AVG_SIZE = AVG_CHUNK - MIN_CHUNK
NORMALIZED_CHUNKING = 1

_READ_SIZE = 1 * MiB


def chunker_for(keys: KeySet) -> pyfastcdc.FastCDC:
    """A FastCDC chunker seeded from the user key, so sizes don't fingerprint files.

    FastCDC objects are not safe to share between threads: create one per use.
    """
    return pyfastcdc.FastCDC(
        FASTCDC_AVG_SIZE,
        min_size=MIN_CHUNK,
        max_size=MAX_CHUNK,
        normalized_chunking=NORMALIZED_CHUNKING,
        seed=keys.chunker_seed,
    )


_WHOLE_READ = 8 * MiB
_local = threading.local()


def _cached_chunker(keys: KeySet) -> pyfastcdc.FastCDC:
    """One chunker per thread and seed: building one per small file costs more than chunking it."""
    cache = getattr(_local, "chunkers", None)
    if cache is None:
        cache = _local.chunkers = {}
    chunker = cache.get(keys.chunker_seed)
    if chunker is None:
        chunker = cache[keys.chunker_seed] = chunker_for(keys)
    return chunker


def _read_all(f, size_hint: int) -> bytes:
    parts, total = [], 0
    while True:
        part = f.read(max(size_hint - total, 0) + 1)  # +1 so growth since the stat is noticed
        if not part:
            return b"".join(parts)
        parts.append(part)
        total += len(part)


def iter_chunks(keys: KeySet, path: str | bytes | os.PathLike[str] | int) -> Iterator[memoryview]:
    """Yield the chunks of a file as read-only views of private copies.

    Reads the file instead of using ``cut_file`` (mmap): a live file truncated
    under an mmap kills the process with SIGBUS, and one rewritten under it
    could make the bytes hashed for the block id differ from the bytes then
    encrypted, storing a block that does not match its id. Each yielded chunk
    is a view of immutable bytes, valid for as long as the caller keeps it.

    Files up to 8 MiB are read whole and cut in memory (a file under MIN_CHUNK is
    one chunk by definition): most files are small, and a streaming chunker's
    set-up costs far more than chunking them. Boundaries are the same either way.

    `path` may be a descriptor the caller opened (and closes), read from where it stands.
    """
    with open(path, "rb", buffering=0, closefd=not isinstance(path, int)) as f:
        size = os.fstat(f.fileno()).st_size
        if size <= _WHOLE_READ:
            data = _read_all(f, size)
            if len(data) <= _WHOLE_READ:
                if not data:
                    return
                if len(data) < MIN_CHUNK:
                    yield memoryview(data)
                    return
                for chunk in _cached_chunker(keys).cut_buf(data):
                    yield chunk.data  # a view of `data`, which nothing can change
                return
            f.seek(0)  # it grew past the limit while we read it: stream it instead
        for chunk in _cached_chunker(keys).cut_stream(f):
            # cut_stream reuses its buffer: copy before the next chunk overwrites it.
            yield memoryview(bytes(chunk.data))


def read_chunks(keys: KeySet, path: str | bytes | os.PathLike[str] | int) -> tuple[list[memoryview], os.stat_result]:
    """The chunks of a file (as iter_chunks) and its fstat taken once they were read, before
    closing: what the caller compares with the scan's stat to tell a file that changed while it
    was read, without looking the path up a second time. `path` may be a descriptor the caller
    opened (and closes), read from where it stands."""
    with open(path, "rb", buffering=0, closefd=not isinstance(path, int)) as f:
        size = os.fstat(f.fileno()).st_size
        if size <= _WHOLE_READ:
            data = _read_all(f, size)
            if len(data) <= _WHOLE_READ:
                after = os.fstat(f.fileno())
                if not data:
                    return [], after
                if len(data) < MIN_CHUNK:
                    return [memoryview(data)], after
                return [chunk.data for chunk in _cached_chunker(keys).cut_buf(data)], after
            f.seek(0)
        chunks = [memoryview(bytes(chunk.data)) for chunk in _cached_chunker(keys).cut_stream(f)]
        return chunks, os.fstat(f.fileno())

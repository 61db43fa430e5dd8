"""Keyed content-defined chunking (docs/formats.md §2)."""

from __future__ import annotations

import os
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


def iter_chunks(keys: KeySet, path: str | bytes | os.PathLike[str]) -> Iterator[memoryview]:
    """Yield the chunks of a file as read-only views of private copies.

    Streams the file instead of using ``cut_file`` (mmap): a live file truncated
    under an mmap kills the process with SIGBUS, and one rewritten under it
    could make the bytes hashed for the block id differ from the bytes then
    encrypted, storing a block that does not match its id. Each yielded chunk
    is an immutable copy, valid for as long as the caller keeps it.
    """
    chunker = chunker_for(keys)
    with open(path, "rb", buffering=0) as f:
        for chunk in chunker.cut_stream(f):
            # cut_stream reuses its buffer: copy before the next chunk overwrites it.
            yield memoryview(bytes(chunk.data))

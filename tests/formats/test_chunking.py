import io
import statistics

import blake3
import pytest

from formats.blocks import MAX_BLOCK_SIZE, block_id_for
from formats.chunking import (
    AVG_CHUNK,
    FASTCDC_AVG_SIZE,
    MAX_CHUNK,
    MIN_CHUNK,
    chunker_for,
    iter_chunks,
)
from formats.keys import derive_keys

KEYS = derive_keys(bytes(range(32)))
OTHER = derive_keys(bytes(32))
MiB = 1 << 20


def _data(n: int, seed: bytes = b"haven test data") -> bytes:
    """Deterministic incompressible bytes."""
    return blake3.blake3(seed).digest(length=n)


@pytest.fixture(scope="module")
def data():
    return _data(32 * MiB)


def _write(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content)
    return p


def _chunks(tmp_path, content, keys=KEYS, name="f"):
    return [bytes(c) for c in iter_chunks(keys, _write(tmp_path, name, content))]


def test_constants():
    assert (MIN_CHUNK, AVG_CHUNK, MAX_CHUNK) == (256 << 10, 1 << 20, 4 << 20)
    assert FASTCDC_AVG_SIZE == 768 << 10
    assert MAX_CHUNK == MAX_BLOCK_SIZE
    c = chunker_for(KEYS)
    assert (c.min_size, c.avg_size, c.max_size) == (MIN_CHUNK, FASTCDC_AVG_SIZE, MAX_CHUNK)


def test_empty_file(tmp_path):
    assert _chunks(tmp_path, b"") == []


@pytest.mark.parametrize("size", [1, 1000, MIN_CHUNK])
def test_small_file_is_one_chunk(tmp_path, size):
    content = _data(size)
    assert _chunks(tmp_path, content) == [content]


def test_chunks_reassemble_and_sizes_bounded(tmp_path, data):
    chunks = _chunks(tmp_path, data)
    assert b"".join(chunks) == data
    assert all(MIN_CHUNK <= len(c) <= MAX_CHUNK for c in chunks[:-1])
    assert 1 <= len(chunks[-1]) <= MAX_CHUNK


def test_chunks_are_stable_copies(tmp_path):
    # Views must stay valid (and unchanged) after iteration and after the file changes.
    content = _data(8 * MiB)
    path = _write(tmp_path, "f", content)
    views = list(iter_chunks(KEYS, path))
    path.write_bytes(b"\0" * len(content))
    assert b"".join(bytes(v) for v in views) == content
    assert all(v.readonly for v in views)


def test_average_about_one_mib(data):
    sizes = [c.length for c in chunker_for(KEYS).cut_buf(data)]
    assert 0.8 * MiB < statistics.mean(sizes) < 1.3 * MiB


def test_stream_matches_buffer_boundaries(tmp_path, data):
    by_buf = [c.length for c in chunker_for(KEYS).cut_buf(data)]
    by_file = [len(c) for c in iter_chunks(KEYS, _write(tmp_path, "f", data))]
    by_stream = [c.length for c in chunker_for(KEYS).cut_stream(io.BytesIO(data))]
    assert by_buf == by_file == by_stream


def test_deterministic_per_key_and_different_across_keys(tmp_path, data):
    a = [len(c) for c in _chunks(tmp_path, data)]
    b = [len(c) for c in _chunks(tmp_path, data, name="g")]
    other = [len(c) for c in _chunks(tmp_path, data, keys=OTHER)]
    assert a == b
    assert a != other
    # Not just a shift: most boundaries differ.
    offsets = lambda sizes: {sum(sizes[:i]) for i in range(1, len(sizes))}  # noqa: E731
    assert len(offsets(a) & offsets(other)) < len(offsets(a)) // 4


def test_insert_at_start_changes_only_first_chunks(tmp_path, data):
    before = {block_id_for(KEYS, c) for c in _chunks(tmp_path, data)}
    after = [block_id_for(KEYS, c) for c in _chunks(tmp_path, b"inserted!" * 100 + data, name="g")]
    new = [i for i, b in enumerate(after) if b not in before]
    assert len(new) <= 2 and all(i <= 1 for i in new)


def test_edit_in_middle_changes_few_chunks(tmp_path, data):
    before = {block_id_for(KEYS, c) for c in _chunks(tmp_path, data)}
    mid = len(data) // 2
    edited = data[:mid] + b"EDIT" + data[mid + 4 :]
    after = [block_id_for(KEYS, c) for c in _chunks(tmp_path, edited, name="g")]
    assert sum(b not in before for b in after) <= 2


@pytest.mark.parametrize("size", [0, 1000, 3 * MiB, 9 * MiB])
def test_read_chunks_cuts_as_iter_chunks_and_stats_what_it_read(tmp_path, data, size):
    from formats.chunking import read_chunks

    path = _write(tmp_path, "f", data[:size])
    chunks, after = read_chunks(KEYS, path)
    assert [bytes(c) for c in chunks] == [bytes(c) for c in iter_chunks(KEYS, path)]
    assert after.st_size == size and after.st_ino == path.stat().st_ino

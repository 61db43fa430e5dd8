"""File reassembly shared by the agent's restore and the server's web restore (formats/reassembly.py)."""
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from formats.blocks import block_encrypt, block_id_for
from formats.frames import FRAME_BLOCK, FRAME_MANIFEST, frame_encode
from formats.keys import derive_keys
from formats.manifests import Manifest
from formats.reassembly import (
    FileAssembly,
    ReassemblyError,
    blocks_open,
    fetch_batches,
    file_extents,
    file_write,
    path_prefix_normalize,
    path_within,
    restore_selection,
)

KEYS = derive_keys(bytes(range(32)))
OTHER = derive_keys(bytes(32))
ARCHIVE = uuid.UUID("00000000-0000-4000-8000-000000000001")


def _stored(chunks: list[bytes], keys=KEYS, archive=ARCHIVE):
    """(manifest, {block id: stored frame}) of a file made of `chunks`."""
    ids = [block_id_for(keys, chunk) for chunk in chunks]
    frames = {i: frame_encode(FRAME_BLOCK, archive, i, block_encrypt(keys, i, c)) for i, c in zip(ids, chunks)}
    manifest = Manifest(path="/home/a/f.bin", size=sum(map(len, chunks)), mtime_ns=1, mode=0o644,
                        block_ids=ids, block_sizes=[len(c) for c in chunks])
    return manifest, frames


def test_it_writes_a_file_in_manifest_order_with_a_repeated_block():
    chunks = [os.urandom(1000), b"B" * 3000, os.urandom(10)]
    chunks.insert(2, chunks[0])  # the same block twice in one file
    manifest, frames = _stored(chunks)
    out, asked = [], []

    def fetch(ids):
        asked.append(ids)
        return [frames[i] for i in ids]

    assert file_write(KEYS, manifest, fetch=fetch, write=out.append, archive_id=ARCHIVE, max_bytes=2500) == manifest.size
    assert b"".join(out) == b"".join(chunks)
    assert all(len(batch) == len(set(batch)) for batch in asked)  # a batch never asks for a block twice
    assert len(asked) > 1  # bounded batches


def test_an_empty_file_needs_no_fetch():
    manifest = Manifest(path="/e", size=0, mtime_ns=0, mode=0o600)
    assert file_write(KEYS, manifest, fetch=lambda ids: pytest.fail("fetched"), write=lambda b: None) == 0


def test_concatenated_frames_as_the_agent_receives_them():
    manifest, frames = _stored([b"one" * 100, b"two" * 100])
    data = b"".join(frames[i] for i in manifest.block_ids)
    opened = list(blocks_open(KEYS, manifest.block_ids, data, sizes=manifest.block_sizes, verify_checksums=False))
    assert [p for _, p in opened] == [b"one" * 100, b"two" * 100]


@pytest.mark.parametrize("damage", ["payload", "checksum", "swap", "count", "kind", "key", "archive", "size"])
def test_every_check_refuses_bad_data(damage):
    manifest, frames = _stored([b"alpha" * 50, b"beta" * 50])
    ids = manifest.block_ids
    stored = [frames[i] for i in ids]
    sizes = manifest.block_sizes
    if damage == "payload":  # one ciphertext bit: the frame checksum (or GCM) notices
        stored[0] = stored[0][:-1] + bytes([stored[0][-1] ^ 1])
    elif damage == "checksum":  # header checksum altered only
        stored[0] = stored[0][:60] + bytes([stored[0][60] ^ 1]) + stored[0][61:]
    elif damage == "swap":
        stored.reverse()
    elif damage == "count":
        stored = stored[:1]
    elif damage == "kind":
        payload = frames[ids[0]][87:]
        stored[0] = frame_encode(FRAME_MANIFEST, ARCHIVE, ids[0], payload)
    elif damage == "key":  # a valid block of the same id, encrypted under another key
        stored[0] = frame_encode(FRAME_BLOCK, ARCHIVE, ids[0], block_encrypt(OTHER, ids[0], b"alpha" * 50))
    elif damage == "archive":
        stored[0] = frame_encode(FRAME_BLOCK, uuid.uuid4(), ids[0], frames[ids[0]][87:])
    elif damage == "size":
        sizes = [sizes[0] + 1, sizes[1]]
    with pytest.raises(ReassemblyError):
        list(blocks_open(KEYS, ids, stored, sizes=sizes, archive_id=ARCHIVE))


def test_a_tampered_block_is_refused_even_without_frame_checksums():
    manifest, frames = _stored([b"gamma" * 80])
    frame = frames[manifest.block_ids[0]]
    tampered = frame[:-1] + bytes([frame[-1] ^ 1])
    with pytest.raises(ReassemblyError, match="failed verification"):
        list(blocks_open(KEYS, manifest.block_ids, tampered, verify_checksums=False))


def test_a_manifest_that_does_not_add_up_is_refused():
    manifest, _ = _stored([b"x" * 10])
    manifest.size = 11
    with pytest.raises(ReassemblyError, match="does not add up"):
        file_extents(manifest)


def test_an_assembly_completes_once_with_the_right_size():
    manifest, _ = _stored([b"a" * 10, b"b" * 20])
    assembly = FileAssembly(manifest)
    assert [(e.offset, e.size) for e in assembly.extents] == [(0, 10), (10, 20)]
    assert not assembly.block_written(20)
    assert assembly.block_written(10) and assembly.complete
    with pytest.raises(ReassemblyError):
        assembly.block_written(1)
    short = FileAssembly(manifest)
    short.block_written(10)
    with pytest.raises(ReassemblyError, match="manifest says"):
        short.block_written(10)


def test_selection_by_prefix_sorts_and_refuses_a_path_twice():
    def m(path, deleted=False):
        return Manifest(path=path, size=0, mtime_ns=0, mode=0o644, deleted=deleted)

    listed = [m("/home/a/docs/z"), m("/home/a/docsx"), m("/home/a/docs/a"), m("/home/a/gone", deleted=True)]
    assert [x.path for x in restore_selection(listed, ["/home/a/docs"])] == ["/home/a/docs/a", "/home/a/docs/z"]
    assert [x.path for x in restore_selection(listed)] == ["/home/a/docs/a", "/home/a/docs/z", "/home/a/docsx"]
    with pytest.raises(ReassemblyError, match="twice"):
        restore_selection([m("/x"), m("/x")])
    assert path_within("/a/b", "/a/") and not path_within("/a/bc", "/a/b")


@pytest.mark.parametrize("prefix, expected", [("/home/a/", "/home/a"), ("/home/./a/../b", "/home/b"),
                                              ("//x", "/x"), ("/", "/")])
def test_prefixes_are_normalized(prefix, expected):
    assert path_prefix_normalize(prefix) == expected


@pytest.mark.parametrize("prefix", ["home/a", "", "./a", "/a\0b"])
def test_relative_prefixes_are_refused(prefix):
    with pytest.raises(ValueError, match="absolute"):
        path_prefix_normalize(prefix)


def test_batches_are_bounded_by_bytes_and_count():
    sizes = {bytes([i]) * 32: 10 for i in range(25)}
    by_count = fetch_batches(sizes, max_bytes=1000, max_blocks=7)
    assert [len(b) for b in by_count] == [7, 7, 7, 4]
    assert [i for b in by_count for i in b] == list(sizes)
    assert [len(b) for b in fetch_batches(sizes, max_bytes=25, max_blocks=100)] == [3] * 8 + [1]


def test_reassembly_imports_nothing_of_django():
    code = ("import formats.reassembly, sys; "
            "assert 'django' not in sys.modules, sorted(m for m in sys.modules if 'django' in m)")
    subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], check=True, timeout=60)

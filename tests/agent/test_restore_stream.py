"""Fetch answers read as they arrive (formats/reassembly.py frames_read): frames decoded across
any chunk boundaries, the same checks as a whole answer, and a cut-off or damaged answer mid-stream
gives a clear error and leaves no partial file (agent/restore.py)."""
import os
import random
import uuid
from contextlib import contextmanager

import pytest

from agent.fetching import FetchInterrupted
from agent.restore import RestoreError, restore
from formats.blocks import block_encrypt, block_id_for
from formats.frames import FRAME_BLOCK, frame_encode
from formats.keys import derive_keys
from formats.manifests import Manifest
from formats.reassembly import ReassemblyError, frames_open, frames_read

KEYS = derive_keys(bytes(range(32)))
ARCHIVE = uuid.UUID(int=7)
TEXTS = [b"alpha" * 1000, os.urandom(70_000), b"", b"gamma " * 30_000, os.urandom(3)]


def _frame(text: bytes) -> bytes:
    block_id = block_id_for(KEYS, text)
    return frame_encode(FRAME_BLOCK, ARCHIVE, block_id, block_encrypt(KEYS, block_id, text))


def _chunks(data: bytes, seed: int):
    """readinto over `data`, handing out pieces of random sizes (1 byte to 100 KiB)."""
    rng = random.Random(seed)
    position = 0

    def readinto(view: memoryview) -> int:
        nonlocal position
        n = min(len(view), rng.choice([1, 2, 86, 87, 88, rng.randint(1, 100_000)]), len(data) - position)
        view[:n] = data[position:position + n]
        position += n
        return n
    return readinto


def _read(texts, body, seed=0, asked=None):
    ids = [block_id_for(KEYS, t) for t in texts]
    sizes = {block_id: len(t) for block_id, t in zip(ids, texts)}
    return list(frames_read(KEYS, ids if asked is None else asked, _chunks(body, seed), sizes=sizes,
                            archive_id=ARCHIVE))


@pytest.mark.parametrize("seed", range(8))
def test_frames_are_decoded_across_any_chunk_boundaries(seed):
    order = random.Random(seed).sample(TEXTS, len(TEXTS))
    body = b"".join(_frame(t) for t in order)
    ids = [block_id_for(KEYS, t) for t in TEXTS]
    whole = list(frames_open(KEYS, ids, body, sizes={i: len(t) for i, t in zip(ids, TEXTS)}, archive_id=ARCHIVE))
    assert _read(TEXTS, body, seed) == whole == [(block_id_for(KEYS, t), t) for t in order]


@pytest.mark.parametrize("cut", [1, 50, 87, 88, 120])  # within the third frame (133 bytes)
def test_an_answer_cut_off_mid_frame_is_refused_after_the_frames_before_it(cut):
    body = b"".join(_frame(t) for t in TEXTS)
    cut_at = len(_frame(TEXTS[0])) + len(_frame(TEXTS[1])) + cut
    got = []
    with pytest.raises(ReassemblyError, match="answer ends inside its (header|payload)"):
        ids = [block_id_for(KEYS, t) for t in TEXTS]
        for item in frames_read(KEYS, ids, _chunks(body[:cut_at], cut), sizes={i: len(t) for i, t in
                                zip(ids, TEXTS)}, archive_id=ARCHIVE):
            got.append(item)
    assert [t for _, t in got] == TEXTS[:2]  # each yielded block was whole and verified


@pytest.mark.parametrize("case", ["missing", "repeated", "not asked", "damaged", "extra data", "huge length"])
def test_anything_but_each_block_asked_for_once_and_intact_is_refused(case):
    frames = [_frame(t) for t in TEXTS]
    body, asked = b"".join(frames), None
    if case == "missing":
        body = b"".join(frames[:-1])
    elif case == "repeated":
        body = frames[0] + frames[0]
    elif case == "not asked":
        asked = [block_id_for(KEYS, t) for t in TEXTS[1:]]
    elif case == "damaged":
        damaged = bytearray(frames[1])
        damaged[-1] ^= 1
        body = frames[0] + bytes(damaged) + b"".join(frames[2:])
    elif case == "extra data":
        body += b"\0" * 10
    else:
        header = bytearray(frames[0][:87])
        header[51:55] = (0xFFFFFFFF).to_bytes(4, "big")
        body = bytes(header)
    with pytest.raises(ReassemblyError):
        _read(TEXTS, body, asked=asked)


class _Client:
    """The server as restore needs it: blocks_fetch answers with `answer(block_ids)` as a stream."""
    retries, backoff = 2, 0.0

    def __init__(self, answer):
        self.answer = answer
        self.asked: list[list[bytes]] = []

    @contextmanager
    def blocks_fetch(self, archive_id, block_ids):
        self.asked.append(list(block_ids))
        body, fails = self.answer(block_ids)
        reader = _chunks(body, 1)
        sent = 0

        class Answer:
            @staticmethod
            def readinto(view):
                nonlocal sent
                if fails is not None and sent >= fails:
                    raise FetchInterrupted("connection reset")
                n = reader(view[:len(view) if fails is None else max(1, min(len(view), fails - sent))])
                sent += n
                return n
        yield Answer()


def _manifests(files: dict[str, bytes]) -> list[Manifest]:
    return [Manifest(path=path, size=len(data), mtime_ns=10**18, mode=0o644,
                     block_ids=[block_id_for(KEYS, data)] if data else [], block_sizes=[len(data)] if data else [])
            for path, data in files.items()]


FILES = {"/h/a.txt": b"a" * 5000, "/h/b.bin": os.urandom(2_000_000), "/h/c.txt": b"c" * 7000}


def _body(block_ids):
    by_id = {block_id_for(KEYS, data): data for data in FILES.values()}
    return b"".join(_frame(by_id[block_id]) for block_id in block_ids)


def test_a_damaged_answer_mid_stream_fails_the_restore_and_leaves_no_partial_file(tmp_path):
    def damaged(block_ids):
        body = bytearray(_body(block_ids))
        body[len(_frame(FILES["/h/a.txt"])) + 1000] ^= 1  # inside the big file's frame
        return bytes(body), None

    with pytest.raises(RestoreError, match="failed verification"):
        restore(client=_Client(damaged), keys=KEYS, archive_id=str(ARCHIVE), dest=tmp_path,
                manifests=_manifests(FILES))
    left = {p.name: p.read_bytes() for p in (tmp_path / "h").iterdir()}
    assert left == {"a.txt": FILES["/h/a.txt"]}  # complete and verified before the damage; no temporary


def test_a_connection_cut_mid_answer_asks_again_for_the_blocks_not_yet_received(tmp_path):
    first = len(_frame(FILES["/h/a.txt"]))
    client = _Client(lambda ids: (_body(ids), first + 5000 if len(ids) == 3 else None))
    summary = restore(client=client, keys=KEYS, archive_id=str(ARCHIVE), dest=tmp_path, manifests=_manifests(FILES))
    assert summary.files == 3
    assert [len(ids) for ids in client.asked] == [3, 2]
    for path, data in FILES.items():
        assert (tmp_path / path.lstrip("/")).read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "h").iterdir()) == ["a.txt", "b.bin", "c.txt"]


def test_a_connection_that_keeps_failing_fails_the_restore_without_partial_files(tmp_path):
    client = _Client(lambda ids: (_body(ids), 100))
    with pytest.raises(RestoreError, match="connection reset"):
        restore(client=client, keys=KEYS, archive_id=str(ARCHIVE), dest=tmp_path, manifests=_manifests(FILES))
    assert len(client.asked) == client.retries + 1
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]

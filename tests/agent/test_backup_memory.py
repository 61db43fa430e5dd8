"""A backup's memory does not grow with the data (issue 12: agent peak RSS <= 200 MB): the
plaintext in flight, the frames waiting for a batch and the batches handed to the uploader are
each bounded. Run scaled down (MiB instead of tens of MiB) so the bound shows on a small tree."""
import os
import platform
import threading
import time
import tracemalloc

import pytest

import agent.backup
from agent.backup import BackupEngine
from agent.memory import malloc_arenas_share
from agent.state import LocalState
from agent.uploader import Uploader
from formats.blocks import BLOCK_OVERHEAD, MAX_BLOCK_SIZE
from formats.keys import derive_keys
from tests.agent.fake_server import EverythingMissingServer

KEYS = derive_keys(bytes(range(32)))
ARCHIVE = "00000000-0000-0000-0000-0000000000aa"
MiB = 1024 * 1024


class SlowServer(EverythingMissingServer):
    """Every block is missing; an upload takes a while and keeps nothing (as a server on a
    loaded machine would)."""

    def __init__(self):
        self.batches = 0

    def uploaded(self, batch) -> None:
        time.sleep(0.02)
        self.batches += 1


class CountingUploader(Uploader):
    """Counts the batches handed to the uploader and not yet sent (at most BATCHES_AHEAD)."""

    def __init__(self, engine, run_id):
        self.lock = threading.Lock()
        self.outstanding = self.most_outstanding = self.largest_part = 0
        self.not_lists: list[type] = []
        super().__init__(engine, run_id)

    def put(self, item) -> None:
        if item is not None and item[0] == "batch":
            if not isinstance(item[1], list):
                self.not_lists.append(type(item[1]))
            self.largest_part = max(self.largest_part, *(len(part) for part in item[1]))
            with self.lock:
                self.outstanding += 1
                self.most_outstanding = max(self.most_outstanding, self.outstanding)
        super().put(item)

    def _send(self, item: tuple) -> None:
        try:
            super()._send(item)
        finally:
            if item[0] == "batch":
                with self.lock:
                    self.outstanding -= 1


def _scaled_down(monkeypatch) -> None:
    monkeypatch.setattr(agent.backup, "BATCH_BYTES", 4 * MiB)
    monkeypatch.setattr(BackupEngine, "READ_AHEAD_BYTES", 8 * MiB)
    monkeypatch.setattr(BackupEngine, "STAGING_BYTES", 2 * MiB)
    monkeypatch.setattr(BackupEngine, "GROUP_BYTES", 1 * MiB)


def _random_tree(tmp_path, files: int):
    source = tmp_path / "data"
    source.mkdir()
    for index in range(files):  # 2 MiB each, incompressible: every byte is sent
        (source / f"file-{index:02}.bin").write_bytes(os.urandom(2 * MiB))
    (tmp_path / "state").mkdir()
    return source


def test_batches_are_never_joined_and_at_most_batches_ahead_wait_for_the_uploader(tmp_path, monkeypatch):
    _scaled_down(monkeypatch)
    monkeypatch.setattr(agent.backup, "_Uploader", CountingUploader)
    source = _random_tree(tmp_path, 20)
    server = SlowServer()
    engine = BackupEngine(client=server, keys=KEYS, archive_id=ARCHIVE, state=LocalState(tmp_path / "state", ARCHIVE))
    summary = engine.run([str(source)])
    assert not summary.errors and server.batches >= 10
    uploader = engine._uploader
    assert uploader.not_lists == []  # a batch is the list of its frames' parts, not one joined copy
    assert uploader.largest_part <= MAX_BLOCK_SIZE + BLOCK_OVERHEAD  # at most one block's payload
    assert 1 <= uploader.most_outstanding <= Uploader.BATCHES_AHEAD


def test_peak_memory_is_bounded_by_the_pipeline_not_the_data(tmp_path, monkeypatch):
    _scaled_down(monkeypatch)
    source = _random_tree(tmp_path, 40)  # 80 MiB
    server = SlowServer()
    engine = BackupEngine(client=server, keys=KEYS, archive_id=ARCHIVE,
                          state=LocalState(tmp_path / "state", ARCHIVE))
    tracemalloc.start()
    try:
        summary = engine.run([str(source)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not summary.errors and summary.versions_committed == 41  # 40 files and the root's listing
    assert server.batches >= 20
    # In flight: 8 MiB of plaintext (+ one unit) or its frames, a batch being built (4 MiB) and
    # one being sent (4 MiB), and the encryption's temporaries: ~21 MiB, whatever the tree's size.
    assert peak < 28 * MiB, f"peak {peak / MiB:.1f} MiB"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="only glibc has per-thread arenas to share")
def test_glibc_is_told_to_share_one_arena_between_the_agents_threads():
    assert malloc_arenas_share() is True

"""A backup's memory does not grow with the data (issue 12: agent peak RSS <= 200 MB): the
plaintext in flight, the frames waiting for a batch and the joined batches are each bounded.
Run scaled down (MiB instead of tens of MiB) so the bound shows on a small tree."""
import os
import time
import tracemalloc

import agent.backup
from agent.backup import BackupEngine
from agent.state import LocalState
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


def test_peak_memory_is_bounded_by_the_pipeline_not_the_data(tmp_path, monkeypatch):
    monkeypatch.setattr(agent.backup, "BATCH_BYTES", 4 * MiB)
    monkeypatch.setattr(BackupEngine, "READ_AHEAD_BYTES", 8 * MiB)
    monkeypatch.setattr(BackupEngine, "STAGING_BYTES", 2 * MiB)
    monkeypatch.setattr(BackupEngine, "GROUP_BYTES", 1 * MiB)
    source = tmp_path / "data"
    source.mkdir()
    for index in range(40):  # 80 MiB, incompressible: every byte is sent
        (source / f"file-{index:02}.bin").write_bytes(os.urandom(2 * MiB))
    (tmp_path / "state").mkdir()
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
    # In flight: 8 MiB of plaintext (+ one unit), its frames, a batch being built (4 MiB), one
    # sending and one waiting (2 x 4 MiB) and a join: ~30 MiB, whatever the size of the tree.
    assert peak < 36 * MiB, f"peak {peak / MiB:.1f} MiB"

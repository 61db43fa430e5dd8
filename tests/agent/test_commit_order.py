"""The crash rule on the agent's side, with commits and batches on their own threads
(agent/uploader.py): a version is committed only after every batch holding its new blocks was
acknowledged, and the local state records it only after the commit; a commit does not wait for
batches queued after it."""
import os
import threading
import time

import agent.backup
import agent.commits
from agent.backup import BackupEngine
from agent.state import LocalState
from agent.uploader import Uploader
from formats.frames import frames_decode
from formats.keys import derive_keys
from tests.agent.fake_server import EverythingMissingServer, refuse_uploads

KEYS = derive_keys(bytes(range(32)))
ARCHIVE = "00000000-0000-0000-0000-0000000000aa"
KiB = 1024


class OrderServer(EverythingMissingServer):
    """Uploads are slow; every acknowledged block and every commit is checked against them."""

    def __init__(self, state_of):
        self.lock = threading.Lock()
        self.acknowledged: set[str] = set()
        self.committed: set[str] = set()
        self.overtaken: list[str] = []
        self.recorded_early: list[str] = []
        self.commits = 0
        self.state_of = state_of

    def blocks_upload(self, archive_id, run_id, batch):
        time.sleep(0.05)  # a commit sent without waiting for this answer would overtake it
        ids = {bytes(frame.block_id).hex() for _, frame in frames_decode(b"".join(batch))}
        with self.lock:
            self.acknowledged |= ids
        return {"stored": len(ids), "duplicates": 0, "pack_id": None}

    def versions_commit(self, archive_id, run_id, versions):
        with self.lock:
            for version in versions:
                self.overtaken += [b.hex() for b in version.block_ids if b.hex() not in self.acknowledged]
            # Nothing of this commit may be in the local state before the server answered.
            recorded = self.state_of()
            self.recorded_early += [str(v.version_id) for v in versions if str(v.version_id) in recorded]
            self.committed |= {str(v.version_id) for v in versions}
            self.commits += 1
        time.sleep(0.02)
        return {"committed": len(versions)}


def test_no_commit_overtakes_a_batch_holding_its_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(agent.backup, "BATCH_BYTES", 256 * KiB)  # many batches
    monkeypatch.setattr(agent.commits, "COMMIT_VERSIONS", 20)  # many commits between them
    monkeypatch.setattr(agent.backup, "COMMIT_VERSIONS", 20)
    monkeypatch.setattr(BackupEngine, "STAGING_IDS", 16)
    source = tmp_path / "data"
    source.mkdir()
    for index in range(300):  # incompressible: a batch holds ~25 files
        (source / f"file-{index:03}.bin").write_bytes(os.urandom(10 * KiB))
    (tmp_path / "state").mkdir()
    state = LocalState(tmp_path / "state", ARCHIVE)
    server = OrderServer(lambda: {row.version_id for row in state.lookup_all().values()})
    summary = BackupEngine(client=server, keys=KEYS, archive_id=ARCHIVE, state=state).run([str(source)])
    assert not summary.errors and summary.versions_committed >= 300
    assert server.commits >= 10 and len(server.acknowledged) == 300
    assert server.overtaken == []
    assert server.recorded_early == []
    assert {row.version_id for row in state.lookup_all().values()} <= server.committed


class GatedServer:
    """The second upload waits for the test; commits are recorded."""

    def __init__(self):
        self.uploads = 0
        self.gate = threading.Event()
        self.committed = threading.Event()

    def blocks_upload(self, archive_id, run_id, batch):
        self.uploads += 1
        if self.uploads == 2:
            assert self.gate.wait(5)

    def versions_commit(self, archive_id, run_id, versions):
        self.committed.set()


class Commits:
    def materialize(self, versions, cached):
        return versions, cached


class State:
    def record_committed(self, cached):
        pass


class Summary:
    versions_committed = 0


class Engine:
    archive_id = "archive"

    def __init__(self):
        self.client, self.commits, self.state, self.summary = GatedServer(), Commits(), State(), Summary()


def test_a_commit_waits_only_for_the_batches_queued_before_it():
    engine = Engine()
    uploader = Uploader(engine, "run")
    uploader.batch_slot()
    uploader.put(("batch", [b"first"], 5))
    uploader.put(("commit", [{"version_id": "v"}], [], [], []))  # its blocks are in the first batch
    uploader.batch_slot()
    uploader.put(("batch", [b"second"], 6))  # held by the server until the commit went through
    assert engine.client.committed.wait(5)
    engine.client.gate.set()
    uploader.finish()
    assert engine.summary.versions_committed == 1


def test_a_commit_is_not_sent_when_a_batch_before_it_failed():
    engine = Engine()
    refuse_uploads(engine.client)
    uploader = Uploader(engine, "run")
    uploader.batch_slot()
    uploader.put(("batch", [b"first"], 5))
    uploader.put(("commit", [{"version_id": "v"}], [], [], []))
    try:
        uploader.finish()
    except ConnectionError:
        pass
    else:
        raise AssertionError("the failed upload was not reported")
    assert not engine.client.committed.is_set()

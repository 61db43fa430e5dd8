"""Version ids are time-ordered UUIDs (version 7, docs/protocol.md): a backup's ids are
neighbours in the server's unique index, and ids of a later commit sort after an earlier one's."""
import os
import time
import uuid

import agent.backup
import agent.commits
from agent.backup import BackupEngine
from agent.commits import version_uuid
from agent.state import LocalState
from formats.keys import derive_keys
from tests.agent.fake_server import EverythingMissingServer

KEYS = derive_keys(bytes(range(32)))
ARCHIVE = "00000000-0000-0000-0000-0000000000aa"


def _unix_ms(version_id: uuid.UUID) -> int:
    return int.from_bytes(version_id.bytes[:6], "big")


def test_a_version_id_is_a_uuid7_of_its_time_and_random_bits():
    random16 = bytes(range(0xF0, 0x100))
    version_id = version_uuid(random16, 0x0123_4567_89AB)
    assert version_id.version == 7 and version_id.variant == uuid.RFC_4122
    assert _unix_ms(version_id) == 0x0123_4567_89AB
    raw = version_id.bytes
    assert raw[6] & 0x0F == random16[6] & 0x0F and raw[7] == random16[7]  # rand_a: 12 bits
    assert raw[8] & 0x3F == random16[8] & 0x3F and raw[9:] == random16[9:]  # rand_b: 62 bits
    assert version_uuid(os.urandom(16), 5) != version_uuid(os.urandom(16), 5)


class RecordingServer(EverythingMissingServer):
    def __init__(self):
        self.commits: list[list[str]] = []

    def versions_commit(self, archive_id, run_id, versions):
        self.commits.append([str(version.version_id) for version in versions])
        time.sleep(0.003)  # the next commit's ids are of a later millisecond
        return {"committed": len(versions)}


def test_a_backups_version_ids_are_of_its_time_and_ordered_commit_by_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(agent.commits, "COMMIT_VERSIONS", 10)
    monkeypatch.setattr(agent.backup, "COMMIT_VERSIONS", 10)
    source = tmp_path / "data"
    source.mkdir()
    for index in range(40):
        (source / f"file-{index:02}.txt").write_bytes(os.urandom(100))
    (tmp_path / "state").mkdir()
    server = RecordingServer()
    before = time.time_ns() // 1_000_000
    summary = BackupEngine(client=server, keys=KEYS, archive_id=ARCHIVE,
                           state=LocalState(tmp_path / "state", ARCHIVE)).run([str(source)])
    after = time.time_ns() // 1_000_000
    assert not summary.errors and len(server.commits) >= 4
    ids = [[uuid.UUID(value) for value in commit] for commit in server.commits]
    assert all(version_id.version == 7 and before <= _unix_ms(version_id) <= after
               for commit in ids for version_id in commit)
    # Commits of files are built in order, each just before it is sent; the last one also
    # carries the directory listing, whose id the main thread made before that.
    files = ids[:-1]
    for earlier, later in zip(files, files[1:]):
        assert max(earlier) < min(later)  # as the server's index (and PostgreSQL's uuid order) sorts them
    assert len({version_id for commit in ids for version_id in commit}) == sum(map(len, ids))

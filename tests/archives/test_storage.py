"""Local pack storage: a new pack's directory entries are durable, not only the pack's own directory."""
import os
from pathlib import Path

from archives.storage import LocalPackStorage


def test_put_fsyncs_every_directory_it_creates_and_the_parent_of_each(tmp_path, monkeypatch):
    synced: list[Path] = []
    real_fsync = os.fsync

    def recording_fsync(fd):  # an observation: which files and directories reached the disk
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    storage = LocalPackStorage(tmp_path / "packs")
    storage.put("org/archive/ab/pack.pack", [b"HVNPACK1"])

    created = [tmp_path / "packs", tmp_path / "packs/org", tmp_path / "packs/org/archive",
               tmp_path / "packs/org/archive/ab"]
    for directory in created:
        assert directory in synced, f"{directory} was created but never fsynced"
        assert directory.parent in synced, f"{directory.parent} holds a new entry but was never fsynced"
    assert synced[-1] == tmp_path / "packs/org/archive/ab"  # after the link: the pack's own name is durable

    synced.clear()
    storage.put("org/archive/ab/second.pack", [b"HVNPACK1"])
    assert tmp_path / "packs/org/archive/ab" in synced  # an existing directory: its new entry still synced


def test_quarantine_and_restore_keep_the_pack_inside_the_storage(tmp_path):
    from datetime import UTC, datetime

    storage = LocalPackStorage(tmp_path / "packs")
    storage.put("org/archive/ab/pack.pack", [b"HVNPACK1", b"data"])
    at = datetime(2026, 1, 2, tzinfo=UTC)
    storage.quarantine("org/archive/ab/pack.pack", at=at)
    assert list(storage.keys("")) == [] and [s.key for s in storage.stats("")] == []
    assert [(s.key, s.modified_at) for s in storage.quarantined("")] == [("org/archive/ab/pack.pack", at)]
    assert storage.quarantined_read_all("org/archive/ab/pack.pack") == b"HVNPACK1data"
    storage.quarantine_restore("org/archive/ab/pack.pack")
    assert list(storage.keys("org/archive")) == ["org/archive/ab/pack.pack"]
    assert list(storage.quarantined("")) == []

"""The activity watcher on a real file system (watchdog, inotify): one event per file change,
with its facts and the right exfiltration vector."""
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from agent.activity.classify import category_of, entropy_of
from agent.activity.watcher import ActivityWatcher, WatchSettings
from tests.support import wait_until


@pytest.fixture
def watched(tmp_path):
    home, usb, cloud = tmp_path / "home", tmp_path / "media" / "USB", tmp_path / "home" / "Dropbox"
    for folder in (home, usb, cloud):
        folder.mkdir(parents=True)
    events, lock = [], threading.Lock()

    def emit(event):
        with lock:
            events.append(event)

    settings = WatchSettings(roots=[str(home)], removable_roots=[str(tmp_path / "media")], cloud_roots=[str(cloud)],
                             quiet_seconds=0.3, mass_threshold=5)
    watcher = ActivityWatcher(settings, emit)
    watcher.start()
    yield home, usb, cloud, events
    watcher.stop()


def _of(events, path):
    return [e for e in events if e["path"] == str(path) or e["dest_path"] == str(path)]


def test_a_file_copied_to_removable_media_is_one_created_event_with_its_facts(watched):
    home, usb, _, events = watched
    source = home / "plan.docx"
    source.write_bytes(b"quarterly plan " * 1000)
    shutil.copy(source, usb / "plan.docx")
    wait_until(lambda: _of(events, usb / "plan.docx"), timeout=10, what="the copy's event")
    time.sleep(0.5)
    (copied,) = _of(events, usb / "plan.docx")
    assert copied["type"] == "created" and copied["vector"] == "removable_media"
    assert copied["size"] == 15000 and copied["category"] == "document"
    import hashlib
    assert copied["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert 3 < copied["entropy"] < 5 and copied["os_user"]
    (original,) = _of(events, source)
    assert original["vector"] is None


def test_cloud_sync_archives_renames_and_deletes(watched):
    home, _, cloud, events = watched
    (cloud / "notes.txt").write_text("shared")
    (home / "take.zip").write_bytes(os.urandom(2000))
    (home / "a.txt").write_text("a")
    wait_until(lambda: len(events) >= 3, timeout=10, what="three events")
    (home / "a.txt").rename(home / "b.txt")
    (home / "take.zip").unlink()
    wait_until(lambda: len(events) >= 5, timeout=10, what="five events")
    by_path = {(e["type"], e["path"]): e for e in events}
    assert by_path[("created", str(cloud / "notes.txt"))]["vector"] == "cloud_sync"
    assert by_path[("created", str(home / "take.zip"))]["vector"] == "archive_created"
    renamed = by_path[("renamed", str(home / "a.txt"))]
    assert renamed["dest_path"] == str(home / "b.txt") and renamed["vector"] is None
    deleted = by_path[("deleted", str(home / "take.zip"))]
    assert deleted["size"] is None and deleted["sha256"] is None


def test_a_temporary_file_created_and_deleted_unseen_is_no_event(watched):
    home, _, _, events = watched
    (home / "~lock.tmp").write_text("x")
    (home / "~lock.tmp").unlink()
    (home / "marker.txt").write_text("x")
    wait_until(lambda: _of(events, home / "marker.txt"), timeout=10, what="the marker")
    assert not _of(events, home / "~lock.tmp")


def test_a_burst_of_high_entropy_rewrites_is_mass_encryption(watched):
    home, _, _, events = watched
    files = [home / f"report-{i}.txt" for i in range(8)]
    for path in files:
        path.write_text("plain text that compresses well " * 2000)
    wait_until(lambda: len(events) >= 8, timeout=10, what="the files' creation")
    assert all(e["vector"] is None for e in events)
    for path in files:
        path.write_bytes(os.urandom(70_000))
    wait_until(lambda: len(events) >= 16, timeout=10, what="the rewrites")
    rewrites = [e for e in events if e["type"] == "modified"]
    assert len(rewrites) == 8 and all(e["entropy"] > 7.9 for e in rewrites)
    # The threshold is 5 files: the fifth rewrite on is a mass encryption.
    assert [e["vector"] for e in rewrites] == [None] * 4 + ["mass_encryption"] * 4


def test_a_burst_of_renames_is_mass_rename(watched):
    home, _, _, events = watched
    for i in range(6):
        (home / f"f{i}.doc").write_text("x")
    wait_until(lambda: len(events) >= 6, timeout=10, what="creation")
    for i in range(6):
        (home / f"f{i}.doc").rename(home / f"f{i}.doc.locked")
    wait_until(lambda: len(events) >= 12, timeout=10, what="renames")
    renames = [e["vector"] for e in events if e["type"] == "renamed"]
    assert renames == [None] * 4 + ["mass_rename"] * 2


def test_categories_and_entropy():
    assert category_of("/x/a.XLSX")[0] == "spreadsheet"
    assert category_of("/x/a.tar.gz")[0] == "archive"
    assert category_of("/x/unknown.weird")[0] == "other"
    assert entropy_of(b"") == 0 and entropy_of(b"aaaa") == 0
    assert entropy_of(bytes(range(256)) * 4) == pytest.approx(8.0)
    assert 7.9 < entropy_of(os.urandom(65536)) <= 8


def test_the_agents_own_directory_is_ignored(tmp_path):
    events = []
    own = tmp_path / "home" / ".haven"
    own.mkdir(parents=True)
    settings = WatchSettings(roots=[str(tmp_path / "home")], removable_roots=[], cloud_roots=[],
                             ignored=lambda p: p.startswith(str(own)), quiet_seconds=0.2)
    watcher = ActivityWatcher(settings, events.append)
    watcher.start()
    try:
        (own / "queue.sqlite3").write_bytes(b"x")
        Path(tmp_path / "home" / "seen.txt").write_text("y")
        wait_until(lambda: events, timeout=10, what="an event")
        time.sleep(0.5)
    finally:
        watcher.stop()
    assert [e["path"] for e in events] == [str(tmp_path / "home" / "seen.txt")]


def test_a_dense_copy_to_removable_media_during_a_burst_of_rewrites_is_still_removable_media(watched):
    home, usb, _, events = watched
    documents = [home / f"doc-{index}.docx" for index in range(6)]
    for path in documents:
        path.write_bytes(os.urandom(8192))  # new dense documents: each looks encrypted
    wait_until(lambda: all(_of(events, path) for path in documents), timeout=10, what="the burst")
    (usb / "payroll.xlsx").write_bytes(os.urandom(64 * 1024))  # dense too, inside the burst's window
    wait_until(lambda: _of(events, usb / "payroll.xlsx"), timeout=10, what="the copy's event")
    assert {e["vector"] for e in _of(events, usb / "payroll.xlsx")} == {"removable_media"}
    assert "mass_encryption" in {e["vector"] for path in documents for e in _of(events, path)}

"""The kernel's own file systems are never backed up nor watched (agent/mounts.py)."""
import os
import time

import agent.activity.watcher as activity_watcher
import agent.runtime as runtime
from agent.activity.watcher import ActivityWatcher, WatchSettings
from agent.mounts import parse_mounts, system_mounts, watch_plan
from agent.runtime import ChangeWatcher
from agent.scan import scan
from tests.support import assert_unnoticed_then_noticed, wait_until

MOUNTS = (
    "/dev/sda1 / ext4 rw,relatime 0 0\n"
    "proc /proc proc rw,nosuid,nodev,noexec 0 0\n"
    "sysfs /sys sysfs rw 0 0\n"
    "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n"
    "udev /dev devtmpfs rw 0 0\n"
    "tmpfs /run tmpfs rw 0 0\n"
    "/dev/sdb1 /media/usb\\040stick vfat rw 0 0\n"
    "proc /srv/chroot\\040one/proc proc rw 0 0\n"
    "proc / proc rw 0 0\n"
)


def test_the_mount_table_names_system_file_systems_only():
    assert parse_mounts(MOUNTS) == {"/proc", "/sys", "/sys/fs/cgroup", "/dev", "/srv/chroot one/proc"}


def test_an_automount_point_is_what_is_mounted_over_it():
    """x-systemd.automount and NFS homes: autofs at /home, the disk over it. /home is backed up."""
    table = "systemd-1 /home autofs rw 0 0\n/dev/sda3 /home ext4 rw 0 0\nauto /net autofs rw 0 0\n" \
            "/dev/sdc1 /srv/x ext4 rw 0 0\nproc /srv/x proc rw 0 0\n"
    assert parse_mounts(table) == {"/srv/x"}


def test_this_machines_proc_is_found():
    assert os.path.isdir("/proc/self")  # the tests run on Linux
    assert "/proc" in system_mounts()


def _tree(root):
    for directory in ("home/ann/docs", "proc/1/task", "var/lib/chroot/sys/kernel", "var/log"):
        (root / directory).mkdir(parents=True)
    (root / "home" / "ann" / "docs" / "a.txt").write_text("a")
    (root / "proc" / "1" / "status").write_text("State: R")
    (root / "var" / "lib" / "chroot" / "sys" / "kernel" / "x").write_text("x")
    (root / "var" / "log" / "syslog").write_text("log")
    return root


def test_a_scan_of_everything_leaves_system_mounts_out(tmp_path):
    root = _tree(tmp_path / "disk")
    skipped = frozenset({str(root / "proc"), str(root / "var" / "lib" / "chroot" / "sys")})
    result = scan([str(root)], {}, skip_mounts=skipped)
    assert sorted(os.path.relpath(e.path, root) for e in result.changed) == [
        "home/ann/docs/a.txt", "var/log/syslog"]
    assert (result.skipped, result.excluded) == (2, 0)  # not the policy's exclusions
    walked = {entry.path for entry in result.directories[str(root)]}
    assert str(root / "proc") not in walked and str(root / "var" / "lib" / "chroot") in walked
    # without them skipped, the same tree gives all four files (the test can fail)
    assert len(scan([str(root)], {}, skip_mounts=frozenset()).changed) == 4


def test_a_selected_system_mount_is_not_walked(tmp_path):
    root = _tree(tmp_path / "disk")
    result = scan([str(root / "proc")], {}, skip_mounts=frozenset({str(root / "proc")}))
    assert result.changed == [] and (result.skipped, result.excluded) == (1, 0)


def test_a_root_inside_a_system_mount_or_spelt_oddly_is_not_walked(tmp_path):
    root = _tree(tmp_path / "disk")
    proc = frozenset({str(root / "proc")})
    assert scan([str(root / "proc" / "1")], {}, skip_mounts=proc).changed == []
    assert scan([str(root / "proc" / "1") + "/"], {}, skip_mounts=proc).changed == []
    odd = "/" + str(root)  # "//tmp/...": normpath keeps a leading "//"
    assert sorted(os.path.relpath(e.path, root) for e in scan([odd], {}, skip_mounts=proc).changed) == [
        "home/ann/docs/a.txt", "var/lib/chroot/sys/kernel/x", "var/log/syslog"]
    assert watch_plan([str(root / "proc" / "1") + "/"], proc) == []


def test_a_file_that_is_a_mount_point_is_not_read(tmp_path):
    """nsfs mounts on files (/run/netns/NAME)."""
    root = _tree(tmp_path / "disk")
    (root / "var" / "netns").write_text("ns")
    result = scan([str(root / "var")], {}, skip_mounts=frozenset({str(root / "var" / "netns")}))
    assert [os.path.relpath(e.path, root) for e in result.changed] == ["var/lib/chroot/sys/kernel/x", "var/log/syslog"]


def test_files_under_a_system_mount_are_not_marked_deleted(tmp_path):
    from agent.state import CachedFile
    root = _tree(tmp_path / "disk")
    status = str(root / "proc" / "1" / "status")
    st = os.stat(status)
    cache = {status: CachedFile(status, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, "v", st.st_dev)}
    assert scan([str(root)], cache, skip_mounts=frozenset({str(root / "proc")})).deleted == []


def test_watches_reach_round_system_mounts(tmp_path):
    root = _tree(tmp_path / "disk")
    skipped = frozenset({str(root / "proc"), str(root / "var" / "lib" / "chroot" / "sys")})
    plan = [(os.path.relpath(path, root), recursive) for path, recursive in watch_plan([str(root)], skipped)]
    assert plan == [(".", False), ("home", True), ("var", False), ("var/lib", False),
                    ("var/lib/chroot", False), ("var/log", True)]
    # a root without a system mount below it is one recursive watch, as before
    assert watch_plan([str(root / "home")], skipped) == [(str(root / "home"), True)]
    assert watch_plan([str(root / "proc")], skipped) == []


def test_the_change_watcher_watches_a_directory_made_beside_a_system_mount(tmp_path, monkeypatch):
    """`/` is watched on its own: a directory made in it later is watched when it appears."""
    root = _tree(tmp_path / "disk")
    monkeypatch.setattr(runtime, "system_mounts", lambda: frozenset({str(root / "proc")}))
    watcher = ChangeWatcher(ignored=lambda path: False)
    try:
        assert watcher.watch([str(root)])
        (root / "data").mkdir()
        wait_until(lambda: watcher.dirty, timeout=5, what="the new directory to be noticed")
        time.sleep(0.5)
        watcher.clear()
        assert_unnoticed_then_noticed(
            watcher, lambda: (root / "proc" / "1" / "status").write_text("State: S"),  # not watched
            lambda: (root / "data" / "report.txt").write_text("new"), what="a file in the new directory to be noticed")
    finally:
        watcher.stop()


def test_the_activity_watcher_watches_a_directory_made_beside_a_system_mount(tmp_path, monkeypatch):
    root = _tree(tmp_path / "disk")
    monkeypatch.setattr(activity_watcher, "system_mounts", lambda: frozenset({str(root / "proc")}))
    events = []
    watcher = ActivityWatcher(WatchSettings(roots=[str(root)], removable_roots=[], cloud_roots=[]), events.append)
    try:
        assert watcher.start() == [str(root)]
        (root / "data").mkdir()
        time.sleep(0.5)
        (root / "proc" / "1" / "other").write_text("not watched")
        (root / "data" / "report.txt").write_text("new")
        wait_until(lambda: any(e["path"].endswith("report.txt") for e in events), timeout=8,
                   what="the new file's event")
        assert not any(e["path"].endswith("/other") for e in events)
    finally:
        watcher.stop()

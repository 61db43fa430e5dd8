"""The kernel's own file systems are never backed up nor watched (agent/mounts.py)."""
import os

from agent.mounts import parse_mounts, system_mounts, watch_plan
from agent.scan import scan

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
    assert result.excluded == 2
    walked = {entry.path for entry in result.directories[str(root)]}
    assert str(root / "proc") not in walked and str(root / "var" / "lib" / "chroot") in walked
    # without them skipped, the same tree gives all four files (the test can fail)
    assert len(scan([str(root)], {}, skip_mounts=frozenset()).changed) == 4


def test_a_selected_system_mount_is_not_walked(tmp_path):
    root = _tree(tmp_path / "disk")
    result = scan([str(root / "proc")], {}, skip_mounts=frozenset({str(root / "proc")}))
    assert result.changed == [] and result.excluded == 1


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

"""The kernel's own file systems (/proc, /sys, /dev, ...): never backed up, never watched.

A selection of `/` (a whole-disk backup) would otherwise walk /proc — one directory per process,
"files" such as /proc/kcore that claim 128 TiB — and /sys, and open a recursive inotify watch on
every directory of them. CrashPlan leaves these out whatever the selection; so does Haven, by
the mount table (where they are mounted is not fixed), not by name.
"""
import os
import re

from formats.reassembly import path_within

# Kernel pseudo file systems: what they hold is state, not files (tmpfs is not here: it can hold
# a user's files, and the policy's exclusions decide about /tmp and /run).
# Not autofs: an automount point (/home by x-systemd.automount, NFS homes) is where the real file
# system is mounted over it.
SYSTEM_FS_TYPES = frozenset({
    "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts", "devtmpfs",
    "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs", "proc", "pstore", "rpc_pipefs", "securityfs",
    "selinuxfs", "sysfs", "tracefs",
})
MOUNTS_FILE = "/proc/self/mounts"
_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """A mount point as /proc/self/mounts writes it: space, tab, newline and backslash as \\ooo."""
    return _OCTAL.sub(lambda match: chr(int(match.group(1), 8)), field)


def normalized(path: str) -> str:
    """An absolute path in one spelling (normpath keeps a leading "//")."""
    return "/" + os.path.normpath(path).lstrip("/")


def parse_mounts(text: str) -> frozenset[str]:
    """The mount points of system file systems in a mount table's text (fstab layout). A point
    mounted over is what its last line says (an autofs point with a disk mounted on it is the disk)."""
    types: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            types[normalized(_unescape(fields[1]))] = fields[2]
    types.pop("/", None)  # whatever claims to be mounted at / is the disk being backed up
    return frozenset(point for point, fs_type in types.items() if fs_type in SYSTEM_FS_TYPES)


def system_mounts() -> frozenset[str]:
    """Where system file systems are mounted on this machine now; none where there is no
    /proc/self/mounts (not Linux) or it cannot be read."""
    try:
        with open(MOUNTS_FILE, encoding="utf-8", errors="surrogateescape") as mounts:
            return parse_mounts(mounts.read())
    except OSError:
        return frozenset()


def within_skipped(path: str, skipped: frozenset[str]) -> bool:
    """Whether `path` (normalized) is a skipped mount point or lies under one."""
    return any(path_within(path, point) for point in skipped)


def _holds_skipped(directory: str, skipped: frozenset[str]) -> bool:
    return any(point != directory and path_within(point, directory) for point in skipped)


def watch_plan(roots: list[str], skipped: frozenset[str]) -> list[tuple[str, bool]]:
    """(directory, recursive) watches covering the directories `roots`, minus the mount points
    in `skipped` and everything under them. A root holding a skipped mount somewhere below is
    watched on its own (not recursively) and its subdirectories are planned the same way, so only
    the directories on the path down to a system mount lose their recursive watch (for `/`:
    `/` itself, and /proc, /sys, /dev are not watched at all); a directory made later in one of
    those is watched when it appears (PlannedWatches.appeared)."""
    plan: list[tuple[str, bool]] = []
    stack = [normalized(root) for root in reversed(roots)]
    while stack:
        directory = stack.pop()
        if within_skipped(directory, skipped):
            continue
        if not _holds_skipped(directory, skipped):
            plan.append((directory, True))
            continue
        plan.append((directory, False))
        try:
            with os.scandir(directory) as entries:
                children = sorted(entry.path for entry in entries if entry.is_dir(follow_symlinks=False))
        except OSError:
            continue
        stack.extend(reversed(children))
    return plan


class PlannedWatches:
    """watch_plan's watches on one watchdog observer, for a handler (the change watcher, the
    activity watcher), kept whole as directories appear: a directory made in one watched on its
    own gets its watches too (recursive watches add theirs themselves). `add` runs before the
    observer starts, `appeared` on its dispatching thread: one thread at a time."""

    def __init__(self, observer, handler, skipped: frozenset[str]):
        self.observer, self.handler, self.skipped = observer, handler, skipped
        self._shallow: set[str] = set()  # directories watched on their own

    def add(self, root: str) -> bool:
        """Watch the directory `root` as planned; whether every watch was opened. A directory
        that cannot be watched (gone since it was listed, not readable) does not stop its
        siblings from being watched."""
        complete = True
        for directory, recursive in watch_plan([root], self.skipped):
            try:
                self.observer.schedule(self.handler, directory, recursive=recursive)
            except OSError:
                complete = False
                continue
            if not recursive:
                self._shallow.add(directory)
        return complete

    def appeared(self, directory: str) -> bool:
        """A directory was made or moved in: watch it if its parent is watched on its own.
        False if it needed watches and not all of them could be opened."""
        if os.path.dirname(directory) not in self._shallow:
            return True
        return self.add(directory)

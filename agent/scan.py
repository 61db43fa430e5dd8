"""Scan: walk the backup roots and compare each file with the local cache (size, mtime, ctime,
inode) to find what changed or disappeared, honouring the policy's exclusions; record every
directory walked for the run's directory listings (docs/formats.md §9). Reads no file content.
"""
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from agent.mounts import normalized, system_mounts, within_skipped
from agent.policy import Exclusions
from agent.state import CachedFile
from formats.directories import DirectoryEntry
from formats.reassembly import path_within


class FileEntry(NamedTuple):
    """A file as the scan saw it (a tuple: one is built per changed file)."""

    path: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    mode: int
    dev: int


@dataclass
class ScanResult:
    changed: list[FileEntry] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    files_scanned: int = 0
    bytes_scanned: int = 0
    skipped: int = 0
    excluded: int = 0
    errors: list[str] = field(default_factory=list)
    # directory root -> every directory walked under it, the root included (docs/formats.md §9)
    directories: dict[str, list[DirectoryEntry]] = field(default_factory=dict)


def scan(roots: Iterable[str], cache: dict[str, CachedFile], exclude: Exclusions | None = None,
         skip_mounts: frozenset[str] | None = None) -> ScanResult:
    """Walk the roots; report changed files and files deleted under completely listed directories.

    Symlinks and special files are skipped (counted in `skipped`). A directory that could not be
    listed completely (permissions, I/O errors) marks nothing beneath it deleted, and a missing
    root (an unmounted volume) marks nothing deleted at all.

    `exclude` (agent/policy.py) names what the policy leaves out: an excluded file is not read,
    an excluded directory not walked (counted in `excluded`), and neither is marked deleted —
    a newly excluded file stops being backed up but keeps its versions, as in CrashPlan.

    The kernel's own file systems (/proc, /sys, /dev: agent/mounts.py; `skip_mounts`, where they
    are mounted, read from the mount table if None) are never walked, whatever the selection,
    and are counted in `skipped`: `excluded` is what the policy left out.
    """
    exclude = exclude or None  # an empty policy: nothing asked per file
    skip = system_mounts() if skip_mounts is None else skip_mounts
    result = ScanResult()
    seen: set[str] = set()
    listed: dict[str, bool] = {}  # directory -> listed completely
    device_of: dict[str, int] = {}  # directory -> the file system it is on
    absolute_roots = [normalized(os.path.abspath(root)) for root in roots]

    def consider(path: str, st: os.stat_result) -> None:
        seen.add(path)
        result.files_scanned += 1
        result.bytes_scanned += st.st_size
        cached = cache.get(path)
        # ctime too: a chmod or a content change that restored the old mtime still counts.
        if cached and (cached.size, cached.mtime_ns, cached.ctime_ns, cached.inode, cached.dev) == (
                st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev):
            return
        result.changed.append(FileEntry(path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
                                        stat.S_IMODE(st.st_mode), st.st_dev))

    for root in absolute_roots:
        if within_skipped(root, skip):
            result.skipped += 1
            listed[root] = False  # and nothing it held is marked deleted
            continue
        try:
            st = os.lstat(root)
        except OSError as error:
            result.errors.append(f"{root}: {error.strerror}; nothing under it is marked deleted")
            continue
        if stat.S_ISREG(st.st_mode):
            consider(root, st)
            continue
        if not stat.S_ISDIR(st.st_mode):
            result.skipped += 1
            continue
        stack = [root]
        device_of[root] = st.st_dev
        walked = result.directories.setdefault(root, [DirectoryEntry(root, st.st_mode, st.st_mtime_ns)])
        while stack:
            directory = stack.pop()
            complete = True
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        try:
                            if entry.path in skip:  # a system mount (nsfs mounts on files too)
                                result.skipped += 1
                                listed[entry.path] = False  # nothing under it is marked deleted
                            elif entry.is_symlink():
                                result.skipped += 1
                            elif exclude is not None and entry.is_dir(follow_symlinks=False) and exclude.matches(entry.path):
                                result.excluded += 1
                            elif entry.is_dir(follow_symlinks=False):
                                st_dir = entry.stat(follow_symlinks=False)
                                stack.append(entry.path)
                                device_of[entry.path] = st_dir.st_dev
                                walked.append(DirectoryEntry(entry.path, st_dir.st_mode, st_dir.st_mtime_ns))
                            elif entry.is_file(follow_symlinks=False):
                                st_entry = entry.stat(follow_symlinks=False)
                                if exclude is not None and exclude.matches(entry.path, size=st_entry.st_size):
                                    result.excluded += 1
                                else:
                                    consider(entry.path, st_entry)
                            else:
                                result.skipped += 1
                        except OSError as error:
                            complete = False
                            result.errors.append(f"{entry.path}: {error.strerror}")
            except OSError as error:
                complete = False
                result.errors.append(f"{directory}: {error.strerror}")
            listed[directory] = complete

    for path in cache:
        root = next((root for root in absolute_roots if path_within(path, root)), None)
        if path in seen or root is None:
            continue
        if exclude is not None and exclude.covers(path, root, size=cache[path].size):
            continue  # excluded now: no longer backed up, but its versions are kept
        ancestor = os.path.dirname(path)
        while ancestor not in listed and ancestor != os.path.dirname(ancestor):
            ancestor = os.path.dirname(ancestor)
        # A file from another file system than the directory holds now: that volume is not
        # mounted here any more (an empty mount point lists "completely"). Not a deletion.
        if listed.get(ancestor) and cache[path].dev == device_of.get(ancestor):
            result.deleted.append(path)
    result.changed.sort(key=lambda entry: entry.path)
    return result

"""Before a restore writes anything: where each file and folder goes, what is already there, and
what to do about it (overwrite, skip, or restore beside it under a new name).

A conflict is a name in the destination that is already taken where the restore needs it: an
existing file (or symlink, or anything else) where a file goes, or anything but a real directory
where a folder goes — a symlinked directory is a conflict, never a way through. A regular file
with the backed-up size and mtime is taken as already restored (left alone, counted unchanged).

--overwrite replaces files and symlinks where files go, and removes a symlink or file where a
folder the backup recorded goes; a symlink above what was backed up (say `/home -> /data/home`
when restoring to the original location) is never removed: those items are reported and left.
"""
import functools
import os
import stat
import sys
from dataclasses import dataclass, field

from agent.restore_dest import Destination, Parts
from formats.directories import DirectoryEntry
from formats.manifests import Manifest

POLICIES = ("refuse", "overwrite", "skip", "rename")


@dataclass(frozen=True)
class Conflict:
    path: str  # in the destination
    found: str  # "file", "symlink", "directory" or "other"
    backed_up: str  # "file" or "folder"

    def __str__(self) -> str:
        return f"{self.path} (exists as a {self.found}; the backup has a {self.backed_up})"


@dataclass(slots=True)
class FileItem:
    manifest: Manifest
    parts: Parts
    replace: bool = False  # an existing file or symlink there is replaced (--overwrite)


@dataclass(slots=True)
class Plan:
    files: list[FileItem] = field(default_factory=list)
    # every directory the files and folders need, top down: parts -> (exists already, recorded entry)
    directories: dict[Parts, tuple[bool, DirectoryEntry | None]] = field(default_factory=dict)
    removals: list[Parts] = field(default_factory=list)  # non-directories where a folder goes (--overwrite)
    conflicts: list[Conflict] = field(default_factory=list)
    skipped: int = 0
    unchanged: int = 0  # already there with the backed-up size and mtime
    renamed: int = 0
    errors: list[str] = field(default_factory=list)


def parts_of(path: str) -> Parts:
    """A path's components. The folders' part is made once per folder and shared by the
    thousands of files in it (a restore keeps every file's parts), its names interned."""
    if path == "/":
        return ()
    folder, _, name = path.rpartition("/")
    return (*_folder_parts(folder), name)


@functools.lru_cache(maxsize=16384)
def _folder_parts(folder: str) -> Parts:
    relative = folder.lstrip("/")
    return tuple(map(sys.intern, relative.split("/"))) if relative else ()


def _kind(st: os.stat_result | None) -> str | None:
    if st is None:
        return None
    if stat.S_ISDIR(st.st_mode):
        return "directory"
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    return "file" if stat.S_ISREG(st.st_mode) else "other"


def renamed(name: str, *, is_file: bool, date: str, attempt: int) -> str:
    """`report.txt` -> `report (restored 2026-12-01).txt` (then `... 2026-12-01 2).txt`, ...)."""
    tag = f" (restored {date}{'' if attempt == 1 else f' {attempt}'})"
    stem, dot, suffix = name.rpartition(".")
    if is_file and dot and stem and len(suffix) <= 10:
        return f"{stem}{tag}.{suffix}"
    return name + tag


def restore_plan(dest: Destination, files: list[Manifest], folders: list[DirectoryEntry], *, existing: str,
                 date: str) -> Plan:
    """Look (never write) at the destination and lay out the restore under the `existing` policy.
    Under "refuse" the plan's `conflicts` are what the caller must ask about."""
    if existing not in POLICIES:
        raise ValueError(f"existing must be one of {POLICIES}")
    seen: dict[Parts, str | None] = {}
    stats: dict[Parts, os.stat_result] = {}

    def kind(parts: Parts) -> str | None:
        if parts not in seen:
            st = dest.lstat(parts)
            seen[parts] = _kind(st)
            if st is not None:
                stats[parts] = st
        return seen[parts]

    def unchanged(parts: Parts, manifest: Manifest) -> bool:
        st = stats[parts]
        return stat.S_ISREG(st.st_mode) and (st.st_size, st.st_mtime_ns) == (manifest.size, manifest.mtime_ns)

    items: list[tuple[Parts, Manifest | DirectoryEntry]] = [(parts_of(m.path), m) for m in files]
    items += [(parts_of(d.path), d) for d in folders if parts_of(d.path)]
    recorded = {parts_of(d.path) for d in folders}
    conflicts: dict[Parts, Conflict] = {}
    plan = Plan()
    placed: list[tuple[Parts, Manifest | DirectoryEntry, Parts | None]] = []
    for parts, item in items:
        is_file = isinstance(item, Manifest)
        at: Parts | None = None
        for depth in range(1, len(parts) + 1):
            prefix = parts[:depth]
            found = kind(prefix)
            if found is None:
                break
            if found == "directory" and (depth < len(parts) or not is_file):
                continue
            if is_file and depth == len(parts) and unchanged(prefix, item):
                at = ()  # up to date: nothing to do
                break
            at = prefix
            if prefix not in conflicts:
                conflicts[prefix] = Conflict(dest.display(prefix), found,
                                             "file" if is_file and depth == len(parts) else "folder")
            break
        placed.append((parts, item, at))
    plan.unchanged = sum(1 for _, _, at in placed if at == ())
    placed = [entry for entry in placed if entry[2] != ()]
    plan.conflicts = list(conflicts.values())
    if existing == "refuse" and plan.conflicts:
        return plan

    new_names: dict[Parts, Parts] = {}
    taken: set[Parts] = set()
    for at, conflict in conflicts.items():
        if existing == "overwrite" and conflict.found != "directory":
            if conflict.backed_up == "folder" and at in recorded:
                plan.removals.append(at)
        elif existing == "rename":
            attempt = 1
            while True:
                candidate = at[:-1] + (renamed(at[-1], is_file=conflict.backed_up == "file", date=date,
                                               attempt=attempt),)
                if candidate not in taken and kind(candidate) is None:
                    break
                attempt += 1
            taken.add(candidate)
            new_names[at] = candidate
    removed = set(plan.removals)
    plan.renamed = len(new_names)

    finals: list[tuple[Parts, Manifest | DirectoryEntry]] = []
    for parts, item, at in placed:
        is_file = isinstance(item, Manifest)
        if at is not None:
            conflict = conflicts[at]
            if existing == "skip":
                plan.skipped += is_file
                continue
            if existing == "overwrite" and conflict.found == "directory":
                plan.errors.append(f"{conflict.path}: a directory is there; not replaced by a file")
                continue
            if existing == "overwrite" and conflict.backed_up == "folder" and at not in recorded:
                plan.errors.append(f"{conflict.path} is a {conflict.found}, above what was backed up; not removed: "
                                   f"{'/'.join(parts)} not restored (restore elsewhere with --to)")
                continue
            if existing == "rename":
                parts = new_names[at] + parts[len(at):]
        finals.append((parts, item))
        if is_file:
            plan.files.append(FileItem(item, parts, replace=existing == "overwrite" and at == parts))

    def exists(parts: Parts) -> bool:
        return all(seen.get(parts[:d]) == "directory" and parts[:d] not in removed for d in range(1, len(parts) + 1))

    needed: dict[Parts, DirectoryEntry | None] = {}
    for parts, item in finals:
        chain = parts if isinstance(item, DirectoryEntry) else parts[:-1]
        if chain not in needed:  # else its parents are in already (most files share a folder)
            for depth in range(1, len(chain) + 1):
                needed.setdefault(chain[:depth], None)
        if isinstance(item, DirectoryEntry):
            needed[parts] = item
    plan.directories = {parts: (exists(parts), needed[parts]) for parts in sorted(needed, key=len)}
    return plan

"""Restore any point in time: fetch manifests, then blocks in batches (several at once), verify
every block and place it in its files (formats/reassembly.py, shared with the server's web
restore).

What users expect of it (README, "Restoring"): nothing is written until the plan is made and every
conflict with what is already in the destination is settled (agent/restore_plan.py: refuse,
overwrite, skip, or rename); directories are created private (0700) and files as private (0600)
temporaries beside their final name, each file gets its mode and mtime and is moved into place
only once all of its bytes are written, and the directories get their recorded mode and mtime
(docs/formats.md §9) deepest first at the end. Setuid/setgid bits only on request. Every
operation in the destination goes through descriptors opened with O_NOFOLLOW
(agent/restore_dest.py): a symlink there is never followed.
"""
import base64
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from agent.client import ApiClient
from agent.restore_dest import PREALLOCATE, Destination, DestinationError, Parts, process_umask, restored_bits
from agent.restore_fetch import FetchFailed, Target
from agent.restore_plan import Conflict, restore_plan
from agent.restore_workers import fetch_and_write
from formats.directories import DirectoryEntry
from formats.errors import IntegrityError
from formats.keys import KeySet
from formats.manifests import Manifest, manifest_decrypt
from formats.reassembly import (
    FileAssembly,
    ReassemblyError,
    path_within,
    restore_selection,
)


class RestoreError(Exception):
    """The restore could not be completed; files already moved into place are complete."""


class NothingToRestore(RestoreError):
    """The point in time precedes the first backup, or a path asked for was never backed up."""


class RestoreConflicts(RestoreError):
    """Names the restore needs are taken in the destination, and no policy was given."""

    def __init__(self, conflicts: list[Conflict]):
        shown = "\n  ".join(str(c) for c in conflicts[:20])
        more = f"\n  ... and {len(conflicts) - 20} more" if len(conflicts) > 20 else ""
        super().__init__(f"{len(conflicts)} item(s) already exist in the destination; nothing was written. "
                         f"Choose --overwrite, --skip-existing or --rename:\n  {shown}{more}")
        self.conflicts = conflicts


@dataclass
class RestoreSummary:
    files: int = 0
    bytes: int = 0
    blocks: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    directories: int = 0  # given their recorded (or default) mode
    skipped: int = 0  # files left alone because something was there (--skip-existing)
    unchanged: int = 0  # already in the destination with the backed-up size and mtime
    renamed: int = 0  # names restored beside what was there (--rename)


def manifests_at(client: ApiClient, keys: KeySet, archive_id: str, at: str | None) -> list[Manifest]:
    """Decrypt the newest manifest of every path at `at` (the server cannot read them).

    Pages come in commit order: should a path come twice (a backup committed it during the
    listing, and `at`, from this machine's clock, is ahead of the server's), the later is newer."""
    archive_uuid = uuid.UUID(archive_id)
    manifests: dict[str, Manifest] = {}
    for version in client.versions_at(archive_id, at):
        try:
            manifests[version["path_id"]] = manifest_decrypt(
                keys, base64.b64decode(version["manifest"]), archive_id=archive_uuid, path_id=version["path_id"],
                version_id=uuid.UUID(version["version_id"]))
        except IntegrityError as error:
            raise RestoreError(f"version {version['version_id']} failed verification: {error}") from None
    return list(manifests.values())


def selected(path: str, prefixes: list[str]) -> bool:
    """Is the path one of the prefixes, or under one? (No prefixes: everything.)"""
    return not prefixes or any(path_within(path, prefix) for prefix in prefixes)


def _relative(path: str) -> str:
    """The path below the destination; RestoreError for one that would leave it. (String work,
    not pathlib: a restore checks every file's path before writing anything.)"""
    relative = path.lstrip("/")
    if ".." in relative.split("/"):
        raise RestoreError(f"refusing a path that leaves the destination: {path!r}")
    return relative


def _destination(dest: Path, path: str) -> Path:
    return dest / _relative(path)


def restore_listings(manifests: list[Manifest], prefixes: list[str]) -> list[DirectoryEntry]:
    """The recorded directories within the selection (a directory under two roots: the deeper
    root's listing wins)."""
    entries: dict[str, DirectoryEntry] = {}
    for listing in sorted((m for m in manifests if m.is_listing), key=lambda m: len(m.path)):
        for entry in listing.directories:
            if selected(entry.path, prefixes):
                entries[entry.path] = entry
    return [entries[path] for path in sorted(entries)]


def restore_contents(manifests: list[Manifest], prefixes: list[str], at: str | None
                     ) -> tuple[list[Manifest], list[DirectoryEntry]]:
    """The files and recorded folders to restore; NothingToRestore when there are none, or when a
    path asked for matches nothing (a typo must not look like a successful restore)."""
    try:
        files = restore_selection(manifests, prefixes)
    except ReassemblyError as error:
        raise RestoreError(str(error)) from None
    folders = restore_listings(manifests, prefixes)
    when = f"at {at}" if at else "now"
    if not any(not m.deleted for m in manifests):
        raise NothingToRestore(f"nothing to restore: the archive holds no files or folders {when}"
                               + (" (is that before its first backup?)" if at else " (no backup has completed yet?)"))
    missing = [p for p in prefixes if not any(path_within(m.path, p) for m in files)
               and not any(path_within(d.path, p) for d in folders)]
    if missing:
        raise NothingToRestore(f"nothing to restore: not in the backup {when}: {', '.join(missing)}")
    return files, folders


def restore_conflicts(*, dest: Path, manifests: list[Manifest], paths: list[str] | None = None,
                      at: str | None = None) -> list[Conflict]:
    """What a restore into `dest` would find already there; looks only, writes nothing."""
    prefixes = [os.path.abspath(p) for p in (paths or [])]
    files, folders = restore_contents(manifests, prefixes, at)
    if not dest.is_dir():
        return []
    destination = Destination(dest)
    try:
        return restore_plan(destination, files, folders, existing="refuse", date="").conflicts
    finally:
        destination.close()


def restore(*, client: ApiClient, keys: KeySet, archive_id: str, dest: Path, at: str | None = None,
            paths: list[str] | None = None, on_progress: Callable[[int, int], None] | None = None,
            manifests: list[Manifest] | None = None, existing: str = "refuse",
            restore_setuid: bool = False, processes: bool = False) -> RestoreSummary:
    """Restore into `dest` (files land at dest/<absolute path>). `existing` says what to do where
    a name is taken: "refuse" (RestoreConflicts before anything is written), "overwrite", "skip"
    or "rename" (`name (restored YYYY-MM-DD)`). `processes`: the caller lets a large restore fork
    worker processes (agent/restore_workers.py); the agent's service, with threads of its own, does not."""
    started = time.monotonic()
    progress = on_progress or (lambda files, nbytes: None)
    prefixes = [os.path.abspath(p) for p in (paths or [])]
    if manifests is None:
        manifests = manifests_at(client, keys, archive_id, at)
    files, folders = restore_contents(manifests, prefixes, at)
    for manifest in files:
        _relative(manifest.path)
    try:
        assemblies = {manifest.path: FileAssembly(manifest) for manifest in files}
    except ReassemblyError as error:
        raise RestoreError(str(error)) from None
    umask = process_umask()
    destination = Destination(dest)
    try:
        return _write(client, keys, archive_id, destination, assemblies, folders, existing=existing,
                      setuid=restore_setuid, umask=umask, progress=progress, started=started,
                      processes=processes)
    except (DestinationError, OSError, FetchFailed) as error:
        raise RestoreError(str(error)) from None
    except ReassemblyError as error:  # a file's blocks did not add up to its manifest's size
        raise RestoreError(f"the server sent data that failed verification ({error})") from None
    finally:
        destination.close()


def _write(client: ApiClient, keys: KeySet, archive_id: str, destination: Destination,
           assemblies: dict[str, FileAssembly], folders: list[DirectoryEntry], *, existing: str, setuid: bool,
           umask: int, progress: Callable[[int, int], None], started: float, processes: bool) -> RestoreSummary:
    plan = restore_plan(destination, [a.manifest for a in assemblies.values()], folders, existing=existing,
                        date=date.today().isoformat())
    if plan.conflicts and existing == "refuse":
        raise RestoreConflicts(plan.conflicts)
    summary = RestoreSummary(skipped=plan.skipped, unchanged=plan.unchanged, renamed=plan.renamed,
                             errors=list(plan.errors))
    for parts in plan.removals:
        destination.remove(parts)
    created: set[Parts] = set()
    for parts, (exists, _) in plan.directories.items():
        if not exists and destination.make_directory(parts):
            created.add(parts)

    # Most files of a tree are one small block: they need no temporary before their block is here.
    whole = [len(assemblies[item.manifest.path].extents) <= 1 and item.manifest.size <= PREALLOCATE
             for item in plan.files]
    identities = iter(destination.temporaries_create(
        [(item.parts, item.manifest.size) for item, at_once in zip(plan.files, whole) if not at_once]))
    targets = [Target(assemblies[item.manifest.path], item.parts, None if at_once else next(identities),
                      replace=item.replace) for item, at_once in zip(plan.files, whole)]
    try:
        tally = fetch_and_write(client, keys, archive_id, destination, targets, progress=progress, setuid=setuid,
                                existing=existing, processes_allowed=processes)
    except BaseException:
        for target in targets:
            if not target.assembly.complete:
                destination.temporary_discard(target.parts)
        raise
    summary.files, summary.bytes, summary.blocks = tally.files, tally.bytes, tally.blocks
    summary.skipped += tally.skipped
    summary.errors.extend(tally.errors)
    leftover = [t for t in targets if not t.assembly.complete]
    if leftover:
        raise RestoreError(f"{len(leftover)} file(s) were not completed")

    # Deepest first: setting a directory's mtime must come after everything written inside it.
    default_bits = 0o777 & ~umask
    for parts, (_, entry) in reversed(plan.directories.items()):
        if parts in created:
            bits = default_bits if entry is None else restored_bits(entry.mode, is_dir=True, setuid=setuid)
        elif entry is not None and existing == "overwrite":
            bits = restored_bits(entry.mode, is_dir=True, setuid=setuid)
        else:
            continue
        destination.directory_finish(parts, bits=bits, mtime_ns=None if entry is None else entry.mtime_ns)
        summary.directories += 1
    summary.seconds = time.monotonic() - started
    return summary

"""Restore any point in time: fetch manifests, then blocks in batches (several at once), verify
every block and place it in its files (formats/reassembly.py, shared with the server's web
restore), write files under a temporary name and move each into place with its mode and mtime
once all of its bytes are written.
"""
import base64
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from agent.client import ApiClient
from formats.errors import IntegrityError
from formats.keys import KeySet
from formats.manifests import Manifest, manifest_decrypt
from formats.reassembly import (
    FETCH_BYTES,
    FileAssembly,
    ReassemblyError,
    blocks_open,
    fetch_batches,
    path_within,
    restore_selection,
)

FETCH_WORKERS = 3


class RestoreError(Exception):
    """The restore could not be completed; files already moved into place are complete."""


@dataclass
class RestoreSummary:
    files: int = 0
    bytes: int = 0
    blocks: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass
class _Target:
    assembly: FileAssembly
    final: Path
    temporary: Path
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def manifest(self) -> Manifest:
        return self.assembly.manifest


def manifests_at(client: ApiClient, keys: KeySet, archive_id: str, at: str | None) -> list[Manifest]:
    """Decrypt the newest manifest of every path at `at` (the server cannot read them)."""
    archive_uuid = uuid.UUID(archive_id)
    manifests = []
    for version in client.versions_at(archive_id, at):
        try:
            manifests.append(manifest_decrypt(keys, base64.b64decode(version["manifest"]), archive_id=archive_uuid,
                                              path_id=version["path_id"], version_id=uuid.UUID(version["version_id"])))
        except IntegrityError as error:
            raise RestoreError(f"version {version['version_id']} failed verification: {error}") from None
    return manifests


def selected(path: str, prefixes: list[str]) -> bool:
    """Is the path one of the prefixes, or under one? (No prefixes: everything.)"""
    return not prefixes or any(path_within(path, prefix) for prefix in prefixes)


def _destination(dest: Path, path: str) -> Path:
    relative = path.lstrip("/")
    final = (dest / relative)
    if ".." in Path(relative).parts:
        raise RestoreError(f"refusing a path that leaves the destination: {path!r}")
    return final


def restore(*, client: ApiClient, keys: KeySet, archive_id: str, dest: Path, at: str | None = None,
            paths: list[str] | None = None, on_progress: Callable[[int, int], None] | None = None,
            manifests: list[Manifest] | None = None) -> RestoreSummary:
    started = time.monotonic()
    progress = on_progress or (lambda files, nbytes: None)
    prefixes = [os.path.abspath(p) for p in (paths or [])]
    if manifests is None:
        manifests = manifests_at(client, keys, archive_id, at)
    try:
        manifests = restore_selection(manifests, prefixes)
        assemblies = [FileAssembly(manifest) for manifest in manifests]
    except ReassemblyError as error:
        raise RestoreError(str(error)) from None
    summary = RestoreSummary()
    dest.mkdir(parents=True, exist_ok=True)

    targets: list[_Target] = []
    # block id -> [(target, offset in file)], and the plaintext size of each block
    places: dict[bytes, list[tuple[_Target, int]]] = defaultdict(list)
    sizes: dict[bytes, int] = {}
    for assembly in assemblies:
        final = _destination(dest, assembly.manifest.path)
        final.parent.mkdir(parents=True, exist_ok=True)
        temporary = final.with_name(f".{final.name}.haven-restore")
        with open(temporary, "wb") as handle:
            handle.truncate(assembly.manifest.size)
        target = _Target(assembly, final, temporary)
        targets.append(target)
        for extent in assembly.extents:
            places[extent.block_id].append((target, extent.offset))
            sizes[extent.block_id] = extent.size

    summary_lock = threading.Lock()

    def finish(target: _Target) -> None:
        manifest = target.manifest
        os.chmod(target.temporary, manifest.mode & 0o7777)
        os.utime(target.temporary, ns=(manifest.mtime_ns, manifest.mtime_ns))
        os.replace(target.temporary, target.final)
        with summary_lock:
            summary.files += 1
            summary.bytes += manifest.size
        progress(1, 0)

    for target in targets:
        if target.assembly.complete:
            finish(target)

    archive_uuid = uuid.UUID(archive_id)

    def fetch(block_ids: list[bytes]) -> None:
        data = client.blocks_fetch(archive_id, block_ids)
        written = 0
        try:
            # GCM and the keyed block id authenticate each payload; the frame checksum (for
            # key-less scrubbing on the server) would only hash it a second time.
            for block_id, plaintext in blocks_open(keys, block_ids, data, sizes=[sizes[b] for b in block_ids],
                                                   archive_id=archive_uuid, verify_checksums=False):
                for target, offset in places[block_id]:
                    fd = os.open(target.temporary, os.O_WRONLY)
                    try:
                        os.pwrite(fd, plaintext, offset)
                    finally:
                        os.close(fd)
                    with target.lock:
                        done = target.assembly.block_written(len(plaintext))
                    if done:
                        finish(target)
                written += len(plaintext)
        except ReassemblyError as error:
            raise RestoreError(f"the server sent data that failed verification ({error})") from None
        with summary_lock:
            summary.blocks += len(block_ids)
        progress(0, written)

    try:
        with ThreadPoolExecutor(max_workers=FETCH_WORKERS, thread_name_prefix="haven-restore") as pool:
            futures = [pool.submit(fetch, batch) for batch in fetch_batches(sizes, max_bytes=FETCH_BYTES)]
            for future in futures:
                if future.exception() is not None:
                    for other in futures:
                        other.cancel()
                    raise future.exception()
    except BaseException:
        for target in targets:
            if not target.assembly.complete:
                target.temporary.unlink(missing_ok=True)
        raise
    leftover = [t for t in targets if not t.assembly.complete]
    if leftover:
        raise RestoreError(f"{len(leftover)} file(s) were not completed")
    summary.seconds = time.monotonic() - started
    return summary

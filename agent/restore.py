"""Restore any point in time: fetch manifests, then blocks in batches (several at once), verify
every block (frame checksum, GCM tag, keyed id), write files under a temporary name and move
each into place with its mode and mtime once all of its bytes are written.
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

from agent.backup import path_within
from agent.client import ApiClient
from formats.blocks import block_decrypt
from formats.errors import FormatError, IntegrityError
from formats.frames import FRAME_BLOCK, frames_decode
from formats.keys import KeySet
from formats.manifests import Manifest, manifest_decrypt

FETCH_BYTES = 16 * 1024 * 1024
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
    manifest: Manifest
    final: Path
    temporary: Path
    remaining: int  # blocks still to write
    lock: threading.Lock = field(default_factory=threading.Lock)


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
    manifests = sorted((m for m in manifests if not m.deleted and selected(m.path, prefixes)), key=lambda m: m.path)
    duplicated = {a.path for a, b in zip(manifests, manifests[1:]) if a.path == b.path}
    if duplicated:  # two versions of one path would share a destination and its temporary file
        raise RestoreError(f"the server listed {len(duplicated)} path(s) twice, e.g. {sorted(duplicated)[0]!r}")
    summary = RestoreSummary()
    dest.mkdir(parents=True, exist_ok=True)

    targets: list[_Target] = []
    # block id -> [(target, offset in file)], and the plaintext size of each block
    places: dict[bytes, list[tuple[_Target, int]]] = defaultdict(list)
    sizes: dict[bytes, int] = {}
    for manifest in manifests:
        final = _destination(dest, manifest.path)
        final.parent.mkdir(parents=True, exist_ok=True)
        temporary = final.with_name(f".{final.name}.haven-restore")
        with open(temporary, "wb") as handle:
            handle.truncate(manifest.size)
        target = _Target(manifest, final, temporary, remaining=len(manifest.block_ids))
        targets.append(target)
        offset = 0
        for block_id, size in zip(manifest.block_ids, manifest.block_sizes):
            places[block_id].append((target, offset))
            sizes[block_id] = size
            offset += size

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
        if target.remaining == 0:
            finish(target)

    batches, batch, batch_bytes = [], [], 0
    for block_id in places:
        batch.append(block_id)
        batch_bytes += sizes[block_id]
        if batch_bytes >= FETCH_BYTES or len(batch) >= 5000:
            batches.append(batch)
            batch, batch_bytes = [], 0
    if batch:
        batches.append(batch)

    def fetch(block_ids: list[bytes]) -> None:
        data = client.blocks_fetch(archive_id, block_ids)
        try:
            # GCM and the keyed block id authenticate each payload below; the frame checksum
            # (for key-less scrubbing on the server) would only hash it a second time.
            frames = [frame for _, frame in frames_decode(data, verify_checksums=False)]
        except FormatError as error:
            raise RestoreError(f"the server sent damaged data: {error}") from None
        if len(frames) != len(block_ids):
            raise RestoreError(f"asked for {len(block_ids)} blocks, received {len(frames)}")
        written = 0
        for block_id, frame in zip(block_ids, frames):
            if frame.kind != FRAME_BLOCK or bytes(frame.block_id) != block_id:
                raise RestoreError(f"the server answered block {bytes(frame.block_id).hex()} for {block_id.hex()}")
            try:
                plaintext = block_decrypt(keys, block_id, frame.payload)
            except IntegrityError as error:
                raise RestoreError(f"block {block_id.hex()} failed verification: {error}") from None
            for target, offset in places[block_id]:
                fd = os.open(target.temporary, os.O_WRONLY)
                try:
                    os.pwrite(fd, plaintext, offset)
                finally:
                    os.close(fd)
                with target.lock:
                    target.remaining -= 1
                    done = target.remaining == 0
                if done:
                    finish(target)
            written += len(plaintext)
        with summary_lock:
            summary.blocks += len(block_ids)
        progress(0, written)

    try:
        with ThreadPoolExecutor(max_workers=FETCH_WORKERS, thread_name_prefix="haven-restore") as pool:
            futures = [pool.submit(fetch, batch) for batch in batches]
            for future in futures:
                if future.exception() is not None:
                    for other in futures:
                        other.cancel()
                    raise future.exception()
    except BaseException:
        for target in targets:
            if target.remaining:
                target.temporary.unlink(missing_ok=True)
        raise
    leftover = [t for t in targets if t.remaining]
    if leftover:
        raise RestoreError(f"{len(leftover)} file(s) were not completed")
    summary.seconds = time.monotonic() - started
    return summary

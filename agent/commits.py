"""Version commits of a backup (agent/backup.py): read files, tombstones and directory listings
become commit requests, queued for the uploader thread in order.

A commit is queued only once every block of its files is on the server or in a batch queued
before it (the engine decides when); the uploader sends it after those batches were
acknowledged and updates the local state only after the server confirmed it. A partial commit
waits to be merged with the next one, so the run's last file versions, its deletions and its
directory listings go in one request.
"""
import hashlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.scan import FileEntry
from agent.state import CachedFile, LocalState
from formats.commit_body import CommitVersion
from formats.directories import DirectoryEntry, listing_to_json
from formats.keys import KeySet
from formats.manifests import Manifest, listing_manifest, manifest_seal

COMMIT_VERSIONS = 1000
LISTING_ALONE_BYTES = 4 * 1024 * 1024  # a larger directory listing is not merged with file versions
_ENTROPY = 16 + 12  # random bytes of a new version: its id, then its manifest's nonce


def version_uuid(random16: bytes, unix_ms: int) -> uuid.UUID:
    """A time-ordered version id: UUID version 7 (RFC 9562 §5.7), 48 bits of Unix milliseconds,
    then 74 of the random bytes. New ids sort after the ones already stored, so a commit of 1,000
    versions inserts at the end of the server's (server-wide) unique index, a few pages, instead
    of one random page per version (docs/protocol.md); the manifest binds whatever id it chose."""
    raw = bytearray(random16)
    raw[0:6] = (unix_ms & 0xFFFF_FFFF_FFFF).to_bytes(6, "big")
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    return uuid.UUID(bytes=bytes(raw))


@dataclass(slots=True)
class PendingFile:
    """A changed file between its read and its commit."""

    entry: FileEntry
    block_ids: list[bytes] = field(default_factory=list)
    block_sizes: list[int] = field(default_factory=list)
    read_bytes: int = 0
    failed: bool = False
    unstable: bool = False  # changed while it was read: commit what was read, re-read next time


class CommitQueue:
    """Builds commit requests and hands them to `put` (the uploader's queue) in order.

    An item is ("commit", versions, cached, deleted paths, listings): `versions` are CommitVersions
    or PendingFiles, whose manifests the uploader thread builds just before sending
    (`materialize`): on trees of small files that was a third of the main thread's time.
    """

    def __init__(self, *, keys: KeySet, archive_uuid: uuid.UUID, state: LocalState, put: Callable[[tuple], None]):
        self.keys, self.archive_uuid, self.state, self._put = keys, archive_uuid, state, put
        self._held: tuple | None = None  # a partial commit, topped up by the next one

    def put(self, versions: list, cached: list[CachedFile], deleted: list[str],
            listings: list[tuple[str, bytes]] = ()) -> None:
        held = self._held
        if held is not None and len(held[1]) + len(versions) <= COMMIT_VERSIONS:
            self._held = ("commit", held[1] + versions, held[2] + cached, held[3] + deleted, held[4] + list(listings))
        else:
            self.flush()
            self._held = ("commit", list(versions), list(cached), list(deleted), list(listings))
        if len(self._held[1]) >= COMMIT_VERSIONS:
            self.flush()

    def flush(self) -> None:
        if self._held is not None:
            item, self._held = self._held, None
            self._put(item)

    def files(self, files: list[PendingFile]) -> None:
        for start in range(0, len(files), COMMIT_VERSIONS):
            self.put(files[start:start + COMMIT_VERSIONS], [], [])

    def deleted(self, paths: list[str]) -> None:
        for start in range(0, len(paths), COMMIT_VERSIONS):
            group = paths[start:start + COMMIT_VERSIONS]
            versions = [self.version(path, Manifest(path=path, size=0, mtime_ns=0, mode=0, block_ids=[],
                                                    block_sizes=[], deleted=True))[0] for path in group]
            self.put(versions, [], group)

    def listings(self, directories: dict[str, list[DirectoryEntry]]) -> None:
        """One listing per directory root, only when it differs from the last one committed."""
        for root, entries in directories.items():
            manifest = listing_manifest(root, entries)
            digest = hashlib.blake2b(listing_to_json(root, manifest.directories), digest_size=32).digest()
            if self.state.listing_digest(root) == digest:
                continue
            body, _ = self.version(root, manifest)
            # Its size in a JSON body (the fallback, docs/formats.md §11): a commit stays well under 32 MiB.
            alone = (len(body.manifest) + 2) // 3 * 4 > LISTING_ALONE_BYTES
            if alone:
                self.flush()
            self.put([body], [], [], [(root, digest)])
            if alone:  # and nothing joins it afterwards
                self.flush()

    def version(self, path: str, manifest: Manifest, entropy: bytes | None = None,
                unix_ms: int | None = None) -> tuple[CommitVersion, str]:
        """A commit's version for one manifest, and its version id. `entropy`: 28 fresh random bytes
        (the version id's 16 and the manifest's nonce), drawn here if None; `unix_ms`: the id's
        time, now if None."""
        if entropy is None:
            entropy = os.urandom(_ENTROPY)
        version_id = version_uuid(entropy[:16], time.time_ns() // 1_000_000 if unix_ms is None else unix_ms)
        path_id, blob = manifest_seal(self.keys, manifest, archive_id=self.archive_uuid, version_id=version_id,
                                      nonce=entropy[16:_ENTROPY])
        return CommitVersion(version_id, path_id, manifest.deleted, manifest.block_ids, blob), str(version_id)

    def materialize(self, versions: list, cached: list[CachedFile]) -> tuple[list[CommitVersion], list[CachedFile]]:
        """Commit versions for the files queued as PendingFile, and their local state rows (the
        uploader thread, just before the commit is sent)."""
        if not any(isinstance(item, PendingFile) for item in versions):
            return versions, cached
        bodies, cached = [], list(cached)
        # One system call for every version id and nonce of the commit: each os.urandom lets go
        # of the GIL, and this thread then waited behind the busy ones to get it back.
        entropy = os.urandom(_ENTROPY * len(versions))
        unix_ms = time.time_ns() // 1_000_000
        for index, item in enumerate(versions):
            if not isinstance(item, PendingFile):
                bodies.append(item)
                continue
            entry = item.entry
            manifest = Manifest(path=entry.path, size=item.read_bytes, mtime_ns=entry.mtime_ns,
                                mode=entry.mode, block_ids=item.block_ids, block_sizes=item.block_sizes)
            body, version_id = self.version(entry.path, manifest, entropy[index * _ENTROPY:(index + 1) * _ENTROPY],
                                            unix_ms)
            bodies.append(body)
            cached.append(CachedFile(entry.path, entry.size, -1 if item.unstable else entry.mtime_ns,
                                     entry.ctime_ns, entry.inode, version_id, entry.dev))
        return bodies, cached

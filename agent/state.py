"""The agent's local cache of committed files (SQLite in the config directory).

A row is written only after the server confirmed the version, so an interrupted backup leaves
the cache describing exactly what is committed; the next run re-reads everything else.
Paths are stored as the bytes the file system gave (os.fsencode), so any name round-trips.
"""
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

SCHEMA_VERSION = 3
SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    archive_id TEXT NOT NULL,
    path BLOB NOT NULL,
    parent BLOB NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    dev INTEGER NOT NULL,
    version_id TEXT NOT NULL,
    PRIMARY KEY (archive_id, path)
);
CREATE INDEX IF NOT EXISTS files_parent ON files (archive_id, parent);
"""
# Added beside the files table (no schema bump: the files cache survives the upgrade).
LISTINGS_SCHEMA = """
CREATE TABLE IF NOT EXISTS listings (
    archive_id TEXT NOT NULL,
    root BLOB NOT NULL,
    digest BLOB NOT NULL,
    PRIMARY KEY (archive_id, root)
);
"""


class CachedFile(NamedTuple):
    """One committed file as the last backup saw it (a tuple: one is built per file per run)."""

    path: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    version_id: str
    dev: int  # the file system it was on: an unmounted volume is not a mass deletion


class LocalState:
    def __init__(self, config_dir: Path, archive_id: str):
        path = config_dir / "state.sqlite3"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        self._db = sqlite3.connect(path, check_same_thread=False)
        if self._db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            # Only a cache: an older layout is dropped, and the next backup simply reads every file.
            self._db.executescript(f"DROP TABLE IF EXISTS files; PRAGMA user_version = {SCHEMA_VERSION};")
        self._db.executescript(SCHEMA)
        self._db.executescript(LISTINGS_SCHEMA)
        self.archive_id = archive_id

    def close(self) -> None:
        self._db.close()

    def lookup_all(self) -> dict[str, CachedFile]:
        rows = self._db.execute(
            "SELECT path, size, mtime_ns, ctime_ns, inode, version_id, dev FROM files WHERE archive_id = ?",
            (self.archive_id,))
        cache: dict[str, CachedFile] = {}
        fsdecode = os.fsdecode
        for path, size, mtime, ctime, inode, version, dev in rows:
            name = fsdecode(path)
            cache[name] = CachedFile(name, size, mtime, ctime, inode, version, dev)
        return cache

    def record_committed(self, entries: Iterable[CachedFile]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO files (archive_id, path, parent, size, mtime_ns, ctime_ns, inode, version_id, "
                "dev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(self.archive_id, os.fsencode(e.path), os.fsencode(os.path.dirname(e.path)), e.size, e.mtime_ns,
                  e.ctime_ns, e.inode, e.version_id, e.dev) for e in entries])

    def forget(self, paths: Iterable[str]) -> None:
        with self._db:
            self._db.executemany("DELETE FROM files WHERE archive_id = ? AND path = ?",
                                 [(self.archive_id, os.fsencode(p)) for p in paths])

    # --- directory listings (docs/formats.md §9): the digest of the last one committed per root ---

    def listing_digest(self, root: str) -> bytes | None:
        row = self._db.execute("SELECT digest FROM listings WHERE archive_id = ? AND root = ?",
                               (self.archive_id, os.fsencode(root))).fetchone()
        return row[0] if row else None

    def record_listings(self, listings: Iterable[tuple[str, bytes]]) -> None:
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO listings (archive_id, root, digest) VALUES (?, ?, ?)",
                                 [(self.archive_id, os.fsencode(root), digest) for root, digest in listings])

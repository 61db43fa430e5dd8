"""The agent's on-disk event queue (SQLite in the config directory).

Events gather in memory for at most `batch_seconds` or `batch_events`, then are sealed into a
batch: its id, its events and their ids are fixed once, gzipped and written in one transaction.
A sealed batch is sent until the server answers 200 or 201 and only then deleted, so a lost
answer means the same batch again, which the server recognizes by its id: every event is stored
exactly once. Events not yet sealed (≤ batch_seconds of them) are lost if the agent is killed.

Disk use is bounded: past `max_bytes` the oldest batches are dropped; their events are counted
and the count rides in the next sealed batch (`dropped`), which is itself delivered exactly once.
"""
import gzip
import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

QUEUE_FILE = "activity-queue.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL UNIQUE,
    event_count INTEGER NOT NULL,
    dropped INTEGER NOT NULL,
    payload BLOB NOT NULL,
    sealed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
COUNTERS = ("delivered", "dropped_total", "dropped_unreported", "rejected")


class EventQueue:
    def __init__(self, path: Path, *, max_bytes: int = 64 * 1024 * 1024, batch_events: int = 2000,
                 batch_seconds: float = 5.0):
        self.path, self.max_bytes = path, max_bytes
        self.batch_events, self.batch_seconds = min(batch_events, 5000), batch_seconds  # 5,000: the protocol's cap
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._buffer: list[dict] = []
        self._opened = time.monotonic()
        self.sealed = threading.Event()  # set when a batch is ready, so the sender wakes at once

    def close(self) -> None:
        self.seal()
        with self._lock:
            self._db.close()

    # -- filling --

    def add(self, event: dict) -> None:
        with self._lock:
            if not self._buffer:
                self._opened = time.monotonic()
            self._buffer.append(event)
            full = len(self._buffer) >= self.batch_events
        if full:
            self.seal()

    def seal_due(self) -> bool:
        """Seal the buffer when its oldest event waited `batch_seconds`; called by a timer."""
        with self._lock:
            due = bool(self._buffer) and time.monotonic() - self._opened >= self.batch_seconds
        return self.seal() is not None if due else False

    def seal(self) -> str | None:
        with self._lock:
            events, self._buffer = self._buffer[:self.batch_events], self._buffer[self.batch_events:]
            self._opened = time.monotonic()
            if not events:
                return None
            batch_id = str(uuid.uuid4())
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                dropped = self._counter("dropped_unreported")
                body = {"batch_id": batch_id, "events": events}
                if dropped:
                    body["dropped"] = dropped
                payload = gzip.compress(json.dumps(body, separators=(",", ":")).encode(), compresslevel=6)
                db.execute("INSERT INTO batches (batch_id, event_count, dropped, payload, sealed_at) "
                           "VALUES (?, ?, ?, ?, ?)", (batch_id, len(events), dropped, payload, time.time()))
                self._set("dropped_unreported", 0)
                self._enforce_bound()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        self.sealed.set()
        return batch_id

    def _enforce_bound(self) -> None:
        db = self._db
        while True:
            total, count = db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0), COUNT(*) FROM batches").fetchone()
            if total <= self.max_bytes or count <= 1:  # the batch just sealed always stays
                return
            seq, events, dropped = db.execute(
                "SELECT seq, event_count, dropped FROM batches ORDER BY seq LIMIT 1").fetchone()
            db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
            self._add("dropped_total", events)
            # Its own unreported drops are unreported again, with its events.
            self._add("dropped_unreported", events + dropped)

    # -- draining --

    def oldest(self) -> tuple[int, str, bytes, int] | None:
        with self._lock:
            return self._db.execute(
                "SELECT seq, batch_id, payload, event_count FROM batches ORDER BY seq LIMIT 1").fetchone()

    def delivered(self, seq: int) -> None:
        self._remove(seq, "delivered")

    def rejected(self, seq: int) -> None:
        """The server refused the batch for good (4xx): it can never be delivered; counted."""
        self._remove(seq, "rejected")

    def _remove(self, seq: int, counter: str) -> None:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT event_count FROM batches WHERE seq = ?", (seq,)).fetchone()
                if row is not None:  # dropped meanwhile by the bound: already counted
                    db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
                    self._add(counter, row[0])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    # -- counters --

    def stats(self) -> dict:
        with self._lock:
            batches, events, nbytes = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(event_count), 0), COALESCE(SUM(LENGTH(payload)), 0) "
                "FROM batches").fetchone()
            counters = {name: self._counter(name) for name in COUNTERS}
            return {"queued_batches": batches, "queued_events": events, "queued_bytes": nbytes,
                    "buffered_events": len(self._buffer), **counters}

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def _set(self, name: str, value: int) -> None:
        self._db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value))

    def _add(self, name: str, delta: int) -> None:
        self._set(name, self._counter(name) + delta)


def queued_event_ids(path: Path) -> list[str]:
    """Every event id in a queue file's sealed batches (tests and diagnostics; read-only)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        ids = []
        for (payload,) in db.execute("SELECT payload FROM batches ORDER BY seq"):
            ids += [event["event_id"] for event in json.loads(gzip.decompress(payload))["events"]]
        return ids
    finally:
        db.close()

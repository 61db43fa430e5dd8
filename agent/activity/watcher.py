"""The activity watcher: watchdog events → one file-activity event per file change.

Raw events are coalesced per path until the path has been quiet for `quiet_seconds` (an editor
writes a file in many small writes, a copy creates then fills it), so one copied file is one
`created` event with its final size, hash and entropy. The vector is decided when the event is
emitted: a burst of encryption-looking rewrites or of renames in the last minute, else where
the file lives (removable media, a cloud-sync folder), else an archive appearing.
"""
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from agent.activity.classify import ARCHIVE_EXTENSIONS, category_of, extension, file_facts, file_owner, under
from agent.mounts import PlannedWatches, system_mounts

log = logging.getLogger("haven.agent")

HIGH_ENTROPY = 7.2  # bits per byte; text is ~4.5, office XML ~6-7 (compressed), ciphertext ~8
ENTROPY_JUMP = 1.0
# Compressed by nature: a high entropy says nothing new about these unless it jumped.
NATURALLY_DENSE = {"archive", "image", "audio", "video"}


@dataclass
class WatchSettings:
    roots: list[str]  # the backup selection
    removable_roots: list[str]
    cloud_roots: list[str]
    ignored: Callable[[str], bool] = lambda path: False
    hash_max_bytes: int = 256 * 1024 * 1024
    quiet_seconds: float = 0.5
    burst_window: float = 60.0
    mass_threshold: int = 20  # files in burst_window that make a mass rename / encryption
    known_entropies: int = 200_000  # paths whose last entropy is remembered (LRU)
    process: str | None = None
    watched: list[str] = field(default_factory=list)


def watch_roots(settings: WatchSettings) -> list[str]:
    """Every existing root, none inside another (overlapping recursive watches report twice)."""
    roots = sorted({os.path.abspath(r) for r in [*settings.roots, *settings.removable_roots, *settings.cloud_roots]
                    if os.path.isdir(r)})
    return [r for r in roots if not any(r != o and under(r, [o]) for o in roots)]


class ActivityWatcher(FileSystemEventHandler):
    def __init__(self, settings: WatchSettings, emit: Callable[[dict], None]):
        self.settings, self.emit = settings, emit
        self._lock = threading.Lock()
        self._pending: dict[str, list] = {}  # path -> [type, last touched (monotonic), wall time, src]
        self._entropy: OrderedDict[str, float] = OrderedDict()
        self._encryptions: deque[float] = deque()
        self._renames: deque[float] = deque()
        self._observer = None
        self._watches: PlannedWatches | None = None  # the current observer's, agent/mounts.py
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self.emitted = 0

    # -- lifecycle --

    def start(self) -> list[str]:
        observer = Observer()
        watched = []
        self._watches = watches = PlannedWatches(observer, self, system_mounts())
        for root in watch_roots(self.settings):
            if watches.add(root):
                watched.append(root)
            else:
                log.warning("activity: cannot watch all of %s", root)
        observer.start()
        self._observer, self.settings.watched = observer, watched
        self._stop.clear()
        self._flusher = threading.Thread(target=self._flush_loop, name="haven-activity-flush", daemon=True)
        self._flusher.start()
        log.info("activity: watching %s", ", ".join(watched) or "nothing")
        return watched

    def stop(self) -> None:
        self._watches = None  # no new watches on an observer being stopped
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        self.flush(force=True)

    # -- raw events --

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory and event.event_type in ("created", "moved") and self._watches is not None:
            self._watches.appeared(os.fsdecode(event.dest_path or event.src_path))
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if event.dest_path else ""
        if self.settings.ignored(src) and (not dest or self.settings.ignored(dest)):
            return
        now, wall = time.monotonic(), datetime.now(UTC)
        with self._lock:
            kind = event.event_type
            if kind == "created":
                self._pending[src] = ["created", now, wall, ""]
            elif kind in ("modified", "closed", "attrib"):
                entry = self._pending.get(src)
                if entry is None:
                    if kind == "attrib":
                        return  # permissions or times alone are not file activity
                    self._pending[src] = ["modified", now, wall, ""]
                else:
                    entry[1], entry[2] = now, wall
            elif kind == "deleted":
                entry = self._pending.pop(src, None)
                if entry is None or entry[0] != "created":  # created and gone unseen: a temporary file
                    self._pending[src] = ["deleted", now, wall, ""]
            elif kind == "moved":
                entry = self._pending.pop(src, None)
                if entry is not None and entry[0] == "created":
                    # Written under a temporary name and renamed into place (editors, downloads).
                    self._pending[dest] = ["created", now, wall, ""]
                else:
                    self._pending[dest] = ["renamed", now, wall, src]

    # -- emitting --

    def _flush_loop(self) -> None:
        while not self._stop.wait(min(0.25, self.settings.quiet_seconds / 2)):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the watcher must outlive one bad file
                log.exception("activity: flushing events failed")

    def flush(self, *, force: bool = False) -> int:
        cutoff = time.monotonic() - self.settings.quiet_seconds
        with self._lock:
            ready = [(path, entry) for path, entry in self._pending.items() if force or entry[1] <= cutoff]
            for path, _ in ready:
                del self._pending[path]
        ready.sort(key=lambda item: item[1][1])
        for path, (kind, _, wall, src) in ready:
            event = self._event(kind, path, src, wall)
            if event is not None:
                self.emit(event)
                self.emitted += 1
        return len(ready)

    def _event(self, kind: str, path: str, src: str, wall: datetime) -> dict | None:
        settings = self.settings
        event = {"event_id": str(uuid.uuid4()), "occurred_at": wall.isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"), "type": kind, "path": src if kind == "renamed" else path,
            "dest_path": path if kind == "renamed" else None, "size": None, "sha256": None, "entropy": None,
            "os_user": None, "process": settings.process, "vector": None}
        event["category"], event["mime_type"] = category_of(path)
        event["mime_type"] = event["mime_type"] or None
        previous = self._entropy.pop(src or path, None)
        if kind == "deleted":
            event["os_user"] = os.environ.get("USER") or None
        else:
            facts = file_facts(path, hash_max_bytes=settings.hash_max_bytes)
            if facts is None:
                return None if kind != "renamed" else event  # gone already: the delete will follow
            event.update(facts)
            event["os_user"] = file_owner(path) or None
            self._remember(path, facts["entropy"])
        now = time.monotonic()
        encrypted = kind in ("created", "modified") and self._looks_encrypted(event, previous, kind)
        if encrypted:
            self._encryptions.append(now)
        if kind == "renamed":
            self._renames.append(now)
        event["vector"] = self._vector(kind, path, now, encrypted=encrypted)
        return event

    def _looks_encrypted(self, event: dict, previous: float | None, kind: str) -> bool:
        entropy = event["entropy"]
        if entropy is None or entropy < HIGH_ENTROPY or not event["size"]:
            return False
        if previous is not None:
            return entropy - previous >= ENTROPY_JUMP
        # Unknown before: a rewrite of an existing file, or a new file that is not dense by nature.
        return kind == "modified" or event["category"] not in NATURALLY_DENSE

    def _remember(self, path: str, entropy: float) -> None:
        self._entropy[path] = entropy
        if len(self._entropy) > self.settings.known_entropies:
            self._entropy.popitem(last=False)

    def _burst(self, times: deque, now: float) -> bool:
        while times and times[0] < now - self.settings.burst_window:
            times.popleft()
        return len(times) >= self.settings.mass_threshold

    def _vector(self, kind: str, path: str, now: float, *, encrypted: bool) -> str | None:
        settings = self.settings
        # Where a file went is a fact, a burst a heuristic: a dense file copied to a USB stick
        # while a burst of rewrites runs is a removable-media event (it still counts in the burst).
        if kind != "deleted" and under(path, settings.removable_roots):
            return "removable_media"
        if kind != "deleted" and under(path, settings.cloud_roots):
            return "cloud_sync"
        if encrypted and self._burst(self._encryptions, now):
            return "mass_encryption"
        if kind == "renamed" and self._burst(self._renames, now):
            return "mass_rename"
        if kind in ("created", "renamed") and extension(path) in ARCHIVE_EXTENSIONS:
            return "archive_created"
        return None

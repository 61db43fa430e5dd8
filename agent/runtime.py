"""What the long-running agent needs around a backup: one instance per config directory, retry
delays, a file-change watcher, and whether the user is at the machine."""
import fcntl
import glob
import os
import random
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from agent.mounts import PlannedWatches, system_mounts

LOCK_FILE = "agent.lock"


class ServiceLocked(Exception):
    """Another `agent run` holds this config directory."""


def service_lock(config_dir: Path):
    """Hold an exclusive lock on the config directory for the life of the returned file.

    fcntl locks vanish with the process, so a crashed service never leaves a stale lock behind.
    """
    handle = open(config_dir / LOCK_FILE, "a+")  # noqa: SIM115 - kept open: it is the lock
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise ServiceLocked(f"another `agent run` (pid {holder}) is already running for {config_dir}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


class Backoff:
    """Exponential retry delays, capped, with jitter so a fleet does not come back in lockstep
    after an outage: the n-th failure in a row waits a random time in [d/2, d], d = base * 2^(n-1)."""

    def __init__(self, *, base: float = 2.0, cap: float = 300.0, rng: Callable[[], float] = random.random):
        self.base, self.cap, self.rng = base, cap, rng
        self.failures = 0

    def failure(self) -> float:
        self.failures += 1
        delay = min(self.cap, self.base * 2 ** min(self.failures - 1, 30))
        return delay / 2 + self.rng() * delay / 2

    def reset(self) -> None:
        self.failures = 0


# Events of the watched trees that mean a file may have changed. Opening and reading (our own
# backup does that) are not changes.
_CHANGE_EVENTS = {"created", "deleted", "modified", "moved", "closed", "attrib"}


class ChangeWatcher(FileSystemEventHandler):
    """Remembers whether anything under the selection changed since the last scan.

    When the watcher cannot cover a root (too many directories for inotify, a missing volume),
    it says "dirty" every time: the agent then walks the selection as it would without it.
    """

    def __init__(self, ignored: Callable[[str], bool]):
        self.ignored = ignored
        self._lock = threading.Lock()
        self._dirty = True  # nothing is known before the first scan
        self.complete = False
        self._observer = None
        self._generation = 0  # bumped by every watch and stop: an opening that was overtaken closes itself
        self._watches: PlannedWatches | None = None  # the current observer's, agent/mounts.py

    def watch(self, roots: list[str]) -> bool:
        """Watch `roots` (recursively) in place of what was watched; True when all of it is covered."""
        generation = self._supersede()
        return self._open(roots, generation)

    def watch_in_background(self, roots: list[str]) -> threading.Thread:
        """`watch` off the caller's thread. Recursive watches cost a walk of every directory
        under the roots (a second for a home directory, minutes for a whole disk); until
        they are in place the watcher says dirty, so the loop backs up, retries and stops as if
        there were no watcher."""
        generation = self._supersede()
        thread = threading.Thread(target=self._open, args=(roots, generation), name="haven-watch-open", daemon=True)
        thread.start()
        return thread

    def _supersede(self) -> int:
        self.stop()  # bumps the generation: an opening still under way closes itself
        with self._lock:
            self._dirty = True
            return self._generation

    def _open(self, roots: list[str], generation: int) -> bool:
        observer = Observer()
        complete = True
        watches = PlannedWatches(observer, self, system_mounts())
        for root in roots:
            try:
                if os.path.isdir(root):
                    complete = watches.add(root) and complete
                elif os.path.isfile(root):
                    observer.schedule(self, os.path.dirname(root) or "/", recursive=False)
                else:
                    complete = False
            except OSError:
                complete = False
        try:
            observer.start()
        except OSError:  # e.g. the inotify watch limit: fall back to walking every time
            return False
        with self._lock:
            current = generation == self._generation
            if current:
                self._observer, self._watches, self.complete, self._dirty = observer, watches, complete, True
        if not current:  # stopped, or another watch began, while this one was opening
            observer.stop()
            return False
        return complete

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in _CHANGE_EVENTS:
            return
        watches = self._watches
        if event.is_directory and event.event_type in ("created", "moved") and watches is not None \
                and not watches.appeared(os.fsdecode(event.dest_path or event.src_path)):
            with self._lock:
                self.complete = False  # its creation marks the selection dirty below
        if event.is_directory and event.event_type in ("modified", "attrib"):
            return  # a directory changes with its entries, whose own events say what changed
        paths = [os.fsdecode(event.src_path)] + ([os.fsdecode(event.dest_path)] if event.dest_path else [])
        if all(self.ignored(path) for path in paths):
            return
        with self._lock:
            self._dirty = True

    @property
    def dirty(self) -> bool:
        return self._dirty or not self.complete

    def mark_dirty(self) -> None:
        """A scan that failed half-way: what it was to pick up is still to be picked up."""
        with self._lock:
            self._dirty = True

    def clear(self) -> None:
        """Called right before a scan: changes during the scan leave it dirty for the next one."""
        with self._lock:
            self._dirty = False

    def stop(self) -> None:
        with self._lock:
            self._generation += 1
            observer, self._observer, self._watches, self.complete = self._observer, None, None, False
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)


def user_idle_seconds() -> float | None:
    """Seconds since the user last typed or moved the mouse, None when this cannot be told."""
    if os.uname().sysname == "Darwin":
        try:
            out = subprocess.run(["ioreg", "-c", "IOHIDSystem"], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        match = re.search(r'"HIDIdleTime" = (\d+)', out)
        return int(match[1]) / 1e9 if match else None
    # Linux: input on a terminal updates its atime (what `w` shows as IDLE).
    stamps = []
    for tty in glob.glob("/dev/pts/[0-9]*") + glob.glob("/dev/tty[0-9]*"):
        try:
            stamps.append(os.stat(tty).st_atime)
        except OSError:
            continue
    return time.time() - max(stamps) if stamps else None


def user_active(away_after: float = 300.0) -> bool:
    """Unknown counts as active: the (usually lower) limit for an active user is the safe one."""
    idle = user_idle_seconds()
    return idle is None or idle < away_after

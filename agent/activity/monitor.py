"""The activity monitor: watcher → on-disk queue → sender, as threads of `agent watch` or of
`agent run`. One monitor per config directory (its own lock, so `watch` and `run` never share
a queue)."""
import fcntl
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.activity.classify import REMOVABLE_ROOTS, cloud_roots, under
from agent.activity.queue import QUEUE_FILE, EventQueue
from agent.activity.sender import EventSender
from agent.activity.watcher import ActivityWatcher, WatchSettings
from agent.client import ApiClient
from agent.config import AgentConfig

log = logging.getLogger("haven.agent")
LOCK_FILE = "activity.lock"


class MonitorLocked(Exception):
    """Another process runs the activity monitor of this config directory."""


@dataclass
class ActivityOptions:
    enabled: bool = True
    removable_roots: list[str] | None = None  # None: /media, /run/media, /mnt, /Volumes
    cloud_roots: list[str] | None = None  # None: the sync folders found in the home directory
    batch_seconds: float = 5.0
    batch_events: int = 2000
    queue_max_bytes: int = 64 * 1024 * 1024
    hash_max_bytes: int = 256 * 1024 * 1024
    mass_threshold: int = 20
    max_backoff: float = 300.0


class ActivityMonitor:
    def __init__(self, config_dir: Path, config: AgentConfig, options: ActivityOptions, *,
                 roots: list[str], ignored: Callable[[str], bool] = lambda path: False,
                 on_deauthorized: Callable[[], None] | None = None):
        self.config_dir, self.config, self.options = config_dir, config, options
        own = str(config_dir.resolve())
        settings = WatchSettings(
            roots=roots, removable_roots=[os.path.abspath(r) for r in (options.removable_roots or REMOVABLE_ROOTS)],
            cloud_roots=[os.path.abspath(r) for r in (options.cloud_roots if options.cloud_roots is not None
                                                      else cloud_roots())],
            hash_max_bytes=options.hash_max_bytes, mass_threshold=options.mass_threshold)
        # The agent's own directory (its queue, its log) is never activity; the backup's exclusions
        # apply inside the selection only (a file excluded from backup still counts on a USB stick).
        settings.ignored = lambda path: under(path, [own]) or (under(path, settings.roots) and ignored(path))
        self._lock_handle = _lock(config_dir)
        self.queue = EventQueue(config_dir / QUEUE_FILE, max_bytes=options.queue_max_bytes,
                                batch_events=options.batch_events, batch_seconds=options.batch_seconds)
        self.watcher = ActivityWatcher(settings, self.queue.add)
        client = ApiClient(config.server, token=config.token, ca_file=config.ca_file, retries=0, timeout=60.0)
        self.sender = EventSender(self.queue, client, max_backoff=options.max_backoff,
                                  on_deauthorized=on_deauthorized)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> list[str]:
        watched = self.watcher.start()
        self._threads = [threading.Thread(target=self.sender.run, args=(self._stop,), name="haven-activity-send",
                                          daemon=True),
                         threading.Thread(target=self._seal_loop, name="haven-activity-seal", daemon=True)]
        for thread in self._threads:
            thread.start()
        return watched

    def rewatch(self, roots: list[str]) -> None:
        """A new backup selection (policy change): watch it instead of the old one."""
        if sorted(roots) != sorted(self.watcher.settings.roots):
            self.watcher.stop()
            self.watcher.settings.roots = roots
            self.watcher.start()

    def _seal_loop(self) -> None:
        while not self._stop.wait(min(1.0, self.options.batch_seconds / 4)):
            try:
                self.queue.seal_due()
            except Exception:  # noqa: BLE001
                log.exception("activity: sealing a batch failed")

    def stop(self) -> None:
        """Flush what the watcher holds into a sealed batch: it is sent by the next run."""
        self.watcher.stop()
        self._stop.set()
        self.queue.sealed.set()  # wakes the sender from its wait for a batch
        for thread in self._threads:
            thread.join(timeout=10)
        self.queue.seal()
        stats = self.queue.stats()
        self.queue.close()
        log.info("activity: monitor ended (%s)", ", ".join(f"{k} {v}" for k, v in stats.items()))
        self._lock_handle.close()


def _lock(config_dir: Path):
    handle = open(config_dir / LOCK_FILE, "a+")  # noqa: SIM115 - kept open: it is the lock
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise MonitorLocked(f"another agent process already monitors file activity for {config_dir}") from None
    return handle

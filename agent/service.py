"""`agent run`: the agent as a long-running service.

It backs up at start and then on the policy's schedule; between scans a watchdog observer tells
whether anything under the selection changed, so an idle machine does no walk at all (a full
verifying walk still runs at least daily). A heartbeat thread reports the agent's state to the
server every `poll` seconds, receives its commands (back up now; push restores later) and
refetches the policy when its ETag changed. Network and server failures are retried with capped,
jittered exponential backoff; a 401 device_deauthorized anywhere wipes the key and stops.

Stopping (SIGTERM, SIGINT) while a backup runs abandons it where it is: the engine commits a
version only after its blocks are durable, so the next run resumes without loss.
"""
import logging
import logging.handlers
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agent import __version__
from agent.activity.monitor import ActivityMonitor, ActivityOptions, MonitorLocked
from agent.backup import BackupEngine, scan
from agent.client import ApiClient, ApiError, DeviceDeauthorized
from agent.config import AgentConfig, config_load
from agent.keys import KeyMissing, user_key_load, user_key_setup, user_key_wipe
from agent.policy import Policy, policy_cache_load, policy_cache_save
from agent.push import PushRunner
from agent.runtime import Backoff, ChangeWatcher, ServiceLocked, service_lock, user_active
from agent.state import LocalState
from agent.throttle import TokenBucket
from formats.keys import derive_keys

log = logging.getLogger("haven.agent")
LOG_FILE = "agent.log"
EXIT_DEAUTHORIZED = 3
EXIT_LOCKED = 5


class ServiceStop(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM/SIGINT during a backup: the engine marks the run
    interrupted and cleans up exactly as for Ctrl-C."""


def logging_setup(config_dir: Path, *, verbose: bool = False) -> None:
    path = config_dir / LOG_FILE
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    handlers = [logging.handlers.RotatingFileHandler(path, maxBytes=5 * 1024 * 1024, backupCount=3),
                logging.StreamHandler(sys.stderr)]
    for handler in list(log.handlers):  # a second service in one process (tests) logs once
        log.removeHandler(handler)
        handler.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


@dataclass
class ServiceOptions:
    paths: list[str] = field(default_factory=list)  # empty: what the policy selects
    poll_seconds: float = 30.0  # status report and policy check while idle (< 60 s)
    max_backoff: float = 300.0
    full_scan_seconds: float = 86400.0
    # How long the first scan after a new selection waits for its change watches: a scan that
    # starts with them in place needs no second walk (one that starts before cannot know what
    # changed in between, and walks again). A home directory takes about a second; `/` takes
    # minutes and is not waited for.
    watch_wait_seconds: float = 5.0
    verbose: bool = False
    activity: ActivityOptions | None = None  # file-activity monitoring (agent/activity/); None: off


class AgentService:
    def __init__(self, config_dir: Path, options: ServiceOptions):
        self.config_dir, self.options = config_dir, options
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.backup_now = threading.Event()
        self.deauthorized = False
        self.bucket = TokenBucket()
        self.policy = policy_cache_load(config_dir) or Policy()
        self.policy_changed = True
        self.state = "idle"
        self.last_result: dict = {"status": "none"}
        self.selection = (0, 0)  # files, bytes of the last full walk
        self.pending_bytes = 0
        self._in_backup = False
        self._interrupting = False
        self._matcher: tuple = (None, [], None)
        self.watcher = ChangeWatcher(self._ignored)
        self.push = PushRunner(config_dir, self.stop, lambda: derive_keys(user_key_load(config_dir)),
                               poll_seconds=max(60.0, options.poll_seconds))
        self.activity: ActivityMonitor | None = None
        self._activity_opening: threading.Thread | None = None

    # -- the parts the two threads share --

    def _client(self, config: AgentConfig) -> ApiClient:
        # One quick retry in the client; the service's own backoff handles longer outages.
        return ApiClient(config.server, token=config.token, ca_file=config.ca_file, retries=1, backoff=0.5,
                         timeout=120.0, throttle=self.bucket)

    def roots(self) -> list[str]:
        return sorted({os.path.abspath(p) for p in self.options.paths}) if self.options.paths else self.policy.roots()

    def exclusions(self):
        # The agent's own directory (its cache and log change all the time) is never backed up.
        return self.policy.exclusions(extra=[str(self.config_dir.resolve())])

    def _ignored(self, path: str) -> bool:
        policy = self.policy
        if self._matcher[0] is not policy:  # built once per policy, not once per file event
            self._matcher = (policy, self.roots(), self.exclusions())
        _, roots, exclude = self._matcher
        root = next((r for r in roots if path == r or path.startswith(r.rstrip("/") + "/")), None)
        return root is None or exclude.covers(path, root)

    def _policy_refresh(self, client: ApiClient) -> None:
        body, etag = client.policy(self.policy.etag or None)
        if body is None:
            return
        policy_cache_save(self.config_dir, body, etag)
        self.policy = Policy.from_json(body, etag)
        self.policy_changed = True
        log.info("policy %s: %s", etag, "; ".join(self.policy.describe()))
        self.wake.set()

    def _apply_limits(self) -> None:
        rate = self.policy.bandwidth_active if user_active() else self.policy.bandwidth_away
        self.bucket.set_rate(rate)

    # -- the heartbeat thread --

    def _heartbeat(self, config: AgentConfig) -> None:
        client = self._client(config)
        while not self.stop.is_set():
            try:
                answer = client.status_report({
                    "state": self.state, "last_result": self.last_result, "selection_files": self.selection[0],
                    "selection_bytes": self.selection[1], "pending_bytes": self.pending_bytes,
                    "policy_etag": self.policy.etag})
                for command in answer.get("commands", []):
                    self._command(command)
                if answer.get("policy_etag") != self.policy.etag:
                    self._policy_refresh(client)
                self._apply_limits()
            except DeviceDeauthorized:
                self.deauthorized = True
                self.stop.set()
                self.wake.set()
                return
            except ApiError as error:
                log.debug("status report failed: %s", error)
            except Exception:  # noqa: BLE001 - the heartbeat must outlive a surprise
                log.exception("status report failed")
            self.stop.wait(self.options.poll_seconds)

    def _command(self, command: dict) -> None:
        # Commands are a list so new kinds (a push restore job) can join; unknown ones are skipped.
        if command.get("command") == "backup_now":
            log.info("the server asked for a backup now")
            self.backup_now.set()
            self.wake.set()
        elif command.get("command") == "push_restore" and isinstance(command.get("detail"), dict):
            self.push.offer(str(command["detail"].get("job", "")))
            self.wake.set()
        else:
            log.warning("ignoring unknown server command %r", command.get("command"))

    # -- the main thread --

    def _on_signal(self, signum, frame) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        self.stop.set()
        self.wake.set()
        if self._in_backup and not self._interrupting:
            self._interrupting = True
            raise ServiceStop()

    def run(self) -> int:
        config = config_load(self.config_dir)  # not enrolled: ConfigError, before anything else
        try:
            lock = service_lock(self.config_dir)
        except ServiceLocked as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_LOCKED
        try:
            logging_setup(self.config_dir, verbose=self.options.verbose)
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
            log.info("haven agent %s running for %s (device %s)", __version__, config.user_email, config.device_id)
            return self._loop(config)
        finally:
            self.watcher.stop()
            self._activity_stop()
            lock.close()

    def _activity_start(self, config: AgentConfig) -> None:
        """Opened in a thread of its own: the first backup does not wait for the watches."""
        options = self.options.activity
        if options is None or not options.enabled:
            return

        def deauthorized() -> None:
            self.deauthorized = True
            self.stop.set()
            self.wake.set()

        def open_monitor() -> None:
            try:
                monitor = ActivityMonitor(self.config_dir, config, options, roots=self.roots(),
                                          ignored=self._ignored, on_deauthorized=deauthorized)
                monitor.start()
            except (MonitorLocked, OSError) as error:
                log.warning("file activity is not monitored: %s", error)
                return
            if self.stop.is_set():  # the service stopped while the watches were being added
                monitor.stop()
                return
            self.activity = monitor

        self._activity_opening = threading.Thread(target=open_monitor, name="haven-activity-open", daemon=True)
        self._activity_opening.start()

    def _activity_stop(self) -> None:
        if self._activity_opening is not None:
            # Adding the watches walks the roots; a stop does not wait for a long walk (the
            # opening sees the stop and closes the monitor itself).
            self._activity_opening.join(timeout=2)
            self._activity_opening = None
        if self.activity is not None:
            self.activity.stop()
            self.activity = None

    def _loop(self, config: AgentConfig) -> int:
        client = self._client(config)
        try:
            self._policy_refresh(client)
        except DeviceDeauthorized:
            return self._deauthorized()
        except ApiError as error:
            log.warning("cannot fetch the policy (%s); following the last one known", error)
        self._apply_cpu_limits()
        self._activity_start(config)  # after the policy fetch: it watches the policy's selection
        heartbeat = threading.Thread(target=self._heartbeat, args=(config,), name="haven-heartbeat", daemon=True)
        heartbeat.start()
        backoff = Backoff(cap=self.options.max_backoff)
        next_due, last_backup, last_full = time.monotonic(), float("-inf"), float("-inf")
        while not self.stop.is_set():
            if self.policy_changed:
                self.policy_changed = False
                opening = self.watcher.watch_in_background(self.roots())
                deadline = time.monotonic() + self.options.watch_wait_seconds
                while opening.is_alive() and not self.stop.is_set() and time.monotonic() < deadline:
                    opening.join(0.1)
                if self.activity is not None:
                    self.activity.rewatch(self.roots())
                last_full = float("-inf")  # a new selection or exclusions: walk everything once
                next_due = min(next_due, last_backup + self.policy.interval_seconds)
            if self.push.due():
                try:
                    self.push.run_due(client)
                except DeviceDeauthorized:
                    return self._deauthorized()
                except ApiError as error:
                    log.warning("cannot list push restores: %s", error)
            now = time.monotonic()
            forced = self.backup_now.is_set()
            if forced or now >= next_due:
                self.backup_now.clear()
                full = forced or now - last_full >= self.options.full_scan_seconds
                spaced = now - last_backup >= self.policy.version_interval_seconds
                if not (forced or self.policy.allows_now()):
                    next_due = now + min(self.policy.interval_seconds, 60)
                elif full or (self.watcher.dirty and spaced):
                    try:
                        self._backup(config, client, full=full)
                    except DeviceDeauthorized:
                        return self._deauthorized()
                    except ServiceStop:
                        break
                    except (ApiError, KeyMissing, OSError) as error:
                        delay = backoff.failure()
                        self.state, self.last_result = "error", {"status": "failed", "error": str(error)[:2000],
                                                                 "finished_at": _now()}
                        log.warning("backup failed: %s; retrying in %.1fs", error, delay)
                        next_due = time.monotonic() + delay
                    else:
                        backoff.reset()
                        last_backup = time.monotonic()
                        last_full = last_backup if full else last_full
                        next_due = last_backup + self.policy.interval_seconds
                else:
                    log.debug("nothing changed since the last scan")
                    next_due = now + self.policy.interval_seconds
            self.wake.wait(max(0.05, min(next_due - time.monotonic(), self.options.poll_seconds)))
            self.wake.clear()
        self._activity_stop()  # its last events sealed into the queue before "stopped"
        if self.deauthorized:
            return self._deauthorized()
        log.info("stopped")
        return 0

    def _apply_cpu_limits(self) -> None:
        try:
            current = os.nice(0)
            if self.policy.nice > current:
                os.nice(self.policy.nice - current)  # only ever lower our priority
        except OSError as error:
            log.warning("cannot change the process priority: %s", error)

    def _backup(self, config: AgentConfig, client: ApiClient, *, full: bool) -> None:
        try:
            keys = derive_keys(user_key_load(self.config_dir))
        except KeyMissing:
            log.info("the key's escrow is not confirmed; trying again")
            user_key_setup(client, self.config_dir)
            keys = derive_keys(user_key_load(self.config_dir))
        roots, exclude = self.roots(), self.exclusions()
        self._apply_limits()
        self.watcher.clear()
        self._in_backup, self._interrupting = True, False
        state = LocalState(self.config_dir, config.archive_id)
        try:
            if self.stop.is_set():
                raise ServiceStop()
            self.state = "running"
            scanned = scan(roots, state.lookup_all(), exclude=exclude)
            self.selection = (scanned.files_scanned, scanned.bytes_scanned)
            self.pending_bytes = sum(entry.size for entry in scanned.changed)

            def progress(files: int, nbytes: int) -> None:
                self.pending_bytes = max(0, self.pending_bytes - nbytes)

            engine = BackupEngine(client=client, keys=keys, archive_id=config.archive_id, state=state,
                                  workers=max(1, self.policy.cpu_threads), on_progress=progress)
            summary = engine.run(roots, scanned)
        except BaseException:
            self.watcher.mark_dirty()
            raise
        finally:
            self._in_backup = False
            state.close()
            self.pending_bytes = 0
        self.state = "idle"
        self.last_result = {"status": "completed_with_errors" if summary.errors else "completed",
                            "finished_at": _now(), "files_changed": summary.files_changed + summary.files_deleted,
                            "bytes_sent": summary.bytes_sent, "error": "; ".join(summary.errors[:3])[:2000]}
        log.info("backup %s (%s walk): %d files scanned, %d changed, %d deleted, %d excluded, %d bytes sent in %.1fs",
                 self.last_result["status"], "full" if full else "change", summary.files_scanned,
                 summary.files_changed, summary.files_deleted, scanned.excluded, summary.bytes_sent, summary.seconds)
        if summary.healed:
            log.info("healed %d file(s) the server found damaged: %s", len(summary.healed), ", ".join(summary.healed[:20]))
        for error in summary.errors[:20]:
            log.warning("  %s", error)

    def _deauthorized(self) -> int:
        user_key_wipe(self.config_dir)
        log.error("this device was deauthorized by an administrator: the local key was removed; stopping")
        self.stop.set()
        return EXIT_DEAUTHORIZED


def _now() -> str:
    return datetime.now(UTC).isoformat()


def service_run(config_dir: Path, options: ServiceOptions) -> int:
    return AgentService(config_dir, options).run()

"""`agent run`'s machinery: one instance per config directory, capped jittered backoff, the
change watcher, the schedule's allowed hours, and a clean stop on SIGTERM."""
import os
import signal
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from agent.config import AgentConfig, config_save
from agent.policy import Policy
from agent.runtime import Backoff, ChangeWatcher, ServiceLocked, service_lock
from agent.service import AgentService, ServiceOptions
from tests.support import PYTHON, REPO, assert_unnoticed_then_noticed, free_port, wait_until


def _config(tmp_path):
    directory = tmp_path / "agent"
    config_save(directory, AgentConfig(
        server=f"http://127.0.0.1:{free_port()}", device_id="d", device_name="n", archive_id="a", user_id="u",
        user_email="alice@a.example", organization_id="o", token="hvd_nothing"))
    return directory


def _run(config, *args, **kwargs):
    # The default selection is `~`: a home of the test's own, not whatever $HOME the runner has
    # (with HOME=/ the watches alone walked /proc for minutes).
    home = config.parent / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home)}
    return subprocess.Popen([PYTHON, "-m", "agent", "--config", str(config), "run", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kwargs)


def test_a_second_lock_on_the_same_directory_is_refused(tmp_path):
    held = service_lock(tmp_path)
    try:
        with pytest.raises(ServiceLocked, match="already running"):
            service_lock(tmp_path)
    finally:
        held.close()
    service_lock(tmp_path).close()  # released with its holder


def test_a_second_agent_run_exits_non_zero_with_a_clear_message(tmp_path):
    config = _config(tmp_path)
    held = service_lock(config)
    try:
        second = _run(config)
        _, stderr = second.communicate(timeout=30)
    finally:
        held.close()
    assert second.returncode == 5
    assert "another `agent run`" in stderr and "already running" in stderr and str(config) in stderr


def test_sigterm_stops_the_service_cleanly_while_it_retries(tmp_path):
    """The server is unreachable: the service backs off; SIGTERM ends it at once, exit 0."""
    config = _config(tmp_path)
    process = _run(config, "--poll", "1", "--max-backoff", "30")
    try:
        wait_until(lambda: "retrying in" in (config / "agent.log").read_text() if (config / "agent.log").exists()
                   else False, timeout=30, what="a failed attempt")
        stopped = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert time.monotonic() - stopped < 10
    finally:
        if process.poll() is None:
            process.kill()
    log = (config / "agent.log").read_text()
    assert "received SIGTERM: stopping" in log and log.rstrip().endswith("stopped")
    assert (config / "agent.log").stat().st_mode & 0o077 == 0


def test_backoff_doubles_is_capped_and_jittered():
    low = Backoff(base=2, cap=60, rng=lambda: 0.0)
    assert [low.failure() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    high = Backoff(base=2, cap=60, rng=lambda: 0.999999)
    assert [round(high.failure()) for _ in range(7)] == [2, 4, 8, 16, 32, 60, 60]
    high.reset()
    assert round(high.failure()) == 2
    spread = {round(Backoff(base=2, cap=60).failure(), 3) for _ in range(20)}
    assert len(spread) > 1 and all(1 <= d <= 2 for d in spread)


def test_the_watcher_notices_writes_but_not_reads_nor_ignored_paths(tmp_path):
    root = tmp_path / "home"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "file.txt").write_text("hello")
    watcher = ChangeWatcher(ignored=lambda path: path.endswith(".tmp"))
    try:
        assert watcher.watch([str(root)]) and watcher.dirty  # nothing known before the first scan
        watcher.clear()
        assert_unnoticed_then_noticed(
            watcher, lambda: ((root / "sub" / "file.txt").read_text(), (root / "junk.tmp").write_text("ignored")),
            lambda: (root / "sub" / "file.txt").write_text("changed"), what="the change to be noticed")
    finally:
        watcher.stop()


def test_a_watcher_that_cannot_cover_a_root_always_says_dirty(tmp_path):
    watcher = ChangeWatcher(ignored=lambda path: False)
    try:
        assert not watcher.watch([str(tmp_path / "not-mounted")])
        watcher.clear()
        assert watcher.dirty
    finally:
        watcher.stop()


class _SlowObserver:
    """An observer whose start takes as long as the test says: a walk of a huge selection."""
    opened = threading.Event()
    release = threading.Event()
    stopped = 0

    def schedule(self, *args, **kwargs):
        pass

    def start(self):
        self.opened.set()
        self.release.wait(10)

    def stop(self):
        type(self).stopped += 1

    def join(self, timeout=None):
        pass


def test_watches_opened_in_the_background_do_not_hold_up_the_loop(tmp_path, monkeypatch):
    monkeypatch.setattr("agent.runtime.Observer", _SlowObserver)
    watcher = ChangeWatcher(ignored=lambda path: False)
    began = time.monotonic()
    opening = watcher.watch_in_background([str(tmp_path)])
    assert time.monotonic() - began < 1 and _SlowObserver.opened.wait(5)
    watcher.clear()
    assert watcher.dirty  # not covered yet: the loop walks the selection as if there were no watcher
    watcher.stop()  # SIGTERM while the watches are still being added
    _SlowObserver.release.set()
    opening.join(5)
    assert not opening.is_alive() and _SlowObserver.stopped == 1  # the overtaken opening closed itself
    assert watcher._observer is None and watcher.dirty


def test_a_background_watch_covers_the_roots_once_open(tmp_path):
    watcher = ChangeWatcher(ignored=lambda path: False)
    try:
        watcher.watch_in_background([str(tmp_path)]).join(10)
        watcher.clear()
        assert watcher.complete and not watcher.dirty
        (tmp_path / "new.txt").write_text("x")
        wait_until(lambda: watcher.dirty, timeout=5, what="the change to be noticed")
    finally:
        watcher.stop()


def test_allowed_hours_and_days():
    policy = Policy(allowed_hours=list(range(8, 19)), allowed_days=[0, 1, 2, 3, 4])
    assert policy.allows_now(datetime(2026, 12, 1, 9, 0))  # a Tuesday morning
    assert not policy.allows_now(datetime(2026, 12, 1, 20, 0))
    assert not policy.allows_now(datetime(2026, 12, 5, 9, 0))  # a Saturday
    assert Policy().allows_now(datetime(2026, 12, 5, 3, 0))


def test_server_commands_known_and_unknown(tmp_path):
    service = AgentService(tmp_path, ServiceOptions())
    service._command({"command": "restore", "detail": {"job": "later"}})
    assert not service.backup_now.is_set()
    service._command({"command": "backup_now", "detail": {}})
    assert service.backup_now.is_set() and service.wake.is_set()


def test_the_policy_selects_the_paths_unless_given(tmp_path):
    service = AgentService(tmp_path, ServiceOptions())
    service.policy = Policy(include=["~/Documents", "/srv/data"])
    assert service.roots() == sorted([str(Path.home() / "Documents"), "/srv/data"])
    assert AgentService(tmp_path, ServiceOptions(paths=["/etc/x"])).roots() == ["/etc/x"]
    # The agent's own directory is always excluded: its cache and log change all the time.
    assert service.exclusions().covers(str(tmp_path.resolve() / "state.sqlite3"), "/")


def test_a_home_of_root_expands_to_single_slash_paths():
    """`~/Documents` under HOME=/ is /Documents: POSIX keeps a leading "//" apart, so it must not appear."""
    policy = Policy(include=["~", "~/Documents"], exclude_effective=["~/Documents/*.tmp"])
    assert policy.roots(home="/") == ["/", "/Documents"]
    assert policy.exclusions(home="/").path_patterns == ["/Documents/*.tmp"]

"""`agent run` as a real process against a real gunicorn: it backs up on its own, follows a
policy change without a restart, rides out the server being killed, and stops (key wiped) when
an administrator deauthorizes the device."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from accounts.models import Device
from accounts.services import device_deauthorize
from agent.keys import KEY_NAME, user_key_load
from agent.storage import storage_get
from archives.models import Archive, BackupRun, DeviceStatus, FileVersion
from archives.policies import policy_effective, policy_etag, policy_set
from formats.keys import derive_keys
from formats.manifests import path_id_for
from tests.conftest import PASSWORD
from tests.e2e.conftest import enroll_agent, run_agent
from tests.support import PYTHON, REPO, wait_until

pytestmark = pytest.mark.slow


def _versions(archive: Archive, keys, path: Path) -> list[FileVersion]:
    return list(FileVersion.objects.filter(archive=archive, path_id=path_id_for(keys, str(path))).order_by("id"))


def _start_service(config: Path, log: Path) -> subprocess.Popen:
    # Its stderr goes to a file: a pipe nobody reads would fill up and block the agent.
    return subprocess.Popen([PYTHON, "-m", "agent", "--config", str(config), "run", "--poll", "1", "--max-backoff", "2"],
                            cwd=REPO, env={**os.environ, "HAVEN_PASSWORD": PASSWORD}, stdout=subprocess.DEVNULL,
                            stderr=log.open("w"))


def test_agent_run_follows_policy_survives_an_outage_and_stops_when_deauthorized(
        live_servers, alice, tmp_path):
    started = time.monotonic()
    server = live_servers(workers=1)
    source = tmp_path / "home"
    source.mkdir()
    (source / "a.txt").write_text("first file")
    config = enroll_agent(server, tmp_path / "agent", alice, "laptop")
    keys = derive_keys(user_key_load(config))
    device = Device.objects.get(name="laptop")
    archive = Archive.objects.get(device=device)
    # Through the service the console and `manage.py policy` use (the command has its own tests).
    policy_set(organization=alice.organization, device=device, actor_label="test",
               changes={"include": [str(source)], "interval_seconds": 1})

    stderr = tmp_path / "agent-stderr.log"
    agent = _start_service(config, stderr)
    try:
        # 1. It backs up on its own, without being told which paths: the policy selects them.
        wait_until(lambda: _versions(archive, keys, source / "a.txt"), timeout=20, what="the first backup")

        # One service per config directory.
        second = run_agent(config, "run", check=False, timeout=20)
        assert second.returncode == 5 and "already running" in second.stderr, second.stderr

        # Idle: with nothing changed, a 1 s schedule does no further walk (watchdog saw nothing).
        time.sleep(2)
        assert BackupRun.objects.filter(archive=archive).count() == 1

        # 2. A new exclusion reaches the running agent (status poll -> ETag -> policy refetch).
        policy_set(organization=alice.organization, device=device, actor_label="test",
                   changes={"exclude": ["*.secret", "a.txt"]})
        etag = policy_etag(policy_effective(device=device))
        wait_until(lambda: DeviceStatus.objects.filter(device=device, policy_etag=etag).exists(), timeout=15,
                   what="the agent to report the new policy")
        (source / "b.secret").write_text("never backed up")
        (source / "c.txt").write_text("backed up under the new policy")
        wait_until(lambda: _versions(archive, keys, source / "c.txt"), timeout=20, what="a backup after the change")
        assert _versions(archive, keys, source / "b.secret") == []
        # a.txt is excluded now: it keeps its version and gets no deletion marker.
        assert [v.deleted for v in _versions(archive, keys, source / "a.txt")] == [False]

        # 3. The server dies (kill -9) and comes back: the agent backs up again after.
        server.kill()
        (source / "d.txt").write_text("written while the server was down")
        time.sleep(3)
        assert agent.poll() is None, stderr.read_text()
        server.start()
        wait_until(lambda: _versions(archive, keys, source / "d.txt"), timeout=30, what="a backup after the outage")

        # `agent status` shows the effective policy.
        status = run_agent(config, "status").stdout
        assert "effective policy" in status and "*.secret" in status and str(source) in status

        # 4. Deauthorized: the agent wipes its key and stops.
        device_deauthorize(device=device, actor=alice)
        assert agent.wait(timeout=20) == 3
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    log = stderr.read_text()
    assert "deauthorized" in log, log
    assert storage_get(config, KEY_NAME) is None
    assert "backup completed" in (config / "agent.log").read_text()
    assert time.monotonic() - started < 60, time.monotonic() - started


def test_sigterm_during_a_throttled_backup_stops_at_once_and_the_next_run_resumes(live_servers, alice, tmp_path):
    server = live_servers(workers=2)  # one worker would be busy receiving the slow upload
    source = tmp_path / "home"
    source.mkdir()
    (source / "big.bin").write_bytes(os.urandom(6 * 1024 * 1024))
    config = enroll_agent(server, tmp_path / "agent", alice, "laptop")
    keys = derive_keys(user_key_load(config))
    device = Device.objects.get(name="laptop")
    archive = Archive.objects.get(device=device)
    # 1 MB/s whether the user is at the machine or not: the 6 MiB upload takes ~6 s.
    policy_set(organization=alice.organization, device=device, actor_label="test",
               changes={"include": [str(source)], "bandwidth_active": 1_000_000, "bandwidth_away": 1_000_000})

    stderr = tmp_path / "agent-stderr.log"
    agent = _start_service(config, stderr)
    try:
        wait_until(lambda: BackupRun.objects.filter(archive=archive).exists(), timeout=30, what="the backup to start")
        time.sleep(1.5)
        signalled = time.monotonic()
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=15) == 0, stderr.read_text()
        assert time.monotonic() - signalled < 5, "the service did not abandon the upload"
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert BackupRun.objects.get(archive=archive).status == "interrupted"
    assert _versions(archive, keys, source / "big.bin") == []

    agent = _start_service(config, tmp_path / "agent-stderr-2.log")
    try:
        wait_until(lambda: BackupRun.objects.filter(archive=archive, status="completed").exists(), timeout=40,
                   what="the resumed backup")
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=15) == 0
    assert len(_versions(archive, keys, source / "big.bin")) == 1

"""File activity end to end: a real agent process watching real folders, a real gunicorn that is
stopped, killed and started again, PostgreSQL counted back."""
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from accounts.models import Device
from activity.models import FileEvent
from agent.activity.queue import QUEUE_FILE, queued_event_ids
from archives.policies import policy_set
from tests.conftest import PASSWORD
from tests.e2e.conftest import enroll_agent
from tests.support import PYTHON, REPO, wait_until

pytestmark = pytest.mark.slow


def _start(config: Path, log: Path, *args: str) -> subprocess.Popen:
    # stderr to a file: a pipe nobody reads would fill up and block the agent.
    return subprocess.Popen([PYTHON, "-m", "agent", "--config", str(config), *args], cwd=REPO,
                            env={**os.environ, "HAVEN_PASSWORD": PASSWORD}, stdout=subprocess.DEVNULL,
                            stderr=log.open("w"))


def _stop(agent: subprocess.Popen, log: Path) -> None:
    if agent.poll() is None:
        agent.terminate()
        try:
            assert agent.wait(timeout=30) == 0, log.read_text()[-3000:]
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()


def _watching(log: Path) -> bool:
    return "activity: watching" in log.read_text()


def test_server_down_during_a_burst_of_10000_events_every_event_arrives_exactly_once(live_servers, alice, tmp_path):
    server = live_servers(workers=1)
    home, media = tmp_path / "home", tmp_path / "media"
    home.mkdir()
    media.mkdir()
    config = enroll_agent(server, tmp_path / "agent", alice, "laptop")
    device = Device.objects.get(name="laptop")
    log = tmp_path / "watch.log"
    agent = _start(config, log, "watch", str(home), "--removable-root", str(media), "--cloud-root", str(tmp_path / "none"),
                   "--batch-seconds", "1", "--batch-events", "1000", "--max-backoff", "2")
    try:
        wait_until(lambda: _watching(log), timeout=30, what="the watcher to start")
        (home / "before.txt").write_text("delivered while the server is up")
        wait_until(lambda: FileEvent.objects.filter(device=device).exists(), timeout=30, what="a first event")

        server.stop()
        burst = home / "burst"
        burst.mkdir()
        for index in range(10_000):
            (burst / f"f{index:05d}.txt").write_text(f"file {index}")
            if index % 500 == 499:
                time.sleep(0.2)  # paced: this tests the agent's queue, not the kernel's inotify queue
        queue_file = config / QUEUE_FILE
        wait_until(lambda: len(queued_event_ids(queue_file)) >= 10_000, timeout=180, interval=1,
                   what="the burst to be queued on disk")
        time.sleep(3)  # nothing more comes
        queued = queued_event_ids(queue_file)
        assert len(queued) == len(set(queued)) == 10_000
        assert "server unavailable" in log.read_text()

        # Back, killed mid-delivery (answers lost), back again.
        server.start()
        wait_until(lambda: FileEvent.objects.filter(device=device, path__startswith=str(burst)).exists(),
                   timeout=60, what="delivery to begin")
        server.kill()
        time.sleep(2)
        server.start()
        wait_until(lambda: FileEvent.objects.filter(device=device, path__startswith=str(burst)).count() >= 10_000,
                   timeout=180, interval=1, what="every queued event to arrive")
        wait_until(lambda: not queued_event_ids(queue_file), timeout=30, what="the queue to empty")
    finally:
        _stop(agent, log)
    stored = list(FileEvent.objects.filter(device=device, path__startswith=str(burst)).values_list("event_id", "path"))
    assert len(stored) == 10_000
    assert {str(event_id) for event_id, _ in stored} == set(queued)
    assert len({path for _, path in stored}) == 10_000
    assert FileEvent.objects.filter(device=device).count() == 10_001
    assert set(FileEvent.objects.filter(device=device).values_list("user_id", "organization_id").distinct()) == {
        (alice.id, alice.organization_id)}


def test_agent_run_reports_a_copy_to_removable_media_and_a_burst_of_encryption(live_servers, alice, tmp_path):
    server = live_servers(workers=1)
    home, usb = tmp_path / "home", tmp_path / "media" / "alice" / "KINGSTON"
    home.mkdir()
    usb.mkdir(parents=True)
    config = enroll_agent(server, tmp_path / "agent", alice, "laptop")
    device = Device.objects.get(name="laptop")
    policy_set(organization=alice.organization, device=device, actor_label="test",
               changes={"include": [str(home)], "interval_seconds": 3600})
    secret = home / "customers.xlsx"
    secret.write_bytes(b"name,email,card\n" + b"alice,alice@example.com,4111\n" * 5000)
    reports = [home / f"report-{index:02d}.docx" for index in range(15)]
    for path in reports:
        path.write_text("The quarterly numbers, in plain words. " * 400)

    log = tmp_path / "run.log"
    agent = _start(config, log, "run", "--poll", "1", "--removable-root", str(tmp_path / "media"),
                   "--cloud-root", str(tmp_path / "none"), "--batch-seconds", "1", "--mass-threshold", "10")
    try:
        wait_until(lambda: _watching(log), timeout=30, what="the watcher to start")
        # Seen once in plain text, so the entropy jump is measured against what the file was.
        for path in reports:
            path.write_text("The quarterly numbers, revised. " * 400)
        wait_until(lambda: FileEvent.objects.filter(device=device, event_type="modified").count() >= 15, timeout=30,
                   what="the plain-text edits")
        shutil.copy(secret, usb / "customers.xlsx")
        for path in reports:  # ransomware: every file rewritten as ciphertext within seconds
            path.write_bytes(os.urandom(80_000))
        wait_until(lambda: FileEvent.objects.filter(device=device, event_type="modified").count() >= 30, timeout=30,
                   what="the rewrites")
        wait_until(lambda: FileEvent.objects.filter(device=device, path=str(usb / "customers.xlsx")).exists(),
                   timeout=30, what="the copy")
    finally:
        _stop(agent, log)
    copied = FileEvent.objects.get(device=device, path=str(usb / "customers.xlsx"))
    assert copied.event_type == "created" and copied.vector == "removable_media"
    assert copied.category == "spreadsheet" and copied.size == secret.stat().st_size
    import hashlib
    assert copied.sha256 == hashlib.sha256(secret.read_bytes()).hexdigest()
    assert copied.user_id == alice.id
    edits = FileEvent.objects.filter(device=device, event_type="modified").order_by("occurred_at", "id")
    plain, rewrites = list(edits)[:15], list(edits)[15:]
    assert all(e.vector == "" and e.entropy < 5 for e in plain)
    assert len(rewrites) == 15 and all(e.entropy > 7.9 for e in rewrites)
    # The 10th encryption-looking rewrite within the minute on is a mass encryption.
    assert sum(e.vector == "mass_encryption" for e in rewrites) == 6
    assert {e.path for e in rewrites if e.vector == "mass_encryption"} <= {str(p) for p in reports}

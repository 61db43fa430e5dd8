"""Push restores end to end (DESIGN §6, issue 10 item 4): real gunicorn, a real Celery worker on
the `keys` queue, OpenBao, and agents as processes.

- Alice (an administrator) pushes her laptop's archive to Bob's laptop, where `agent run` is
  running: the files arrive byte for byte, the keystore audit has one access for the job, and
  Bob's config directory holds no copy of Alice's key.
- Alice pushes the same archive to her own second device: it restores with its own key and the
  keystore is not touched.
- The agent library against the live server refuses a tampered and a truncated stream, and
  places nothing.
"""
import os
import subprocess
import threading
from pathlib import Path

import pytest
from django.conf import settings

from accounts.models import Device
from agent.client import ApiClient
from agent.config import config_load
from agent.keys import user_key_load
from agent.push import PushRunner
from agent.storage import _load, storage_get
from archives.models import Archive, RestoreJob
from archives.policies import policy_set
from archives.push_restores import push_restore_request
from archives.restores import restore_results_dir
from keystore.models import KeyAccess
from tests.archives.test_web_restore import LATIN1, _write
from tests.conftest import PASSWORD
from tests.e2e.conftest import enroll_agent, restored, run_agent, tree_state
from tests.e2e.test_key_never_leaks import assert_no_key
from tests.support import PYTHON, REPO, VENV_BIN, child_pids, stop_process, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def keys_worker(haven_env):
    assert os.environ["CELERY_BROKER_URL"].startswith("redis://")
    worker = subprocess.Popen([str(VENV_BIN / "celery"), "-A", "config", "worker", "-Q", "keys", "--concurrency", "1",
                               "--max-tasks-per-child", "1", "--loglevel", "WARNING", "-n",
                               f"keys-push-{os.getpid()}@%h"], cwd=REPO, env=haven_env)
    try:
        wait_until(lambda: child_pids(worker.pid), timeout=60, what="the worker's child process")
        yield worker
    finally:
        stop_process(worker)


def _service(config: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-m", "agent", "--config", str(config), "run", "--poll", "1", "--max-backoff", "2"],
                            cwd=REPO, env={**os.environ, "HAVEN_PASSWORD": PASSWORD}, stdout=subprocess.DEVNULL,
                            stderr=log.open("w"))


def _finished(job: RestoreJob) -> RestoreJob | None:
    job.refresh_from_db()
    return job if job.status in (RestoreJob.Status.DONE, RestoreJob.Status.FAILED) else None


def _source(root: Path) -> Path:
    _write(root / "docs" / "report.txt", b"QUARTERLY REPORT " * 6000)
    _write(root / "docs" / "sub" / "notes.md", b"# notes\n" * 50, mode=0o600)
    _write(root / "big.bin", os.urandom(3 * 1024 * 1024 + 17))  # several stream chunks
    _write(root / "empty.txt", b"")
    _write(root / "run.sh", b"#!/bin/sh\necho hi\n", mode=0o755)
    _write(root / "naïve café ☕.txt", "ünïcödé".encode())
    _write(root / "docs" / LATIN1, b"a name that is not UTF-8")
    return root


def _config_holds_no_key(config: Path, key: bytes) -> None:
    """Not in any file (raw, base64 or hex), and no entry of the encrypted local store is it."""
    for path in config.rglob("*"):
        if path.is_file():
            assert_no_key(path.read_bytes(), key, f"the target's {path.name}")
    for name in _load(config):
        value = storage_get(config, name)
        assert value != key and key not in value, f"the target's store entry {name!r} is the source user's key"


def _policy(device: Device, home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    policy_set(organization=device.organization, device=device, actor_label="test", changes={"include": [str(home)]})


def test_a_push_restore_to_another_users_device_and_to_the_same_users_device(
        live_server_haven, keys_worker, alice, bob, tmp_path):
    server = live_server_haven
    source = _source(tmp_path / "alice-home")
    alice_config = enroll_agent(server, tmp_path / "alice-agent", alice, "alice-laptop")
    run_agent(alice_config, "backup", str(source))
    archive = Archive.objects.get(device__name="alice-laptop")
    alice_key = user_key_load(alice_config)

    bob_config = enroll_agent(server, tmp_path / "bob-agent", bob, "bob-laptop")
    desk_config = enroll_agent(server, tmp_path / "desk-agent", alice, "alice-desktop")
    bob_device, desk = Device.objects.get(name="bob-laptop"), Device.objects.get(name="alice-desktop")
    _policy(bob_device, tmp_path / "bob-home")
    _policy(desk, tmp_path / "desk-home")
    bob_agent = _service(bob_config, tmp_path / "bob-agent.log")
    desk_agent = _service(desk_config, tmp_path / "desk-agent.log")
    try:
        # 1. Another user's device: re-encrypted to Bob's agent's one-time key.
        before = KeyAccess.objects.filter(purpose=KeyAccess.Purpose.PUSH_RESTORE).count()
        to_bob = push_restore_request(actor=alice, archive=archive, target_device=bob_device,
                                      target_path=str(tmp_path / "pushed-to-bob"))
        assert to_bob.push.mode == "stream"
        to_bob = wait_until(lambda: _finished(to_bob), timeout=180, what="the push restore to Bob")
        assert to_bob.status == "done", (to_bob.error, (tmp_path / "bob-agent.log").read_text()[-3000:])
        assert tree_state(restored(tmp_path / "pushed-to-bob", source)) == tree_state(source)
        assert (to_bob.files_done, to_bob.bytes_done) == (7, sum(p.stat().st_size for p in source.rglob("*")
                                                                  if p.is_file()))
        accesses = list(KeyAccess.objects.filter(job=str(to_bob.uuid)).order_by("seq"))
        assert [(a.purpose, a.outcome, a.subject_id, a.actor_id) for a in accesses] == [
            ("push_restore", "started", alice.pk, alice.pk), ("push_restore", "succeeded", alice.pk, alice.pk)]
        assert KeyAccess.objects.filter(purpose=KeyAccess.Purpose.PUSH_RESTORE).count() == before + 2
        _config_holds_no_key(bob_config, alice_key)
        assert user_key_load(bob_config) != alice_key  # Bob's agent keeps Bob's own key
        assert to_bob.result_key == "" and not list(restore_results_dir().rglob("*.push"))  # the stream is gone
        assert not list(Path(settings.PACK_DIR).rglob("*.push"))  # from the pack storage too
        # Nothing readable by the staging name is left in the target folder.
        assert not [p for p in (tmp_path / "pushed-to-bob").iterdir() if p.name.startswith(".haven-push")]

        # 2. The same user's other device: its own key, no keystore access at all.
        to_desk = push_restore_request(actor=alice, archive=archive, target_device=desk,
                                       target_path=str(tmp_path / "pushed-to-desk"), paths=[str(source / "docs")])
        assert to_desk.push.mode == "own_key"
        to_desk = wait_until(lambda: _finished(to_desk), timeout=120, what="the push restore to the desktop")
        assert to_desk.status == "done", (to_desk.error, (tmp_path / "desk-agent.log").read_text()[-3000:])
        wanted = {k: v for k, v in tree_state(source).items() if k.startswith("docs/")}
        assert tree_state(restored(tmp_path / "pushed-to-desk", source)) == wanted
        assert not KeyAccess.objects.filter(job=str(to_desk.uuid)).exists()
        assert bob_agent.poll() is None and desk_agent.poll() is None
    finally:
        stop_process(bob_agent)
        stop_process(desk_agent)


@pytest.mark.parametrize("damage", ["tamper", "truncate"])
def test_the_agent_refuses_a_tampered_or_truncated_stream(live_server_haven, keys_worker, alice, bob, tmp_path,
                                                          damage, monkeypatch):
    server = live_server_haven
    source = tmp_path / "alice-home"
    _write(source / "a.txt", b"first file " * 1000)
    _write(source / "b.bin", os.urandom(2 * 1024 * 1024))
    alice_config = enroll_agent(server, tmp_path / "alice-agent", alice, "alice-laptop")
    run_agent(alice_config, "backup", str(source))
    bob_config = enroll_agent(server, tmp_path / "bob-agent", bob, "bob-laptop")
    job = push_restore_request(actor=alice, archive=Archive.objects.get(user=alice),
                               target_device=Device.objects.get(name="bob-laptop"), target_path=str(tmp_path / "dest"))

    # The agent's own code (agent/push.py) against the live server; the stream is damaged at rest
    # on the server once the worker wrote it, before the agent downloads it.
    ready = PushRunner._wait_ready

    def damaged(self, client, job_id):
        current = ready(self, client, job_id)
        job.refresh_from_db()
        path = Path(server.env["HAVEN_PACK_DIR"]) / job.result_key  # the stream at rest on the pack storage
        data = bytearray(path.read_bytes())
        if damage == "tamper":
            data[len(data) // 2] ^= 0x01
        else:
            data = data[:len(data) - 1000]
        path.write_bytes(bytes(data))
        return current

    monkeypatch.setattr(PushRunner, "_wait_ready", damaged)
    config = config_load(bob_config)
    client = ApiClient(config.server, token=config.token)
    runner = PushRunner(bob_config, threading.Event(), keys=lambda: None)
    [listed] = client.request("GET", "devices/me/push-restores").json()["results"]
    assert runner.run(client, listed) is False
    job.refresh_from_db()
    assert job.status == "failed"
    assert ("authentication" if damage == "tamper" else "ends") in job.error, job.error
    assert [p.name for p in (tmp_path / "dest").iterdir()] == []  # nothing placed, staging removed

"""The embedded default of `make run`: SQLite, filesystem broker, web + worker + beat and a local
OpenBao keystore, no services.

Runs the real `manage.py serve` in a fresh data directory with no DATABASE_URL or broker set,
then enrolls an agent through its CLI and proves a worker consumes tasks sent by a producer and
by beat.
"""
import os
import sqlite3
import subprocess

import pytest

from tests.conftest import PASSWORD
from tests.support import PYTHON, REPO, agent, embedded_env, free_port, http_ready, manage, stop_process, wait_until

pytestmark = pytest.mark.slow


def test_the_embedded_default_serves_enrolls_and_runs_tasks(tmp_path):
    env = embedded_env(tmp_path / "var", HAVEN_HEARTBEAT_SECONDS="1", HAVEN_PASSWORD=PASSWORD,
                       HAVEN_KEYSTORE_PORT=str(free_port()))
    manage("migrate", "--noinput", env=env)
    first = manage("bootstrap", env=env)
    assert "admin@haven.local" in first.stdout
    assert "first password is in" in manage("bootstrap", env=env).stdout
    assert (tmp_path / "var" / "haven.sqlite3").exists()
    assert oct((tmp_path / "var" / "initial-admin-password").stat().st_mode & 0o777) == "0o600"

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen([PYTHON, "manage.py", "serve", "--bind", f"127.0.0.1:{port}", "--web-workers", "1"],
                                  cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ready(f"{base}/login/"), timeout=60, what="the console")

        config_dir = tmp_path / "agent"
        enrolled = agent("--config", str(config_dir), "enroll", "--server", base, "--user", "admin@haven.local",
                         "--device-name", "smoke-box", env={**os.environ, "HAVEN_PASSWORD": PASSWORD})
        assert enrolled.returncode == 0, enrolled.stderr
        assert "escrowed" in enrolled.stdout  # the embedded keystore holds the new user's key
        status = agent("--config", str(config_dir), "status")
        assert status.returncode == 0 and "authorized" in status.stdout and "smoke-box" in status.stdout
        assert oct((config_dir / "agent.json").stat().st_mode & 0o777) == "0o600"

        # A file in the queue that is not a message (kombu's own producer leaves one visible, empty,
        # before it writes it) is set aside: the worker, and serve, go on (config/filesystem_broker.py).
        (tmp_path / "var" / "celery" / "queue" / "1_left-empty.celery.msg").write_bytes(b"")
        ping = manage("pingworker", "--wait", "60", env=env, check=False)
        assert ping.returncode == 0 and "worker: ok" in ping.stdout, log.read_text()[-4000:]
        assert server.poll() is None, log.read_text()[-4000:]

        def beat_ran():
            with sqlite3.connect(tmp_path / "var" / "haven.sqlite3") as db:
                return db.execute("select count(*) from accounts_workerheartbeat where source='beat'").fetchone()[0]

        wait_until(beat_ran, timeout=60, what="a heartbeat sent by beat")
        assert (tmp_path / "var" / "celery" / "processed" / "unreadable" / "1_left-empty.celery.msg").exists()
    finally:
        stop_process(server)
    assert server.returncode is not None

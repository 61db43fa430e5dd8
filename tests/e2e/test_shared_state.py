"""Two web servers agree (DESIGN §10, docs/operations.md "What is shared between processes").

Two gunicorn servers, each with its own HAVEN_DATA_DIR (as on two machines), one database and one
pack storage: a sign-in throttle counts guesses made on either, and a web restore asked for on one,
written by a key worker with a third data folder, downloads from the other.
"""
import io
import os
import subprocess
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from accounts.api_clients import api_client_create
from archives.models import Archive, RestoreJob
from tests.archives.test_web_restore import _write
from tests.conftest import PASSWORD
from tests.e2e.conftest import LiveServer, enroll_agent, haven_env, run_agent  # noqa: F401
from tests.support import REPO, VENV_BIN, child_pids, stop_process, wait_until


@pytest.fixture
def two_machines(haven_env, tmp_path):  # noqa: F811
    """Two servers that share only what production machines share: PostgreSQL, Redis, the pack storage."""
    servers = []
    for name in ("a", "b"):
        env = {**haven_env, "HAVEN_DATA_DIR": str(tmp_path / f"machine-{name}"),
               "HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT_ADDRESS": "4"}
        (tmp_path / f"faults-{name}").mkdir()
        servers.append(LiveServer(env=env, fault_dir=tmp_path / f"faults-{name}", workers=2).start())
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def _enroll(server: LiveServer, email: str, password: str) -> int:
    return httpx.post(f"{server.url}/api/v1/enroll", json={"email": email, "password": password,
                                                          "device_name": "laptop"}, timeout=30).status_code


@pytest.mark.slow
def test_a_sign_in_throttle_counts_guesses_made_on_either_server(two_machines, alice):
    first, second = two_machines
    for server in (first, second, first, second):  # four failures, two on each: neither alone reached 4
        assert _enroll(server, alice.email, "wrong password!") == 401
    assert _enroll(first, alice.email, PASSWORD) == 429
    assert _enroll(second, alice.email, PASSWORD) == 429


@pytest.mark.slow
def test_a_web_restore_asked_for_on_one_server_downloads_from_the_other(two_machines, haven_env, alice, org_a,  # noqa: F811
                                                                        tmp_path):
    first, second = two_machines
    worker_env = {**haven_env, "HAVEN_DATA_DIR": str(tmp_path / "machine-keys")}
    worker = subprocess.Popen([str(VENV_BIN / "celery"), "-A", "config", "worker", "-Q", "keys", "--concurrency", "1",
                               "--max-tasks-per-child", "1", "--loglevel", "WARNING", "-n",
                               f"keys-shared-{os.getpid()}@%h"], cwd=REPO, env=worker_env)
    try:
        wait_until(lambda: child_pids(worker.pid), timeout=60, what="the worker's child process")
        source = tmp_path / "home"
        _write(source / "docs" / "report.txt", b"QUARTERLY REPORT " * 6000)
        _write(source / "big.bin", os.urandom(3 * 1024 * 1024 + 17))  # several download chunks
        config = enroll_agent(first, tmp_path / "agent", alice, "laptop")
        run_agent(config, "backup", str(source))
        archive = Archive.objects.get(user=alice)
        _, key = api_client_create(organization=org_a, name="SOAR", scopes=["restores:write"], created_by=alice)
        headers = {"Authorization": f"Bearer {key}"}

        created = httpx.post(f"{first.url}/api/v1/public/restores", json={"archive": str(archive.uuid)},
                             headers=headers, timeout=60)
        assert created.status_code == 201, created.text
        restore_id = created.json()["id"]
        deadline, status = time.monotonic() + 180, {}
        while time.monotonic() < deadline:
            status = httpx.get(f"{second.url}/api/v1/public/restores/{restore_id}", headers=headers, timeout=60).json()
            if status["status"] in ("done", "failed"):
                break
            time.sleep(0.5)
        assert status["status"] == "done", status

        download = httpx.get(f"{second.url}/api/v1/public/restores/{restore_id}/download", headers=headers,
                             timeout=60)
        assert download.status_code == 200, download.text
        assert int(download.headers["content-length"]) == len(download.content)
        with zipfile.ZipFile(io.BytesIO(download.content)) as unpacked:
            files = {name: unpacked.read(name) for name in unpacked.namelist()}
        assert files == {str(path).lstrip("/"): path.read_bytes() for path in source.rglob("*") if path.is_file()}
        job = RestoreJob.objects.get(uuid=restore_id)
        assert job.result_key.startswith("restore-results/") and job.result_size == len(download.content)
        for machine in ("machine-a", "machine-b", "machine-keys"):  # no machine holds it on its own disk
            assert not [p for p in (tmp_path / machine).rglob("*") if p.suffix in (".zip", ".tmp")], machine
        assert (Path(haven_env["HAVEN_PACK_DIR"]) / job.result_key).is_file()
    finally:
        stop_process(worker)

"""A restore through the public API, end to end: a real agent backs up through a live gunicorn;
an integration's key asks for the restore over HTTP; a real worker on the `keys` queue (through
Redis, one task per child) writes the zip; the same key follows the job and downloads the zip,
which holds the source files byte for byte under their absolute paths."""
import io
import os
import subprocess
import time
import zipfile

import httpx
import pytest

from accounts.api_clients import api_client_create
from accounts.models import AuditEvent
from archives.models import Archive, RestoreJob
from keystore.models import KeyAccess
from tests.archives.test_web_restore import LATIN1, _files, _write
from tests.e2e.conftest import (  # noqa: F401 - the live server fixtures are used here
    enroll_agent,
    haven_env,
    live_server_haven,
    live_servers,
    run_agent,
)
from tests.support import REPO, VENV_BIN, child_pids, stop_process, wait_until


def _zip_bytes(data: bytes) -> dict[bytes, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {(i.filename.encode("utf-8") if i.flag_bits & 0x800 else i.filename.encode("cp437")): archive.read(i)
                for i in archive.infolist()}


@pytest.fixture
def keys_worker(haven_env):  # noqa: F811
    assert os.environ["CELERY_BROKER_URL"].startswith("redis://")
    worker = subprocess.Popen([str(VENV_BIN / "celery"), "-A", "config", "worker", "-Q", "keys", "--concurrency", "1",
                               "--max-tasks-per-child", "1", "--loglevel", "WARNING", "-n",
                               f"keys-public-{os.getpid()}@%h"], cwd=REPO, env=haven_env)
    try:
        wait_until(lambda: child_pids(worker.pid), timeout=60, what="the worker's child process")
        yield worker
    finally:
        stop_process(worker)


@pytest.mark.slow
def test_an_integration_restores_and_downloads_through_the_public_api(live_server_haven, keys_worker,  # noqa: F811
                                                                      alice, org_a, tmp_path, settings):
    source = tmp_path / "home"
    _write(source / "docs" / "report.txt", b"QUARTERLY REPORT " * 6000)
    _write(source / "docs" / "sub" / "notes.md", b"# notes\n" * 50, mode=0o600)
    _write(source / "big.bin", os.urandom(9 * 1024 * 1024))
    _write(source / "naïve café ☕.txt", "ünïcödé".encode())
    _write(source / "docs" / LATIN1, b"a name that is not UTF-8")  # reached through its folder: JSON
    # cannot carry a name that is not UTF-8
    _write(source / "other" / "skip.txt", b"not asked for")
    config = enroll_agent(live_server_haven, tmp_path / "agent", alice, "laptop")
    run_agent(config, "backup", str(source))
    archive = Archive.objects.get(user=alice)

    client, key = api_client_create(organization=org_a, name="SOAR", scopes=["devices:read", "restores:write"],
                                    created_by=alice)
    _, other_key = api_client_create(organization=org_a, name="other", scopes=["restores:write"], created_by=alice)
    api = httpx.Client(base_url=live_server_haven.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    devices = api.get("/api/v1/public/devices").json()["results"]
    assert [(d["name"], d["user"], d["archive"]) for d in devices] == [("laptop", alice.email, str(archive.uuid))]
    assert devices[0]["last_complete_backup"] is not None

    wanted = [str(source / "docs") + "/", str(source / "big.bin"), str(source / "naïve café ☕.txt")]
    created = api.post("/api/v1/public/restores", json={"archive": devices[0]["archive"], "paths": wanted})
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "queued"
    restore_id = created.json()["id"]

    deadline, status = time.monotonic() + 180, {}
    while time.monotonic() < deadline:
        status = api.get(f"/api/v1/public/restores/{restore_id}").json()
        assert status["status"] in ("queued", "running", "done"), status
        if status["status"] == "done":
            break
        time.sleep(0.5)
    assert status["status"] == "done", status
    progress = status["progress"]
    assert progress["files_done"] == progress["files_total"] == 5
    assert progress["bytes_done"] == progress["bytes_total"] > 9 * 1024 * 1024
    assert status["download_url"] == f"{live_server_haven.url}/api/v1/public/restores/{restore_id}/download"

    download = api.get(status["download_url"])
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    expected = {name: data for name, data in _files(source).items() if not name.endswith(b"other/skip.txt")}
    assert len(expected) == 5
    assert _zip_bytes(download.content) == expected

    # the download serves only the key that asked
    assert httpx.get(status["download_url"], headers={"Authorization": f"Bearer {other_key}"}).status_code == 404
    assert httpx.get(status["download_url"]).status_code == 401
    api.close()

    job = RestoreJob.objects.get(uuid=restore_id)
    assert job.requested_by == alice and job.api_request.client == client
    accesses = KeyAccess.objects.filter(job=restore_id).order_by("seq")
    assert [(a.purpose, a.outcome, a.actor_id) for a in accesses] == [("web_restore", "started", alice.pk),
                                                                      ("web_restore", "succeeded", alice.pk)]
    mine = AuditEvent.objects.filter(actor_label=client.label)
    assert set(mine.values_list("action", flat=True)) == {"api.call", "api.restore.request", "restore.download"}
    assert mine.filter(action="api.call").count() >= 4

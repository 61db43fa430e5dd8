"""Haven as deployed: agents over TLS to nginx (deploy/nginx/haven.conf, a test CA), nginx to three
gunicorn workers. A backup and a restore go through it byte for byte; the proxy's limits hold."""
import os
import re
import subprocess

import httpx
import pytest

from tests.e2e.conftest import LiveServer, restored, run_agent, tree_state
from tests.e2e.nginx import start_nginx

pytestmark = pytest.mark.slow
MiB = 1024 * 1024


@pytest.fixture
def behind_nginx(haven_env, tmp_path):
    env = {**haven_env, "HAVEN_HTTPS": "1", "HAVEN_TRUSTED_PROXIES": "127.0.0.1",
           "HAVEN_ALLOWED_HOSTS": "127.0.0.1"}
    web = LiveServer(env=env, fault_dir=tmp_path, workers=3).start()
    proxy = start_nginx(tmp_path / "nginx", [web.port])
    yield proxy
    proxy.stop()
    web.stop()


def test_backup_and_restore_through_nginx_over_tls(behind_nginx, alice, tmp_path):
    source = tmp_path / "home"
    (source / "docs").mkdir(parents=True)
    (source / "docs" / "notes.txt").write_text("through the proxy\n" * 1000)
    (source / "big.bin").write_bytes(os.urandom(12 * MiB))  # several upload batches, streamed unbuffered
    config = tmp_path / "agent"
    run_agent(config, "enroll", "--server", behind_nginx.url, "--ca-file", str(behind_nginx.ca),
              "--user", alice.email, "--device-name", "proxied")
    run_agent(config, "backup", str(source))
    destination = tmp_path / "restore"
    run_agent(config, "restore", "--to", str(destination))
    assert tree_state(restored(destination, source)) == tree_state(source)
    log = (behind_nginx.directory / "logs" / "access.log").read_text()
    assert re.search(r'"POST /api/v1/archives/[^/]+/blocks\?run=\S+ HTTP/[\d.]+" 201', log), log[-2000:]


def test_the_proxy_refuses_oversized_bodies_and_hides_metrics(behind_nginx):
    with httpx.Client(verify=str(behind_nginx.ca)) as client:
        too_big = client.post(f"{behind_nginx.url}/api/v1/enroll", content=b"x" * (66 * MiB),
                              headers={"Content-Type": "application/json"})
        assert too_big.status_code == 413
        assert client.get(f"{behind_nginx.url}/metrics").status_code == 404
        assert client.get(f"{behind_nginx.url}/healthz").json()["status"] == "ok"


def test_an_agent_refuses_a_server_its_ca_did_not_sign(behind_nginx, alice, tmp_path):
    result = run_agent(tmp_path / "agent", "enroll", "--server", behind_nginx.url, "--user", alice.email,
                       "--device-name", "no-ca", check=False)
    assert result.returncode != 0
    assert "certificate" in (result.stdout + result.stderr).lower()


def test_an_agent_trusts_the_systems_hashed_ca_directory(behind_nginx, alice, tmp_path, monkeypatch):
    """Without --ca-file the agent verifies against the system's trust store, read lazily from its
    hashed directory ($SSL_CERT_DIR here, /etc/ssl/certs on Debian): a CA installed there (a
    company's own, say) is trusted, nothing else is (the test above)."""
    trust = tmp_path / "system-certs"
    trust.mkdir()
    subject_hash = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(behind_nginx.ca)],
                                  capture_output=True, text=True, check=True).stdout.strip()
    (trust / f"{subject_hash}.0").write_bytes(behind_nginx.ca.read_bytes())
    monkeypatch.setenv("SSL_CERT_DIR", str(trust))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-bundle.pem"))
    config = tmp_path / "agent"
    run_agent(config, "enroll", "--server", behind_nginx.url, "--user", alice.email, "--device-name", "system-ca")
    source = tmp_path / "home"
    source.mkdir()
    (source / "a.txt").write_text("trusted through the system store\n")
    run_agent(config, "backup", str(source))

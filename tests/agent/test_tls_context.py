"""agent/client.py tls_context: verified TLS from --ca-file or the system's trust store."""
import ssl

from agent.client import tls_context
from tests.e2e.nginx import test_ca as make_ca


def test_a_hashed_system_directory_is_read_lazily(tmp_path, monkeypatch):
    trust = tmp_path / "certs"
    trust.mkdir()
    ca, _, _ = make_ca(tmp_path)
    (trust / "0badc0de.0").write_bytes(ca.read_bytes())
    monkeypatch.setenv("SSL_CERT_DIR", str(trust))
    context = tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 0  # nothing loaded up front


def test_without_a_hashed_directory_the_defaults_or_certifi_are_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "none.pem"))
    context = tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.cert_store_stats()["x509_ca"] > 0  # certifi's bundle, as httpx would have used


def test_a_ca_file_is_all_that_is_trusted(tmp_path):
    ca, _, _ = make_ca(tmp_path)
    context = tls_context(str(ca))
    assert context.cert_store_stats()["x509_ca"] == 1

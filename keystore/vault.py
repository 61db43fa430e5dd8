"""The Vault-API keystore engine, reached through hvac only.

Configuration uses Vault's own variable names: VAULT_ADDR, VAULT_CACERT, and one auth method —
VAULT_TOKEN, AppRole (VAULT_ROLE_ID + VAULT_SECRET_ID) or a TLS client certificate
(VAULT_CLIENT_CERT + VAULT_CLIENT_KEY, logging in to auth/cert). Without VAULT_ADDR Haven uses its
embedded OpenBao (keystore/embedded.py). Clients are created per process, after any fork.

High availability: VAULT_ADDR may list the nodes of one raft cluster, comma-separated. Haven
talks to the active node (found through each node's unauthenticated sys/health): OpenBao standbys
may answer reads from their own, slightly lagging copy, and escrow reads right after it writes.
When the node in use is unreachable, sealed, or the cluster has no active node for a moment (an
election after the active node died), the call finds the new active node and retries, for up to
HAVEN_KEYSTORE_FAILOVER_SECONDS. A single address keeps today's behaviour: fail at once.
Retrying a create-only write is safe: a write that landed before its answer was lost comes back
as KeystorePathExists, which every caller already reads and compares.
"""
import os
import threading
import time

import hvac
import requests
from django.conf import settings
from hvac import exceptions as hvac_errors

_local = threading.local()


class KeystoreUnavailable(Exception):
    """Sealed, unreachable or misconfigured: nothing was read or written; try again later.

    `node_trouble`: this node (not Haven's configuration) is the problem, so another node of the
    cluster may answer."""

    def __init__(self, reason: str, *, node_trouble: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.node_trouble = node_trouble


class KeystorePathExists(Exception):
    """A create-only write found a value already there (the policy forbids overwriting)."""


def vault_addresses() -> list[str]:
    """The configured nodes, in order (one for a single server or the embedded keystore)."""
    listed = [address.strip().rstrip("/") for address in (settings.VAULT_ADDR or "").split(",") if address.strip()]
    return listed or [f"http://127.0.0.1:{settings.HAVEN_KEYSTORE_PORT}"]


def vault_address() -> str:
    """The node this process talks to now (the first one until a failover moved on)."""
    addresses = vault_addresses()
    return addresses[getattr(_local, "node", 0) % len(addresses)]


def _embedded_token() -> str:
    path = settings.HAVEN_KEYSTORE_DIR / "haven-token"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise KeystoreUnavailable("the embedded keystore is not initialized (run `manage.py serve`)") from None


def _new_client() -> hvac.Client:
    verify = settings.VAULT_CACERT or True
    client = hvac.Client(url=vault_address(), verify=verify, timeout=10)
    if not settings.VAULT_ADDR:
        client.token = _embedded_token()
    elif settings.VAULT_TOKEN:
        client.token = settings.VAULT_TOKEN
    elif settings.VAULT_ROLE_ID:
        vault_call(lambda: client.auth.approle.login(role_id=settings.VAULT_ROLE_ID,
                                                   secret_id=settings.VAULT_SECRET_ID))
    elif settings.VAULT_CLIENT_CERT:
        client = hvac.Client(url=vault_address(), verify=verify, timeout=10,
                             cert=(settings.VAULT_CLIENT_CERT, settings.VAULT_CLIENT_KEY))
        vault_call(lambda: client.auth.cert.login())
    else:
        raise KeystoreUnavailable("VAULT_ADDR is set but no VAULT_TOKEN, AppRole or client certificate is")
    return client


def vault_client() -> hvac.Client:
    """This process's client (re-created after a fork: hvac sessions must not cross processes)."""
    cached = getattr(_local, "client", None)
    if cached is None or cached[0] != os.getpid():
        if len(vault_addresses()) > 1:
            _choose_active_node()
        _local.client = (os.getpid(), _new_client())
    return _local.client[1]


def _choose_active_node() -> None:
    """Point this process at the cluster's active node; if none is active (an election), at the
    next node after the current one, so the retry loop keeps moving."""
    addresses = vault_addresses()
    current = getattr(_local, "node", 0)
    for offset in range(len(addresses)):
        index = (current + offset) % len(addresses)
        try:
            health = hvac.Client(url=addresses[index], verify=settings.VAULT_CACERT or True, timeout=3) \
                .sys.read_health_status(method="GET", standby_ok=True, sealed_code=200, uninit_code=200)
            health = health.json() if hasattr(health, "json") else health
        except (requests.exceptions.RequestException, hvac_errors.VaultError, ValueError):
            continue
        if health.get("initialized") and not health.get("sealed") and not health.get("standby"):
            _local.node = index
            return


def vault_client_reset() -> None:
    _local.client = None
    _local.node = 0


def _next_node() -> None:
    """Leave the node in trouble; vault_client() then looks for the active node from the next one."""
    _local.node = getattr(_local, "node", 0) + 1
    _local.client = None


def with_failover(operation):
    """Run `operation(client)` through vault_call, moving across the cluster's nodes on node trouble."""
    nodes = len(vault_addresses())
    deadline = time.monotonic() + settings.HAVEN_KEYSTORE_FAILOVER_SECONDS
    attempt = 0
    while True:
        try:
            client = vault_client()
            return vault_call(lambda client=client: operation(client))
        except KeystoreUnavailable as error:
            if nodes == 1 or not error.node_trouble or time.monotonic() >= deadline:
                raise
            attempt += 1
            _next_node()
            if attempt % nodes == 0:  # every node tried once: give the cluster a moment to elect
                time.sleep(min(0.25 * 2 ** (attempt // nodes), 2.0))


def vault_call(call):
    """Run a Vault call, turning every way the keystore can be unavailable into one error."""
    try:
        return call()
    except hvac_errors.VaultDown:
        raise KeystoreUnavailable("the keystore is sealed", node_trouble=True) from None
    except requests.exceptions.SSLError:  # before ConnectionError, its base class
        raise KeystoreUnavailable("the keystore's TLS certificate is not trusted (check VAULT_CACERT)") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
        raise KeystoreUnavailable("the keystore is unreachable", node_trouble=True) from None
    except hvac_errors.Unauthorized:
        raise KeystoreUnavailable("Haven's keystore credentials were refused") from None
    except (hvac_errors.InternalServerError, hvac_errors.BadGateway, hvac_errors.UnexpectedError) as error:
        # A raft cluster between leaders answers 500 ("no active node") until one is elected.
        raise KeystoreUnavailable(f"the keystore failed: {type(error).__name__}", node_trouble=True) from None


def kv_read(path: str) -> dict | None:
    """Read one KV v1 secret under secret/ (None if absent)."""
    try:
        return with_failover(lambda client: client.secrets.kv.v1.read_secret(path=path, mount_point="secret"))["data"]
    except hvac_errors.InvalidPath:
        return None


def kv_create(path: str, data: dict) -> None:
    """Write a new KV v1 secret. Haven's policy grants `create`, not `update`: if the path
    exists the keystore answers 403, reported as KeystorePathExists."""
    try:
        with_failover(lambda client: client.secrets.kv.v1.create_or_update_secret(path=path, secret=data,
                                                                                  mount_point="secret"))
    except hvac_errors.Forbidden:
        if kv_read(path) is not None:
            raise KeystorePathExists(path) from None
        raise KeystoreUnavailable("the keystore refused the write (check Haven's Vault policy)") from None


def kv_list(path: str) -> list[str]:
    try:
        return with_failover(lambda client: client.secrets.kv.v1.list_secrets(path=path,
                                                                            mount_point="secret"))["data"]["keys"]
    except hvac_errors.InvalidPath:
        return []


def keystore_status() -> str:
    """unsealed, sealed, uninitialized or unreachable — without credentials (sys/health).
    A cluster is unsealed when any of its nodes is (that node answers Haven's calls)."""
    states = [_node_status(address) for address in vault_addresses()]
    for state in ("unsealed", "sealed", "uninitialized"):
        if state in states:
            return state
    return "unreachable"


def _node_status(address: str) -> str:
    client = hvac.Client(url=address, verify=settings.VAULT_CACERT or True, timeout=5)
    try:
        # Ask for 200 in every state, so the state is read from the body instead of raised.
        body = client.sys.read_health_status(method="GET", standby_ok=True, sealed_code=200, uninit_code=200)
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, requests.exceptions.SSLError):
        return "unreachable"
    body = body.json() if hasattr(body, "json") else body
    if not body.get("initialized"):
        return "uninitialized"
    return "sealed" if body.get("sealed") else "unsealed"

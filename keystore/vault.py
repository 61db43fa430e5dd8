"""The Vault-API keystore engine, reached through hvac only.

Configuration uses Vault's own variable names: VAULT_ADDR, VAULT_CACERT, and one auth method —
VAULT_TOKEN, AppRole (VAULT_ROLE_ID + VAULT_SECRET_ID) or a TLS client certificate
(VAULT_CLIENT_CERT + VAULT_CLIENT_KEY, logging in to auth/cert). Without VAULT_ADDR Haven uses its
embedded OpenBao (keystore/embedded.py). Clients are created per process, after any fork.
"""
import os
import threading

import hvac
import requests
from django.conf import settings
from hvac import exceptions as hvac_errors

_local = threading.local()


class KeystoreUnavailable(Exception):
    """Sealed, unreachable or misconfigured: nothing was read or written; try again later."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class KeystorePathExists(Exception):
    """A create-only write found a value already there (the policy forbids overwriting)."""


def vault_address() -> str:
    return settings.VAULT_ADDR or f"http://127.0.0.1:{settings.HAVEN_KEYSTORE_PORT}"


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
        _local.client = (os.getpid(), _new_client())
    return _local.client[1]


def vault_client_reset() -> None:
    _local.client = None


def vault_call(call):
    """Run a Vault call, turning every way the keystore can be unavailable into one error."""
    try:
        return call()
    except hvac_errors.VaultDown:
        raise KeystoreUnavailable("the keystore is sealed") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
        raise KeystoreUnavailable("the keystore is unreachable") from None
    except requests.exceptions.SSLError:
        raise KeystoreUnavailable("the keystore's TLS certificate is not trusted (check VAULT_CACERT)") from None
    except hvac_errors.Unauthorized:
        raise KeystoreUnavailable("Haven's keystore credentials were refused") from None
    except (hvac_errors.InternalServerError, hvac_errors.BadGateway, hvac_errors.UnexpectedError) as error:
        raise KeystoreUnavailable(f"the keystore failed: {type(error).__name__}") from None


def kv_read(path: str) -> dict | None:
    """Read one KV v1 secret under secret/ (None if absent)."""
    client = vault_client()
    try:
        return vault_call(lambda: client.secrets.kv.v1.read_secret(path=path, mount_point="secret"))["data"]
    except hvac_errors.InvalidPath:
        return None


def kv_create(path: str, data: dict) -> None:
    """Write a new KV v1 secret. Haven's policy grants `create`, not `update`: if the path
    exists the keystore answers 403, reported as KeystorePathExists."""
    client = vault_client()
    try:
        vault_call(lambda: client.secrets.kv.v1.create_or_update_secret(path=path, secret=data, mount_point="secret"))
    except hvac_errors.Forbidden:
        if kv_read(path) is not None:
            raise KeystorePathExists(path) from None
        raise KeystoreUnavailable("the keystore refused the write (check Haven's Vault policy)") from None


def kv_list(path: str) -> list[str]:
    client = vault_client()
    try:
        return vault_call(lambda: client.secrets.kv.v1.list_secrets(path=path, mount_point="secret"))["data"]["keys"]
    except hvac_errors.InvalidPath:
        return []


def keystore_status() -> str:
    """unsealed, sealed, uninitialized or unreachable — without credentials (sys/health)."""
    client = hvac.Client(url=vault_address(), verify=settings.VAULT_CACERT or True, timeout=5)
    try:
        # Ask for 200 in every state, so the state is read from the body instead of raised.
        body = client.sys.read_health_status(method="GET", standby_ok=True, sealed_code=200, uninit_code=200)
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, requests.exceptions.SSLError):
        return "unreachable"
    body = body.json() if hasattr(body, "json") else body
    if not body.get("initialized"):
        return "uninitialized"
    return "sealed" if body.get("sealed") else "unsealed"

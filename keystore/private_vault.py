"""An organization's own Vault / OpenBao ("private keystore"), reached with TLS certificate auth.

The org admin uploads the Vault address, the CA bundle that signed the Vault server's TLS
certificate, and a PKCS12 client certificate (see `docs/private-keystore.md`). Haven logs in with
`auth/cert`, gets a short-lived token, and logs in again when it runs out: there is no long-lived
secret to leak other than the certificate itself. Keys live at KV v1 `<mount>/haven/<org>/<user>`;
Haven's policy there is `create` + `read` only, so a key, once escrowed, can never be replaced or
removed through Haven, and `create_key` turns Vault's bare 403 on an existing key into `KeyExists`.

Plain Python + hvac: no Django. Create sessions after fork (hvac/requests hold sockets) and use one
session per thread.
"""
from __future__ import annotations

import re
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import hvac
import hvac.exceptions
import requests

from keystore.pkcs12 import ClientIdentity, PrivateFile, client_identity, tls_client_files

RELOGIN_MARGIN_SECONDS = 30.0
KEY_PREFIX = "haven"

T = TypeVar("T")


@dataclass
class PrivateVaultConfig:
    """Where the organization's Vault is and how Haven logs in to it.

    `cert_role` names the `auth/cert/certs/<name>` entry to log in with; Haven's policy lets it
    manage only `haven-*` entries (certificate renewal creates `haven-<date>`), hence the default.
    """

    address: str
    ca_pem: bytes = field(repr=False)
    identity: ClientIdentity
    mount: str = "secret"
    cert_role: str = "haven-initial"
    auth_mount: str = "cert"
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.address.lower().startswith("https://"):
            raise ValueError(f"the keystore address must start with https:// (TLS is required): {self.address!r}")


# --- errors -------------------------------------------------------------------------------------

class PrivateVaultError(Exception):
    """The private keystore cannot do what Haven asked. Messages are fit for an org admin's eyes."""


class WrongCA(PrivateVaultError):
    """The server's TLS certificate does not verify against the uploaded CA bundle."""


class LoginRefused(PrivateVaultError):
    """Cert auth refused the client certificate (unknown, expired, revoked entry, wrong entry name)."""


class Unreachable(PrivateVaultError):
    """No answer: DNS, firewall, server down, timeout, or a TLS handshake that is not about trust."""


class Sealed(PrivateVaultError):
    """The server answers but is sealed (or uninitialized, or in maintenance): retry later."""


class PermissionDenied(PrivateVaultError):
    """A live token was refused: the customer's policy does not grant this operation."""


class KeyExists(PrivateVaultError):
    """A key is already escrowed at this path; Haven's policy (rightly) refuses to overwrite it."""


def _translate(exc: Exception, config: PrivateVaultConfig, *, login: bool) -> PrivateVaultError | None:
    """Map a requests/hvac exception to the keystore error an administrator can act on."""
    where = config.address
    if isinstance(exc, requests.exceptions.SSLError):
        reason = _ssl_reason(exc)
        if "verify failed" in reason.lower():
            return WrongCA(f"The TLS certificate of {where} is not trusted by the uploaded CA bundle ({reason}).")
        return Unreachable(f"The TLS handshake with {where} failed ({reason}).")
    if isinstance(exc, requests.exceptions.RequestException):
        return Unreachable(f"{where} cannot be reached ({type(exc).__name__}).")
    if isinstance(exc, hvac.exceptions.VaultDown):
        return Sealed(f"{where} is sealed or in maintenance ({exc}).")
    if isinstance(exc, hvac.exceptions.VaultNotInitialized):
        return Sealed(f"{where} is not initialized.")
    if login and _is_refusal(exc):
        return LoginRefused(f"{where} refused the client certificate for auth/{config.auth_mount}/certs/"
                            f"{config.cert_role} ({_vault_message(exc)}).")
    if isinstance(exc, hvac.exceptions.VaultError):
        return PrivateVaultError(f"{where} answered an error: {_vault_message(exc)}")
    return None


def _is_refusal(exc: Exception) -> bool:
    """Cert auth says "no": 400 for an unknown certificate or entry, 500 (!) for an expired one."""
    if isinstance(exc, (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest, hvac.exceptions.Unauthorized)):
        return True
    return isinstance(exc, hvac.exceptions.InternalServerError) and "certificate" in str(exc)


def _ssl_reason(exc: Exception) -> str:
    match = re.search(r"\[SSL[^\]]*\][^()']*", str(exc))
    return match.group(0).strip() if match else type(exc).__name__


def _vault_message(exc: Exception) -> str:
    errors = getattr(exc, "errors", None) or [str(exc)]
    return "; ".join(" ".join(str(e).replace("1 error occurred:", "").replace("*", "").split()) for e in errors)


def _call_translated(operation: Callable[[], T], config: PrivateVaultConfig, *, login: bool = False) -> T:
    """Run a Vault request; raise keystore errors, except `Forbidden`, which callers interpret."""
    try:
        return operation()
    except Exception as exc:  # noqa: BLE001 - re-raised as is when it is not a Vault/transport error
        if isinstance(exc, hvac.exceptions.Forbidden) and not login:
            raise
        translated = _translate(exc, config, login=login)
        if translated is None:
            raise
        raise translated from exc


# --- login --------------------------------------------------------------------------------------

class _Login(NamedTuple):
    client: hvac.Client
    auth: Mapping[str, Any]
    ca_file: PrivateFile


def _login(config: PrivateVaultConfig) -> _Login:
    """Log in with cert auth on a fresh hvac client.

    The client certificate is needed for the login request only: the key is exposed to OpenSSL
    through `tls_client_files` for that one request, then the connection that presented it is
    dropped, and later requests carry just the token. The CA bundle, public, stays in a private
    file for the client's lifetime because requests re-reads it for every new connection.
    """
    ca_file = PrivateFile(config.ca_pem, name="haven-vault-ca")
    client = hvac.Client(url=config.address, verify=ca_file.path, timeout=config.timeout)
    weakref.finalize(client, ca_file.close)
    try:
        with tls_client_files(config.identity) as (cert_path, key_path):
            # hvac's Cert.login: `cert_pem`/`key_pem` must be *paths* (PEM text crashes it), and
            # `cacert` must stay unset (a path is rejected as "not PEM"): it uses the client's verify.
            response = _call_translated(
                lambda: client.auth.cert.login(name=config.cert_role, cert_pem=cert_path, key_pem=key_path,
                                               mount_point=config.auth_mount),
                config, login=True)
    except BaseException:
        client.adapter.close()
        ca_file.close()
        raise
    client.adapter.close()  # closes pooled connections (incl. the one with the client cert); reusable
    return _Login(client, response["auth"], ca_file)


def private_vault_login(config: PrivateVaultConfig) -> hvac.Client:
    """Log in to the private keystore and return an hvac client holding a fresh token.

    The token is short-lived (the customer's `token_ttl`); prefer `PrivateVaultSession`, which logs
    in again by itself. Raises `WrongCA`, `LoginRefused`, `Unreachable`, `Sealed`.
    """
    return _login(config).client


# --- session ------------------------------------------------------------------------------------

class PrivateVaultSession:
    """A lazily logged-in connection to the private keystore that survives token expiry.

    Before each request it logs in again if the token is within `relogin_margin` seconds of expiry
    (at most half the token's lifetime, so a 60 s token is used for 30 s). If Vault still answers
    403 it checks whether the token itself died (revoked, clock skew): if so it logs in and retries
    the request once; if the token is alive, the 403 is the policy speaking (`PermissionDenied`).
    """

    def __init__(self, config: PrivateVaultConfig, *, relogin_margin: float = RELOGIN_MARGIN_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.logins = 0
        self._margin = relogin_margin
        self._clock = clock
        self._login: _Login | None = None
        self._lease = 0.0
        self._expires_at: float | None = None

    # lifecycle

    def login(self) -> hvac.Client:
        """Log in now (dropping any previous token) and return the client."""
        self.close()
        self._login = _login(self.config)
        self.logins += 1
        self._lease = float(self._login.auth.get("lease_duration") or 0)
        self._set_remaining(self._lease)
        return self._login.client

    def close(self) -> None:
        """Forget the token and free the client's connections and CA file."""
        if self._login is not None:
            self._login.client.adapter.close()
            self._login.ca_file.close()
            self._login = None

    def __enter__(self) -> PrivateVaultSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # token lifetime

    def _set_remaining(self, seconds: float) -> None:
        self._expires_at = self._clock() + seconds if seconds > 0 else None  # 0: a token that never expires

    def _expiring(self) -> bool:
        if self._expires_at is None:
            return False
        return self._clock() >= self._expires_at - min(self._margin, self._lease / 2)

    def _client(self) -> hvac.Client:
        if self._login is None or self._expiring():
            return self.login()
        return self._login.client

    def _token_alive(self, client: hvac.Client) -> bool:
        try:
            data = _call_translated(client.auth.token.lookup_self, self.config)["data"]
        except hvac.exceptions.Forbidden:
            return False
        self._set_remaining(float(data.get("ttl") or 0))
        return True

    # requests

    def call(self, operation: Callable[[hvac.Client], T], *, what: str = "the request") -> T:
        """Run `operation(client)` with a live token; retry once after logging in again if it died."""
        for attempt in (1, 2):
            client = self._client() if attempt == 1 else self.login()
            try:
                return _call_translated(lambda client=client: operation(client), self.config)
            except hvac.exceptions.Forbidden as exc:
                if attempt == 2 or self._token_alive(client):
                    raise PermissionDenied(f"{self.config.address} refused {what}: permission denied "
                                           f"by its policy.") from exc
        raise AssertionError("unreachable")

    def token_ttl(self) -> int:
        """Seconds the current token has left (logging in first if needed), from `lookup-self`."""
        data = self.call(lambda client: client.auth.token.lookup_self(), what="the token lookup")["data"]
        ttl = int(data.get("ttl") or 0)
        self._set_remaining(ttl)
        return ttl

    def read_key(self, path: str) -> dict | None:
        """The secret at `<mount>/<path>`, or None if nothing is escrowed there."""
        path = _checked_key_path(path)

        def read(client: hvac.Client) -> dict | None:
            try:
                return client.secrets.kv.v1.read_secret(path=path, mount_point=self.config.mount)["data"]
            except hvac.exceptions.InvalidPath:
                return None

        return self.call(read, what=f"reading {self.config.mount}/{path}")

    def create_key(self, path: str, data: Mapping[str, Any]) -> None:
        """Escrow a new key at `<mount>/<path>`; raise `KeyExists` if one is already there.

        Vault answers a bare 403 both for "this policy has no `update`" and for "no `create` here";
        reading the path (which the policy allows) tells the two apart.
        """
        path = _checked_key_path(path)
        try:
            # method="POST": without it hvac first *reads* the path to pick POST or PUT. Vault
            # decides create vs update by existence either way.
            self.call(lambda client: client.secrets.kv.v1.create_or_update_secret(
                path=path, secret=dict(data), method="POST", mount_point=self.config.mount),
                what=f"writing {self.config.mount}/{path}")
        except PermissionDenied:
            if self.read_key(path) is not None:
                raise KeyExists(f"A key is already escrowed at {self.config.mount}/{path}; "
                                f"it is never overwritten.") from None
            raise


def key_path(organization_uuid: uuid.UUID | str, user_uuid: uuid.UUID | str) -> str:
    """`haven/<org uuid>/<user uuid>`: where a user's key lives under the KV mount."""
    return f"{KEY_PREFIX}/{uuid.UUID(str(organization_uuid))}/{uuid.UUID(str(user_uuid))}"


_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+")


def _checked_key_path(path: str) -> str:
    """Refuse paths that could step outside `haven/` (`..`, empty segments, odd characters)."""
    segments = path.split("/")
    if segments[0] != KEY_PREFIX or len(segments) < 2 or \
            any(not _SEGMENT.fullmatch(s) or s in {".", ".."} for s in segments):
        raise ValueError(f"not a key path under {KEY_PREFIX}/: {path!r}")
    return path


# --- certificate renewal ------------------------------------------------------------------------

_ENTRY_NAME = re.compile(r"[A-Za-z0-9_-]+")


def issue_client_certificate(session: PrivateVaultSession, *, pki_mount: str = "pki_int",
                             role: str = "haven-client", common_name: str, ttl: str = "2160h") -> ClientIdentity:
    """Issue a new client certificate from the customer's PKI (policy: `update` on the issue path)."""
    response = session.call(lambda client: client.secrets.pki.generate_certificate(
        name=role, common_name=common_name, mount_point=pki_mount,
        extra_params={"ttl": ttl, "format": "pem", "private_key_format": "pkcs8"}),
        what=f"issuing a certificate from {pki_mount}/issue/{role}")
    data = response["data"]
    chain = data.get("ca_chain") or [data["issuing_ca"]]
    return client_identity(data["certificate"], data["private_key"], "\n".join(chain) + "\n")


def cert_auth_register(session: PrivateVaultSession, name: str, certificate_pem: bytes | str,
                       policies: Sequence[str], ttl: str | int) -> None:
    """Register `certificate_pem` as the login entry `auth/<auth mount>/certs/<name>`.

    Sends only the parameters Haven's policy allows (`allowed_parameters`), with `token_policies`
    as a comma-separated *string*: Vault matches a JSON list against the allowed values as a whole
    and refuses it, and hvac's `create_ca_certificate_role` sends every optional field, so it would
    be refused too.
    """
    _check_entry_name(name)
    certificate = certificate_pem.decode() if isinstance(certificate_pem, bytes) else certificate_pem
    data = {"certificate": certificate, "display_name": name, "token_policies": ",".join(policies),
            "token_ttl": ttl}
    session.call(lambda client: client.write_data(f"auth/{session.config.auth_mount}/certs/{name}", data=data),
                 what=f"registering auth/{session.config.auth_mount}/certs/{name}")


def cert_auth_delete(session: PrivateVaultSession, name: str) -> None:
    """Remove the login entry `auth/<auth mount>/certs/<name>` (the certificate it pinned stops working)."""
    _check_entry_name(name)
    session.call(lambda client: client.auth.cert.delete_certificate_role(name, mount_point=session.config.auth_mount),
                 what=f"deleting auth/{session.config.auth_mount}/certs/{name}")


def _check_entry_name(name: str) -> None:
    if not _ENTRY_NAME.fullmatch(name):
        raise ValueError(f"not a cert auth entry name: {name!r}")


# --- health -------------------------------------------------------------------------------------

def private_vault_health(address: str, ca_pem: bytes, *, timeout: float = 5.0) -> str:
    """unsealed, sealed, uninitialized, unreachable or untrusted (wrong CA) — `sys/health`, no login.

    Asks for 200 in every state so the state is read from the body instead of being raised.
    """
    with PrivateFile(ca_pem, name="haven-vault-ca") as ca_file:
        client = hvac.Client(url=address, verify=ca_file.path, timeout=timeout)
        try:
            body = client.sys.read_health_status(method="GET", standby_ok=True, sealed_code=200, uninit_code=200)
        except requests.exceptions.SSLError as exc:
            return "untrusted" if "verify failed" in _ssl_reason(exc).lower() else "unreachable"
        except (requests.exceptions.RequestException, hvac.exceptions.VaultError):
            return "unreachable"
        finally:
            client.adapter.close()
    body = body.json() if hasattr(body, "json") else body
    if not body.get("initialized"):
        return "uninitialized"
    return "sealed" if body.get("sealed") else "unsealed"

"""Where a key lives: the Haven-managed keystore or an organization's private one.

Both answer the same two calls — read one key, create one key — so escrow, retrieval and
migration never care which it is. Private keystore sessions are cached per process (and rebuilt
after a fork, or when the organization changes its settings).
"""
import os
from typing import Protocol

from django.conf import settings

from keystore.models import PrivateKeystore, UserKey
from keystore.pkcs12 import Pkcs12Error, pkcs12_load
from keystore.private_vault import KeyExists, PrivateVaultConfig, PrivateVaultError, PrivateVaultSession
from keystore.sealing import private_keystore_owner, unseal
from keystore.vault import KeystorePathExists, KeystoreUnavailable, kv_create, kv_read

HAVEN, PRIVATE = UserKey.Location.HAVEN, UserKey.Location.PRIVATE


class KeystoreEngine(Protocol):
    name: str

    def read(self, path: str) -> dict | None: ...

    def create(self, path: str, data: dict) -> None: ...


class HavenEngine:
    name = HAVEN

    def read(self, path: str) -> dict | None:
        return kv_read(path)

    def create(self, path: str, data: dict) -> None:
        kv_create(path, data)


def private_vault_config(keystore: PrivateKeystore) -> PrivateVaultConfig:
    owner = private_keystore_owner(keystore)
    try:
        identity = pkcs12_load(unseal("pkcs12", keystore.pkcs12_sealed, owner=owner),
                               unseal("pkcs12-password", keystore.password_sealed, owner=owner).decode())
    except (Pkcs12Error, ValueError) as error:  # ValueError: sealed for another row, or another storage key
        raise KeystoreUnavailable(f"the private keystore's client certificate is unusable: {error}") from None
    return PrivateVaultConfig(address=keystore.address, ca_pem=keystore.ca_pem.encode(), identity=identity,
                              cert_role=keystore.cert_role)


class PrivateEngine:
    name = PRIVATE

    def __init__(self, session: PrivateVaultSession):
        self.session = session

    def _guarded(self, call):
        try:
            return call()
        except KeyExists:
            raise KeystorePathExists("exists") from None
        except PrivateVaultError as error:
            raise KeystoreUnavailable(f"the organization's keystore: {error}") from None

    def read(self, path: str) -> dict | None:
        return self._guarded(lambda: self.session.read_key(path))

    def create(self, path: str, data: dict) -> None:
        self._guarded(lambda: self.session.create_key(path, data))


_sessions: dict[tuple, PrivateVaultSession] = {}


def private_session(keystore: PrivateKeystore) -> PrivateVaultSession:
    cache_key = (os.getpid(), keystore.pk, keystore.updated_at.isoformat(), keystore.cert_role)
    session = _sessions.get(cache_key)
    if session is None:
        _sessions.clear()
        session = _sessions[cache_key] = PrivateVaultSession(private_vault_config(keystore))
    return session


def engine_named(organization, name: str) -> KeystoreEngine:
    if name == HAVEN:
        return HavenEngine()
    keystore = PrivateKeystore.objects.filter(organization=organization).first()
    if keystore is None:
        raise KeystoreUnavailable("the organization has no private keystore configured")
    return PrivateEngine(private_session(keystore))


def engine_for_new_keys(organization) -> KeystoreEngine:
    in_use = PrivateKeystore.objects.filter(organization=organization, in_use=True).exists()
    return engine_named(organization, PRIVATE if in_use else HAVEN)


def privileged_haven_token() -> str:
    """The audited privileged path (migration clean-up, deletion): a separate token and policy."""
    if settings.VAULT_PRIVILEGED_TOKEN:
        return settings.VAULT_PRIVILEGED_TOKEN
    path = settings.HAVEN_KEYSTORE_DIR / "privileged-token"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise KeystoreUnavailable("no privileged keystore token is configured (VAULT_PRIVILEGED_TOKEN)") from None

"""Secrets Haven must keep in its database (a private keystore's PKCS12 and password), sealed with
AES-256-GCM under a key derived from HAVEN_STORAGE_KEY.

The storage key lives outside the data folder (an environment variable, or HAVEN_STORAGE_KEY_FILE
outside it), so a copy of the data folder — the database and `secret_key` side by side — opens
nothing. Production requires it; only the embedded default (SQLite, or DEBUG) falls back to the
Django secret key, with a loud warning.

Format v2: `HVS2 | nonce (12) | ciphertext+tag`, associated data = purpose, table, organization
uuid and row uuid, so a sealed value copied into another column, row or organization does not
open. v1 (`nonce | ciphertext`, associated data = purpose only) is still read; `keystore reseal`
(or the next save) rewrites it as v2. An installation-wide secret (the SAML SP key,
console/saml/sp_keys.py) names the nil uuid as its organization.
"""
import logging
import os
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from keystore.vault import KeystoreUnavailable

logger = logging.getLogger(__name__)
MAGIC_V2 = b"HVS2"
MIN_STORAGE_KEY_CHARS = 32
_warned = False


class StorageKeyMissing(KeystoreUnavailable):
    """Production without a usable HAVEN_STORAGE_KEY: nothing is sealed or unsealed."""


@dataclass(frozen=True)
class SealedIn:
    """The row a sealed value belongs to, bound into its associated data."""

    table: str
    organization: uuid.UUID
    row: uuid.UUID

    def associated_data(self, purpose: str) -> bytes:
        return "\0".join(("haven/v2/sealed", purpose, self.table, str(self.organization), str(self.row))).encode()


def private_keystore_owner(keystore) -> SealedIn:
    return SealedIn(table="keystore.privatekeystore", organization=keystore.organization.uuid, row=keystore.uuid)


SP_KEY_PURPOSE = "saml-sp-key"
INSTALLATION = uuid.UUID(int=0)  # the SAML SP key pair is the installation's, no one organization's


def sp_key_owner(row) -> SealedIn:
    """The SAML SP key row (accounts.SamlServiceProviderKey) its sealed private key belongs to."""
    return SealedIn(table="accounts.samlserviceproviderkey", organization=INSTALLATION, row=row.uuid)


def embedded_default() -> bool:
    """The no-environment installation (SQLite under var/) or a DEBUG one: not production."""
    return settings.DEBUG or settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"


def storage_key_problem() -> str:
    """Why sealing would be refused (production) or is weak (embedded default); "" when all is well."""
    configured = settings.HAVEN_STORAGE_KEY
    if configured and len(configured) < MIN_STORAGE_KEY_CHARS:
        return f"HAVEN_STORAGE_KEY is shorter than {MIN_STORAGE_KEY_CHARS} characters"
    if configured and configured == settings.SECRET_KEY:
        return "HAVEN_STORAGE_KEY is the secret key itself: it must be a separate secret"
    if settings.HAVEN_STORAGE_KEY_FILE and _inside_data_dir(settings.HAVEN_STORAGE_KEY_FILE):
        return "HAVEN_STORAGE_KEY_FILE lies inside the data folder, next to the database it protects"
    if configured:
        return ""
    return ("HAVEN_STORAGE_KEY is not set: secrets in the database are sealed with the secret key kept in the "
            "data folder, next to the database")


def _inside_data_dir(path) -> bool:
    data_dir = os.path.realpath(settings.DATA_DIR)
    return os.path.commonpath([data_dir, os.path.realpath(path)]) == data_dir


def _material() -> bytes:
    problem = storage_key_problem()
    if not problem:
        return settings.HAVEN_STORAGE_KEY.encode()
    if not embedded_default() or settings.HAVEN_STORAGE_KEY:
        raise StorageKeyMissing(f"{problem}; production needs HAVEN_STORAGE_KEY (at least "
                                f"{MIN_STORAGE_KEY_CHARS} characters, kept outside the data folder)")
    global _warned
    if not _warned:
        _warned = True
        logger.warning("EMBEDDED DEFAULT: %s. Whoever copies the data folder can open the private keystore's "
                       "client certificate. Set HAVEN_STORAGE_KEY outside it before production use.", problem)
    return settings.SECRET_KEY.encode()


def sealing_check() -> None:
    """Raise StorageKeyMissing now (production without a storage key) rather than half-way through a save."""
    _material()


def _v2_key(material: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"haven/v2/sealed").derive(material)


def _v1_key(material: bytes, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=f"haven/v1/sealed/{purpose}".encode()).derive(material)


def seal(purpose: str, value: bytes, *, owner: SealedIn) -> bytes:
    nonce = os.urandom(12)
    return MAGIC_V2 + nonce + AESGCM(_v2_key(_material())).encrypt(nonce, value, owner.associated_data(purpose))


def is_current(purpose: str, sealed: bytes, *, owner: SealedIn) -> bool:
    """Sealed as v2 under the storage key configured now (else `keystore reseal` rewrites it)."""
    sealed = bytes(sealed)
    return sealed.startswith(MAGIC_V2) and _try_v2(sealed, _material(), owner.associated_data(purpose)) is not None


def _try_v2(sealed: bytes, material: bytes, associated_data: bytes) -> bytes | None:
    body = sealed[len(MAGIC_V2):]
    try:
        return AESGCM(_v2_key(material)).decrypt(body[:12], body[12:], associated_data)
    except InvalidTag:
        return None


def _legacy_materials() -> list[bytes]:
    """v1 used HAVEN_STORAGE_KEY when set, else the secret key; an operator may have set one since."""
    materials = [settings.HAVEN_STORAGE_KEY.encode()] if settings.HAVEN_STORAGE_KEY else []
    return [*materials, settings.SECRET_KEY.encode()]


def unseal(purpose: str, sealed: bytes, *, owner: SealedIn) -> bytes:
    """Open a sealed value of `owner`'s row; raise ValueError if it belongs elsewhere or was altered."""
    sealed = bytes(sealed)
    current = _material()  # production without a storage key opens nothing
    if sealed.startswith(MAGIC_V2):
        # Sealed under the secret key before HAVEN_STORAGE_KEY was set opens too, until resealed.
        for material in dict.fromkeys([current, *_legacy_materials()]):
            opened = _try_v2(sealed, material, owner.associated_data(purpose))
            if opened is not None:
                return opened
    for material in _legacy_materials():  # v1 (a random nonce may start like the v2 magic: try it too)
        try:
            return AESGCM(_v1_key(material, purpose)).decrypt(sealed[:12], sealed[12:], purpose.encode())
        except InvalidTag:
            continue
    raise ValueError(f"the sealed {purpose} does not open: wrong HAVEN_STORAGE_KEY, or it belongs to another row")

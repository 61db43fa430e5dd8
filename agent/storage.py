"""Authorized storage: the agent's encrypted key-value store for secrets (the user key).

Values are encrypted at rest (AES-256-GCM, the name as associated data) with a wrapping key
derived from a random 32-byte wrapping secret and the machine's id. Where the OS has a credential
store (Secret Service, macOS Keychain, Windows Credential Manager, through `keyring`), the
wrapping secret lives there and only the name of its entry is on disk; otherwise it sits in a
separate 0600 file beside the store. What each protects against is in docs/agent-local-store.md.
The store is wiped when the server says the device was deauthorized.
"""
import base64
import json
import logging
import os
import secrets
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from agent.config import ensure_private_dir, write_private_file

STORE_FILE = "authorized-storage.json"
SECRET_FILE = "authorized-storage.secret"  # fallback: the wrapping secret itself
KEYRING_FILE = "authorized-storage.keyring"  # OS credential store: only the entry's name
KEYRING_SERVICE = "haven-agent"
MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")

log = logging.getLogger(__name__)


class StorageError(Exception):
    """The store cannot be read here (damaged, or copied from another machine)."""


def _machine_id() -> bytes:
    for path in MACHINE_ID_FILES:
        try:
            return Path(path).read_bytes().strip()
        except OSError:
            continue
    return b"no-machine-id"


def os_keyring():
    """The OS credential store as a `keyring` backend, or None where there is none worth using.

    Refused: keyring's "fail" and "null" backends (no store at all) and any file-based backend
    (keyrings.alt's plaintext or password-prompting files): a secret in a file beside the store is
    what the fallback already does, and a service cannot answer a password prompt.
    """
    try:
        import keyring
        from keyring.backends import chainer, fail, null
    except ImportError:
        return None
    backend = keyring.get_keyring()
    members = backend.backends if isinstance(backend, chainer.ChainerBackend) else [backend]
    usable = [member for member in members
              if not isinstance(member, (fail.Keyring, null.Keyring))
              and not type(member).__module__.startswith("keyrings.alt")
              and "plaintext" not in type(member).__name__.lower()]
    return usable[0] if usable else None


def _secret_from_keyring(directory: Path) -> bytes | None:
    try:
        entry = (directory / KEYRING_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    backend = os_keyring()
    if backend is None:
        raise StorageError("the wrapping secret is in the OS credential store, which is not available now "
                           "(log in to a desktop session, or unlock the keychain)")
    try:
        value = backend.get_password(KEYRING_SERVICE, entry)
    except Exception as error:  # noqa: BLE001 - keyring.errors.KeyringError and backend-specific errors
        raise StorageError(f"the OS credential store refused the wrapping secret: {type(error).__name__}") from None
    if value is None:
        raise StorageError("the wrapping secret is missing from the OS credential store")
    return base64.b64decode(value)


def _secret_create(directory: Path) -> bytes:
    secret = secrets.token_bytes(32)
    backend = os_keyring()
    if backend is not None:
        entry = f"authorized-storage/{uuid.uuid4()}"
        try:
            backend.set_password(KEYRING_SERVICE, entry, base64.b64encode(secret).decode())
        except Exception as error:  # noqa: BLE001 - a locked or refusing store: fall back, say so
            log.warning("the OS credential store refused the wrapping secret (%s); keeping it in %s",
                        type(error).__name__, directory / SECRET_FILE)
        else:
            write_private_file(directory / KEYRING_FILE, entry.encode())
            return secret
    write_private_file(directory / SECRET_FILE, secret)
    return secret


def _wrapping_key(directory: Path, *, create: bool) -> bytes | None:
    secret = _secret_from_keyring(directory)
    if secret is None:
        try:
            secret = (directory / SECRET_FILE).read_bytes()
        except FileNotFoundError:
            if not create:
                return None
            secret = _secret_create(directory)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_machine_id(),
                info=b"haven/v1/agent-authorized-storage").derive(secret)


def _load(directory: Path) -> dict[str, str]:
    try:
        return json.loads((directory / STORE_FILE).read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        raise StorageError(f"{directory / STORE_FILE} is damaged") from None


def storage_put(directory: Path, name: str, value: bytes) -> None:
    ensure_private_dir(directory)
    key = _wrapping_key(directory, create=True)
    nonce = secrets.token_bytes(12)
    entries = _load(directory)
    entries[name] = base64.b64encode(nonce + AESGCM(key).encrypt(nonce, value, name.encode())).decode()
    write_private_file(directory / STORE_FILE, json.dumps(entries).encode())


def storage_get(directory: Path, name: str) -> bytes | None:
    entries = _load(directory)
    if name not in entries:
        return None
    key = _wrapping_key(directory, create=False)
    if key is None:
        raise StorageError("the storage secret is missing")
    raw = base64.b64decode(entries[name])
    try:
        return AESGCM(key).decrypt(raw[:12], raw[12:], name.encode())
    except Exception:  # noqa: BLE001 - InvalidTag: wrong machine or tampered
        raise StorageError("the authorized storage cannot be decrypted on this machine") from None


def storage_wipe(directory: Path) -> None:
    """Remove the values and the secret that unlocks them (from the OS credential store too)."""
    try:
        entry = (directory / KEYRING_FILE).read_text().strip()
    except FileNotFoundError:
        entry = None
    backend = os_keyring() if entry else None
    if backend is not None:
        try:
            backend.delete_password(KEYRING_SERVICE, entry)
        except Exception as error:  # noqa: BLE001 - already gone, or the store refuses: wipe the rest anyway
            log.warning("could not delete the wrapping secret from the OS credential store: %s", type(error).__name__)
    for name in (STORE_FILE, SECRET_FILE, KEYRING_FILE):
        path = directory / name
        if path.exists():
            size = path.stat().st_size
            with open(path, "r+b") as handle:  # best effort: overwrite before unlinking
                handle.write(os.urandom(size))
                handle.flush()
                os.fsync(handle.fileno())
            path.unlink()

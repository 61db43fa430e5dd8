"""Authorized storage: the agent's encrypted key-value store for secrets (the user key).

Values are encrypted at rest (AES-256-GCM, the name as associated data) with a wrapping key that
is not in the same file: it is derived from a random secret in a separate 0600 file *and* the
machine's id, so a copy of the store (a backup of the config directory, say) is useless on another
machine. The store is wiped when the server says the device was deauthorized.
"""
import base64
import json
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from agent.config import ensure_private_dir, write_private_file

STORE_FILE = "authorized-storage.json"
SECRET_FILE = "authorized-storage.secret"
MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")


class StorageError(Exception):
    """The store cannot be read here (damaged, or copied from another machine)."""


def _machine_id() -> bytes:
    for path in MACHINE_ID_FILES:
        try:
            return Path(path).read_bytes().strip()
        except OSError:
            continue
    return b"no-machine-id"


def _wrapping_key(directory: Path, *, create: bool) -> bytes | None:
    path = directory / SECRET_FILE
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        if not create:
            return None
        secret = secrets.token_bytes(32)
        write_private_file(path, secret)
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
    """Remove the values and the secret that unlocks them."""
    for name in (STORE_FILE, SECRET_FILE):
        path = directory / name
        if path.exists():
            size = path.stat().st_size
            with open(path, "r+b") as handle:  # best effort: overwrite before unlinking
                handle.write(os.urandom(size))
                handle.flush()
                os.fsync(handle.fileno())
            path.unlink()

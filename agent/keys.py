"""The user key on this device: obtained at enrollment, kept in authorized storage.

First device of a user: generate the 256-bit key, escrow it through the server into the
keystore, and only when the escrow is confirmed may any block be encrypted with it. Later devices
(computer replacement): receive the escrowed key from the server (audited; the user is told).
"""
import base64
from pathlib import Path

from agent.client import ApiClient, ApiError
from agent.storage import storage_get, storage_put, storage_wipe
from formats.keys import KEY_SIZE, generate_user_key, key_id_for

KEY_NAME = "user-key"
CONFIRMED_NAME = "escrow-confirmed"


class KeyMissing(Exception):
    """No usable, escrowed user key on this device; the message says what to do."""


def user_key_setup(client: ApiClient, config_dir: Path) -> str:
    """Make sure this device holds the user's escrowed key. Returns a sentence for the user."""
    status = client.key_status()
    local = storage_get(config_dir, KEY_NAME)
    if status["key_id"] and (local is None or key_id_for(local) != status["key_id"]) and status["escrowed"]:
        answer = client.key_retrieve()
        key = base64.b64decode(answer["key"])
        if len(key) != KEY_SIZE or key_id_for(key) != status["key_id"]:
            raise KeyMissing("the server sent a key that does not match the escrowed key id")
        storage_put(config_dir, KEY_NAME, key)
        storage_put(config_dir, CONFIRMED_NAME, status["key_id"].encode())
        return "received your escrowed key (your administrator's key-access log records this)"
    if local is None:
        local = generate_user_key()
        storage_put(config_dir, KEY_NAME, local)
    key_id = key_id_for(local)
    try:
        answer = client.key_escrow(local)
    except ApiError as error:
        if error.code == "key_conflict":
            raise KeyMissing("a different key is already escrowed for your account: this device will not back "
                             "up. Contact your administrator.") from None
        raise
    # Only the server's answer confirms the escrow: if it names another key, the keystore may not
    # hold this one, and no block may be encrypted with it.
    if not answer.get("escrowed") or answer.get("key_id") != key_id:
        raise KeyMissing("the server confirmed the escrow of a different key: this device will not back up. "
                         "Contact your administrator.")
    storage_put(config_dir, CONFIRMED_NAME, key_id.encode())
    return "generated your key and escrowed it"


def user_key_load(config_dir: Path) -> bytes:
    """The key, only if its escrow was confirmed: no block is encrypted with an unescrowed key."""
    key = storage_get(config_dir, KEY_NAME)
    if key is None:
        raise KeyMissing(f"no user key on this device; run: python -m agent --config {config_dir} key-setup")
    confirmed = storage_get(config_dir, CONFIRMED_NAME)
    if confirmed is None or confirmed.decode() != key_id_for(key):
        raise KeyMissing("your key's escrow is not confirmed yet (the keystore was unavailable); run: "
                         f"python -m agent --config {config_dir} key-setup")
    return key


def user_key_wipe(config_dir: Path) -> None:
    """Deauthorized: the key must not stay on a device an administrator cut off."""
    storage_wipe(config_dir)

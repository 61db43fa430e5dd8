"""The user key on this device.

Until the keystore issue lands, the agent generates the key at enrollment and keeps it in its
private configuration directory. Everything else obtains it through `user_key_load`, the one
function the keystore will replace.
"""
from pathlib import Path

from agent.config import write_private_file
from formats.keys import KEY_SIZE, generate_user_key

KEY_FILE = "user.key"


class KeyMissing(Exception):
    """No user key on this device (never enrolled, or wiped after deauthorization)."""


def user_key_ensure(config_dir: Path) -> bytes:
    path = config_dir / KEY_FILE
    if path.exists():
        return user_key_load(config_dir)
    key = generate_user_key()
    write_private_file(path, key)
    return key


def user_key_load(config_dir: Path) -> bytes:
    try:
        key = (config_dir / KEY_FILE).read_bytes()
    except FileNotFoundError:
        raise KeyMissing(f"no user key in {config_dir}; enroll this device again") from None
    if len(key) != KEY_SIZE:
        raise KeyMissing(f"{config_dir / KEY_FILE} is damaged")
    return key


def user_key_wipe(config_dir: Path) -> None:
    """Deauthorized: the key must not stay on a device an administrator cut off."""
    (config_dir / KEY_FILE).unlink(missing_ok=True)

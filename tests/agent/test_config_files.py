"""The agent's secrets stay private: directory 0700, files 0600, written atomically."""
import json

import pytest

from agent.config import AgentConfig, config_load, config_save
from agent.keys import CONFIRMED_NAME, KEY_NAME, KeyMissing, user_key_load, user_key_wipe
from agent.storage import SECRET_FILE, STORE_FILE, StorageError, storage_get, storage_put
from formats.keys import generate_user_key, key_id_for


def _store_key(directory, key, confirmed=True):
    storage_put(directory, KEY_NAME, key)
    if confirmed:
        storage_put(directory, CONFIRMED_NAME, key_id_for(key).encode())


def test_config_and_storage_files_are_private(tmp_path):
    directory = tmp_path / "agent"
    config_save(directory, AgentConfig(server="https://h", device_id="d", device_name="n", archive_id="a",
                                       user_id="u", user_email="e", organization_id="o", token="t"))
    _store_key(directory, generate_user_key())
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    for name in ("agent.json", STORE_FILE, SECRET_FILE):
        assert oct((directory / name).stat().st_mode & 0o777) == "0o600"
    assert config_load(directory).token == "t"
    assert not list(directory.glob(".*.tmp"))


def test_the_key_is_encrypted_at_rest_with_a_key_kept_elsewhere(tmp_path):
    key = generate_user_key()
    _store_key(tmp_path, key)
    stored = (tmp_path / STORE_FILE).read_bytes()
    assert key not in stored and key.hex().encode() not in stored
    assert user_key_load(tmp_path) == key
    (tmp_path / SECRET_FILE).write_bytes(b"x" * 32)  # another machine's secret, say
    with pytest.raises(StorageError):
        storage_get(tmp_path, KEY_NAME)


def test_a_tampered_value_is_refused(tmp_path):
    _store_key(tmp_path, generate_user_key())
    entries = json.loads((tmp_path / STORE_FILE).read_text())
    entries[KEY_NAME] = entries[CONFIRMED_NAME]  # swap values between names
    (tmp_path / STORE_FILE).write_text(json.dumps(entries))
    with pytest.raises(StorageError):
        storage_get(tmp_path, KEY_NAME)


def test_an_unconfirmed_escrow_means_no_backup(tmp_path):
    _store_key(tmp_path, generate_user_key(), confirmed=False)
    with pytest.raises(KeyMissing, match="escrow is not confirmed"):
        user_key_load(tmp_path)


def test_wiping_removes_the_key_and_its_secret(tmp_path):
    _store_key(tmp_path, generate_user_key())
    user_key_wipe(tmp_path)
    assert not (tmp_path / STORE_FILE).exists() and not (tmp_path / SECRET_FILE).exists()
    with pytest.raises(KeyMissing):
        user_key_load(tmp_path)

"""The agent's secrets stay private: directory 0700, files 0600, written atomically; the wrapping
secret goes to the OS credential store where there is one."""
import base64
import json

import pytest

from agent.config import AgentConfig, config_load, config_save
from agent.keys import CONFIRMED_NAME, KEY_NAME, KeyMissing, user_key_load, user_key_wipe
from agent.storage import (
    KEYRING_FILE,
    KEYRING_SERVICE,
    SECRET_FILE,
    STORE_FILE,
    StorageError,
    storage_get,
    storage_put,
)
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


def _files_hold(directory, secret: bytes) -> bool:
    return any(secret in path.read_bytes() or base64.b64encode(secret) in path.read_bytes()
               for path in directory.iterdir() if path.is_file())


def test_with_an_os_credential_store_the_wrapping_secret_lives_there_not_on_disk(tmp_path, memory_keyring):
    key = generate_user_key()
    _store_key(tmp_path, key)
    assert not (tmp_path / SECRET_FILE).exists()
    assert oct((tmp_path / KEYRING_FILE).stat().st_mode & 0o777) == "0o600"
    [(service, entry)] = memory_keyring.entries
    assert service == KEYRING_SERVICE and (tmp_path / KEYRING_FILE).read_text() == entry
    secret = base64.b64decode(memory_keyring.entries[(service, entry)])
    assert len(secret) == 32 and not _files_hold(tmp_path, secret)
    assert user_key_load(tmp_path) == key

    # A copy of the directory alone (without the OS store's entry) opens nothing.
    del memory_keyring.entries[(service, entry)]
    with pytest.raises(StorageError, match="missing from the OS credential store"):
        storage_get(tmp_path, KEY_NAME)


def test_wiping_removes_the_secret_from_the_os_credential_store(tmp_path, memory_keyring):
    _store_key(tmp_path, generate_user_key())
    assert len(memory_keyring.entries) == 1
    user_key_wipe(tmp_path)
    assert memory_keyring.entries == {} and list(tmp_path.iterdir()) == []


def test_a_store_whose_os_credential_store_is_gone_says_so(tmp_path, memory_keyring):
    import keyring
    from keyring.backends import fail

    _store_key(tmp_path, generate_user_key())
    keyring.set_keyring(fail.Keyring())  # e.g. the agent now runs outside the desktop session
    with pytest.raises(StorageError, match="not available now"):
        storage_get(tmp_path, KEY_NAME)


def test_without_a_usable_os_store_the_secret_file_fallback_is_used(tmp_path):
    import keyring

    from tests.agent.conftest import MemoryKeyring

    class PlaintextKeyring(MemoryKeyring):  # a file-like backend is no better than the fallback
        pass

    for backend, directory in ((None, tmp_path / "none"), (PlaintextKeyring(), tmp_path / "plaintext")):
        if backend is not None:
            keyring.set_keyring(backend)
        key = generate_user_key()
        _store_key(directory, key)
        assert (directory / SECRET_FILE).exists() and not (directory / KEYRING_FILE).exists()
        assert user_key_load(directory) == key
        assert backend is None or backend.entries == {}

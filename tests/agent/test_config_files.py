"""The agent's secrets stay private: directory 0700, files 0600, written atomically."""
from agent.config import AgentConfig, config_load, config_save
from agent.keys import user_key_ensure, user_key_load, user_key_wipe


def test_config_and_key_files_are_private(tmp_path):
    directory = tmp_path / "agent"
    config_save(directory, AgentConfig(server="https://h", device_id="d", device_name="n", archive_id="a",
                                       user_id="u", user_email="e", organization_id="o", token="t"))
    key = user_key_ensure(directory)
    assert user_key_ensure(directory) == key and len(key) == 32
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    for name in ("agent.json", "user.key"):
        assert oct((directory / name).stat().st_mode & 0o777) == "0o600"
    assert config_load(directory).token == "t"
    assert not list(directory.glob(".*.tmp"))


def test_wiping_the_key_removes_it(tmp_path):
    import pytest

    from agent.keys import KeyMissing

    user_key_ensure(tmp_path)
    user_key_wipe(tmp_path)
    with pytest.raises(KeyMissing):
        user_key_load(tmp_path)

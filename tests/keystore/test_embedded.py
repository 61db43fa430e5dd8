"""The embedded keystore: a raft-backed OpenBao, initialized once with 5 shares, threshold 3."""
import pytest

from keystore.embedded import KEY_SHARES, KEY_THRESHOLD, EmbeddedKeystore, KeystoreLock, embedded_keystore_run
from tests.support import free_port

pytestmark = pytest.mark.slow


def test_three_of_five_shares_unseal_a_raft_backed_server(tmp_path):
    keystore = EmbeddedKeystore(tmp_path / "keystore", free_port())
    process = keystore.start()
    try:
        secrets = keystore.initialize()
        assert len(secrets["keys"]) == KEY_SHARES and KEY_THRESHOLD == 3
        client = keystore.client()
        assert client.sys.is_sealed()
        keystore.unseal(secrets["keys"][:2])
        assert client.sys.is_sealed(), "two shares must not unseal it"
        keystore.unseal([secrets["keys"][4]])
        assert not client.sys.is_sealed()
        assert oct(keystore.unseal_file.stat().st_mode & 0o777) == "0o600"
    finally:
        process.terminate()
        process.wait(timeout=20)
    # Restarted, it is sealed again until shares are given; any three of the five do.
    process = keystore.start()
    try:
        assert keystore.client().sys.is_sealed()
        assert keystore.unseal([secrets["keys"][1], secrets["keys"][3], secrets["keys"][4]])
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_the_embedded_keystore_is_configured_for_haven_and_owned_once(tmp_path):
    import hvac

    directory, port = tmp_path / "keystore", free_port()
    process = embedded_keystore_run(directory, port)
    try:
        assert embedded_keystore_run(directory, port) is None  # the lock holder owns it
        app = hvac.Client(url=f"http://127.0.0.1:{port}", token=(directory / "haven-token").read_text())
        app.secrets.kv.v1.create_or_update_secret(path="haven/o/u", secret={"key": "plain-secret-value"},
                                                  mount_point="secret")
        with pytest.raises(hvac.exceptions.Forbidden):
            app.secrets.kv.v1.create_or_update_secret(path="haven/o/u", secret={"key": "x"}, mount_point="secret")
        audit_log = (directory / "audit.log").read_text()
        assert "haven/o/u" in audit_log  # every request is in the keystore's own audit log
        assert "plain-secret-value" not in audit_log  # values are HMAC'd there
    finally:
        process.terminate()
        process.wait(timeout=20)
        process.haven_lock.release()
    assert KeystoreLock(directory).acquire()

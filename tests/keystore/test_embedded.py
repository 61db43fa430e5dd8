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


def _app_can_escrow(directory, port) -> None:
    import hvac

    app = hvac.Client(url=f"http://127.0.0.1:{port}", token=(directory / "haven-token").read_text())
    app.secrets.kv.v1.create_or_update_secret(path="haven/o/resumed", secret={"key": "k"}, mount_point="secret")
    assert app.secrets.kv.v1.read_secret(path="haven/o/resumed", mount_point="secret")["data"] == {"key": "k"}


def _stop(process) -> None:
    process.terminate()
    process.wait(timeout=20)
    process.haven_lock.release()


def test_an_init_that_timed_out_fails_in_one_line_and_the_next_start_initializes_again(tmp_path):
    """The reported failure: `operator init` on fresh raft storage outlasting the client's timeout.
    It ends in one clear error; whether or not OpenBao finished the initialization whose shares
    were never received, the next start gives a working keystore."""
    from keystore.embedded import EmbeddedKeystoreError

    directory, port = tmp_path / "keystore", free_port()
    with pytest.raises(EmbeddedKeystoreError, match="took longer than .* start again"):
        embedded_keystore_run(directory, port, init_timeout=0.001)
    assert KeystoreLock(directory).acquire()  # nothing left running or locked
    process = embedded_keystore_run(directory, port)
    try:
        _app_can_escrow(directory, port)
    finally:
        _stop(process)


def test_an_init_whose_shares_were_never_written_is_done_again_at_the_next_start(tmp_path):
    directory, port = tmp_path / "keystore", free_port()
    keystore = EmbeddedKeystore(directory, port)
    process = keystore.start()
    # The init completes (Haven's own wait for it: init_timeout, not one request's 10 s; CI timed
    # out here on a loaded machine), and its answer is lost with the process:
    keystore.client(timeout=keystore.init_timeout).sys.initialize(secret_shares=KEY_SHARES,
                                                                  secret_threshold=KEY_THRESHOLD)
    process.kill()  # kill -9 before the shares reach the disk
    process.wait()
    assert not keystore.unseal_file.exists()
    process = embedded_keystore_run(directory, port)
    try:
        _app_can_escrow(directory, port)
        assert list(directory.glob("raft.lost-init-*")), "the unusable storage is kept aside, not deleted"
    finally:
        _stop(process)


@pytest.mark.parametrize("configured", [False, True], ids=["before-configure", "during-configure"])
def test_a_start_killed_between_init_and_configure_is_finished_by_the_next(tmp_path, configured):
    from keystore.embedded import configure_vault

    directory, port = tmp_path / "keystore", free_port()
    keystore = EmbeddedKeystore(directory, port)
    process = keystore.start()
    secrets = keystore.initialize()
    if configured:  # mounts and policies done, Haven's tokens not yet issued
        assert keystore.unseal(secrets["keys"][:KEY_THRESHOLD])
        from keystore.embedded import _wait_active

        _wait_active(keystore)
        configure_vault(keystore.client(secrets["root_token"]))
    process.kill()
    process.wait()
    assert not (directory / "haven-token").exists()
    process = embedded_keystore_run(directory, port)
    try:
        _app_can_escrow(directory, port)
        assert not list(directory.glob("raft.lost-init-*"))  # the same keystore, resumed
        assert (directory / "privileged-token").exists()
    finally:
        _stop(process)


def test_a_keystore_that_cannot_start_stops_serve_with_one_clear_line(tmp_path):
    """`make run` with the keystore's port taken: one line naming the problem, never a traceback."""
    import socket

    from tests.support import embedded_env, manage

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        env = embedded_env(tmp_path / "var", HAVEN_KEYSTORE_PORT=str(port))
        manage("migrate", "--noinput", env=env)
        for command in (["serve", "--bind", f"127.0.0.1:{free_port()}"], ["keystore", "embedded"]):
            result = manage(*command, env=env, check=False, timeout=300)
            assert result.returncode == 1, result
            assert "Traceback" not in result.stderr, result.stderr
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and "openbao.log" in lines[0], result.stderr
    finally:
        blocker.close()


def test_shares_the_keystore_refuses_give_one_clear_error(tmp_path):
    import json

    from keystore.embedded import EmbeddedKeystoreError

    directory, port = tmp_path / "keystore", free_port()
    _stop(embedded_keystore_run(directory, port))
    unseal_file = directory / "dev-unseal.json"
    secrets = json.loads(unseal_file.read_text())
    for wrong in (["00" * 33] * KEY_SHARES, ["not a share"] * KEY_SHARES):  # well-formed, and malformed
        unseal_file.write_text(json.dumps({**secrets, "keys": wrong}))
        with pytest.raises(EmbeddedKeystoreError, match=f"unseal.*{unseal_file}"):
            embedded_keystore_run(directory, port)
        assert KeystoreLock(directory).acquire()

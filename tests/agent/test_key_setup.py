"""The agent's side of escrow: generate once, escrow before any backup, refuse on a conflict."""
import base64

import pytest

from agent.client import ApiError
from agent.keys import KeyMissing, user_key_load, user_key_setup
from formats.keys import generate_user_key, key_id_for


class FakeServer:
    def __init__(self, escrowed_key: bytes | None = None, conflict: bool = False):
        self.escrowed_key, self.conflict, self.escrow_calls = escrowed_key, conflict, 0

    def key_status(self):
        key = self.escrowed_key
        return {"key_id": key_id_for(key) if key else None, "escrowed": key is not None}

    def key_escrow(self, key):
        self.escrow_calls += 1
        if self.conflict:
            raise ApiError(409, "key_conflict", "A different key is already escrowed")
        self.escrowed_key = key
        return {"key_id": key_id_for(key), "escrowed": True}

    def key_retrieve(self):
        return {"key": base64.b64encode(self.escrowed_key).decode(), "key_id": key_id_for(self.escrowed_key)}


def test_the_first_device_generates_and_escrows(tmp_path):
    server = FakeServer()
    assert "escrowed" in user_key_setup(server, tmp_path)
    assert user_key_load(tmp_path) == server.escrowed_key


def test_a_new_device_receives_the_escrowed_key(tmp_path):
    key = generate_user_key()
    server = FakeServer(escrowed_key=key)
    assert "received" in user_key_setup(server, tmp_path)
    assert user_key_load(tmp_path) == key and server.escrow_calls == 0


def test_a_conflict_leaves_the_device_unable_to_back_up(tmp_path):
    with pytest.raises(KeyMissing, match="Contact your administrator"):
        user_key_setup(FakeServer(conflict=True), tmp_path)
    with pytest.raises(KeyMissing):
        user_key_load(tmp_path)


def test_a_failed_escrow_is_retried_with_the_same_key(tmp_path):
    class Unavailable(FakeServer):
        def key_escrow(self, key):
            self.escrow_calls += 1
            raise ApiError(503, "keystore_unavailable", "sealed")

    from agent.keys import KEY_NAME
    from agent.storage import storage_get

    down = Unavailable()
    with pytest.raises(ApiError):
        user_key_setup(down, tmp_path)
    generated_during_outage = storage_get(tmp_path, KEY_NAME)
    with pytest.raises(KeyMissing):
        user_key_load(tmp_path)
    up = FakeServer()
    user_key_setup(up, tmp_path)
    assert up.escrowed_key == generated_during_outage  # the same key, not a new one
    assert user_key_load(tmp_path) == generated_during_outage


def test_restore_refuses_a_listing_with_one_path_twice(tmp_path):
    from agent.restore import RestoreError, restore
    from formats.manifests import Manifest

    twice = [Manifest(path="/a/f", size=0, mtime_ns=0, mode=0o644, block_ids=[], block_sizes=[])] * 2
    with pytest.raises(RestoreError, match="twice"):
        restore(client=None, keys=None, archive_id="00000000-0000-0000-0000-000000000000", dest=tmp_path,
                manifests=twice)
    assert not list(tmp_path.rglob("*"))


@pytest.mark.parametrize("answer", [{"key_id": "0" * 32, "escrowed": True}, {"escrowed": True},
                                    {"key_id": None, "escrowed": False}])
def test_an_escrow_answer_naming_another_key_is_not_taken_as_confirmation(tmp_path, answer):
    """The server's answer, not the agent's hope, confirms the escrow: a device must never back up
    under a key the keystore does not hold."""
    from agent.keys import CONFIRMED_NAME, KEY_NAME
    from agent.storage import storage_get

    class OtherKeyServer(FakeServer):
        def key_escrow(self, key):
            self.escrow_calls += 1
            return answer

    with pytest.raises(KeyMissing, match="different key"):
        user_key_setup(OtherKeyServer(), tmp_path)
    assert storage_get(tmp_path, CONFIRMED_NAME) is None
    with pytest.raises(KeyMissing):
        user_key_load(tmp_path)
    kept = storage_get(tmp_path, KEY_NAME)  # kept for a retry, still unconfirmed
    server = FakeServer()
    user_key_setup(server, tmp_path)
    assert user_key_load(tmp_path) == kept == server.escrowed_key

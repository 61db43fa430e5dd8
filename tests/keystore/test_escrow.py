"""Escrow through the agent API into a real OpenBao: once, never overwritten, audited."""
import base64
import logging

import hvac
import pytest
from django.core import mail

from formats.keys import key_id_for
from keystore.models import KeyAccess, UserKey
from keystore.services import key_path
from tests.keystore.conftest import escrow


@pytest.fixture
def vault_root(vault):
    return vault["client"]


def test_the_first_device_escrows_its_key_once(vault, vault_root, enrolled, alice, fresh_key):
    device = enrolled(alice)
    response = escrow(device, fresh_key)
    assert response.status_code == 201 and response.json() == {"key_id": key_id_for(fresh_key), "escrowed": True}
    row = UserKey.objects.get(user=alice)
    assert row.state == UserKey.State.ESCROWED and row.key_id == key_id_for(fresh_key)
    stored = vault_root.secrets.kv.v1.read_secret(path=key_path(alice), mount_point="secret")["data"]
    assert base64.b64decode(stored["key"]) == fresh_key
    assert str(alice.organization.uuid) in key_path(alice) and str(alice.uuid) in key_path(alice)
    assert escrow(device, fresh_key).status_code == 201  # a retry of the same key is harmless
    outcomes = list(KeyAccess.objects.filter(subject=alice).order_by("seq").values_list("purpose", "outcome"))
    assert outcomes == [("escrow", "started"), ("escrow", "succeeded")]


def test_a_second_device_racing_with_another_key_gets_409_and_overwrites_nothing(vault, vault_root, enrolled,
                                                                                 alice, fresh_key):
    from formats.keys import generate_user_key

    first, second = enrolled(alice, "first"), enrolled(alice, "second")
    assert escrow(first, fresh_key).status_code == 201
    response = escrow(second, generate_user_key())
    assert response.status_code == 409 and response.json()["code"] == "key_conflict"
    assert "contact your administrator" in response.json()["detail"]
    stored = vault_root.secrets.kv.v1.read_secret(path=key_path(alice), mount_point="secret")["data"]
    assert base64.b64decode(stored["key"]) == fresh_key
    assert KeyAccess.objects.filter(subject=alice, outcome="refused").exists()


def test_a_key_that_does_not_match_its_id_is_refused(vault, enrolled, alice, fresh_key):
    device = enrolled(alice)
    response = device.post("/api/v1/keys/escrow", {"key": base64.b64encode(fresh_key).decode(),
                                                   "key_id": "0" * 32}, format="json")
    assert response.status_code == 400 and not UserKey.objects.exists()
    short = device.post("/api/v1/keys/escrow", {"key": base64.b64encode(b"short").decode(),
                                                "key_id": key_id_for(fresh_key)}, format="json")
    assert short.status_code == 400


def test_a_new_device_receives_the_key_audited_and_the_user_is_told(vault, enrolled, alice, fresh_key):
    escrow(enrolled(alice, "old-laptop"), fresh_key)
    new = enrolled(alice, "new-laptop")
    response = new.post("/api/v1/keys/retrieve")
    assert response.status_code == 200
    assert base64.b64decode(response.json()["key"]) == fresh_key
    retrieval = KeyAccess.objects.filter(subject=alice, purpose="device_retrieval").order_by("seq")
    assert [a.outcome for a in retrieval] == ["started", "succeeded"]
    assert new.enrollment["device_id"] in retrieval.last().job
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [alice.email]
    assert "new-laptop" in mail.outbox[0].body


def test_other_users_and_orgs_never_get_the_key(vault, enrolled, alice, bob, mallory, fresh_key):
    escrow(enrolled(alice), fresh_key)
    for outsider in (bob, mallory):
        response = enrolled(outsider).post("/api/v1/keys/retrieve")
        assert response.status_code == 404 and response.json()["code"] == "key_not_escrowed"
    assert not KeyAccess.objects.filter(subject=alice, purpose="device_retrieval").exists()


def test_haven_cannot_overwrite_list_or_delete_an_escrowed_key(vault, enrolled, alice, fresh_key):
    escrow(enrolled(alice), fresh_key)
    app = hvac.Client(url=vault["url"], token=vault["app_token"])
    with pytest.raises(hvac.exceptions.Forbidden):
        app.secrets.kv.v1.create_or_update_secret(path=key_path(alice), secret={"key": "x"}, mount_point="secret")
    with pytest.raises(hvac.exceptions.Forbidden):
        app.secrets.kv.v1.list_secrets(path=f"haven/{alice.organization.uuid}", mount_point="secret")
    with pytest.raises(hvac.exceptions.Forbidden):
        app.secrets.kv.v1.delete_secret(path=key_path(alice), mount_point="secret")


def test_the_key_never_appears_in_logs(vault, enrolled, alice, fresh_key, caplog):
    """The captured logs of this process; tests/e2e/test_key_never_leaks.py scans the server's log
    files, the Celery broker's messages and every table after a full cycle."""
    caplog.set_level(logging.DEBUG)
    escrow(enrolled(alice, "one"), fresh_key)
    enrolled(alice, "two").post("/api/v1/keys/retrieve")
    logged = caplog.text
    for form in (fresh_key.hex(), base64.b64encode(fresh_key).decode(), repr(fresh_key)):
        assert form not in logged
        assert not KeyAccess.objects.filter(detail__contains=form).exists()


def test_no_block_is_accepted_before_escrow_and_only_with_the_escrowed_key(vault, enrolled, alice, fresh_key,
                                                                          tmp_path, settings):
    import uuid

    from formats.blocks import block_encrypt, block_id_for
    from formats.frames import FRAME_BLOCK, frame_encode
    from formats.keys import derive_keys, generate_user_key

    settings.PACK_DIR = tmp_path / "packs"
    device = enrolled(alice)
    archive = device.enrollment["archive_id"]

    def batch(key):
        keys = derive_keys(key)
        block_id = block_id_for(keys, b"data")
        return frame_encode(FRAME_BLOCK, uuid.UUID(archive), block_id, block_encrypt(keys, block_id, b"data"))

    def upload(body):
        return device.post(f"/api/v1/archives/{archive}/blocks", data=body, content_type="application/octet-stream")

    early = upload(batch(fresh_key))
    assert early.status_code == 409 and early.json()["code"] == "key_not_escrowed"
    escrow(device, fresh_key)
    wrong = upload(batch(generate_user_key()))
    assert wrong.status_code == 400 and "escrowed key" in wrong.json()["detail"]
    assert upload(batch(fresh_key)).status_code == 201


def test_an_abandoned_escrow_can_be_taken_over_after_ten_minutes(vault, enrolled, alice, fresh_key):
    from datetime import timedelta

    from django.utils import timezone

    from formats.keys import generate_user_key

    abandoned = generate_user_key()
    UserKey.objects.create(organization=alice.organization, user=alice, key_id=key_id_for(abandoned))
    device = enrolled(alice)
    assert escrow(device, fresh_key).status_code == 409  # too recent: the first device may still finish
    UserKey.objects.update(created_at=timezone.now() - timedelta(minutes=11))
    assert escrow(device, fresh_key).status_code == 201
    assert UserKey.objects.get(user=alice).key_id == key_id_for(fresh_key)


def test_the_stale_escrow_check_is_an_audited_key_access(vault, enrolled, alice, fresh_key):
    from datetime import timedelta

    from django.utils import timezone

    from formats.keys import generate_user_key

    UserKey.objects.create(organization=alice.organization, user=alice, key_id=key_id_for(generate_user_key()))
    UserKey.objects.update(created_at=timezone.now() - timedelta(minutes=11))
    assert escrow(enrolled(alice), fresh_key).status_code == 201
    records = list(KeyAccess.objects.filter(subject=alice).order_by("seq").values_list("outcome", "detail"))
    assert records[0][0] == "started" and "stale pending escrow" in records[0][1]  # before the read
    assert records[1] == ("succeeded", "nothing is stored: that escrow was abandoned")  # its outcome


def test_a_stale_escrow_check_the_keystore_cannot_answer_is_recorded_as_failed(vault, enrolled, alice, fresh_key,
                                                                              settings):
    from datetime import timedelta

    from django.utils import timezone

    from formats.keys import generate_user_key
    from keystore.vault import vault_client_reset
    from tests.support import free_port

    UserKey.objects.create(organization=alice.organization, user=alice, key_id=key_id_for(generate_user_key()))
    UserKey.objects.update(created_at=timezone.now() - timedelta(minutes=11))
    device = enrolled(alice)
    settings.VAULT_ADDR = f"http://127.0.0.1:{free_port()}"
    vault_client_reset()
    assert escrow(device, fresh_key).status_code == 503
    records = list(KeyAccess.objects.filter(subject=alice).order_by("seq").values_list("outcome", "detail"))
    assert [outcome for outcome, _ in records] == ["started", "failed"]
    assert "stale pending escrow" in records[0][1] and "unreachable" in records[1][1]
    assert UserKey.objects.get(user=alice).key_id != key_id_for(fresh_key)  # nothing taken over


def test_a_device_whose_abandoned_escrow_was_taken_over_mid_write_keeps_the_row_following_the_keystore(
        vault, vault_root, alice, fresh_key):
    """Device A pauses past the timeout between claiming the row and writing its key; device B
    takes the row over; then A's write lands first. The keystore holds A's key, so the row must
    name A's key and B's own write must end in a conflict — never a row naming a key the keystore
    does not hold."""
    from datetime import timedelta

    from django.utils import timezone

    from accounts.services import device_create
    from formats.keys import generate_user_key
    from keystore.services import KeyConflict, _escrow_claim, _escrow_confirm, _escrow_write

    a, b = (device_create(owner=alice, name=name, os_name="linux", agent_version="t") for name in ("a", "b"))
    key_b = generate_user_key()
    a_row = _escrow_claim(user=alice, key_id=key_id_for(fresh_key), label="a")
    UserKey.objects.update(created_at=timezone.now() - timedelta(minutes=11))
    b_row = _escrow_claim(user=alice, key_id=key_id_for(key_b), label="b")
    assert b_row.key_id == key_id_for(key_b)  # B took it over: nothing was in the keystore yet

    location = _escrow_write(user=alice, key=fresh_key, key_id=key_id_for(fresh_key), label="a")
    row = _escrow_confirm(row=a_row, user=alice, key_id=key_id_for(fresh_key), location=location, label="a")
    assert (row.state, row.key_id) == (UserKey.State.ESCROWED, key_id_for(fresh_key))
    with pytest.raises(KeyConflict):
        _escrow_write(user=alice, key=key_b, key_id=key_id_for(key_b), label="b")
    stored = vault_root.secrets.kv.v1.read_secret(path=key_path(alice), mount_point="secret")["data"]
    assert stored["key_id"] == UserKey.objects.get(user=alice).key_id == key_id_for(fresh_key)


def test_the_org_admins_are_told_when_a_new_device_receives_a_users_key(vault, enrolled, alice, bob, fresh_key):
    escrow(enrolled(bob, "old-laptop"), fresh_key)
    assert enrolled(bob, "new-laptop").post("/api/v1/keys/retrieve").status_code == 200
    by_recipient = {tuple(message.to): message for message in mail.outbox}
    assert set(by_recipient) == {(bob.email,), (alice.email,)}  # the user, and the org's administrator
    to_admin = by_recipient[(alice.email,)]
    assert bob.email in to_admin.subject and "new-laptop" in to_admin.body
    assert base64.b64encode(fresh_key).decode() not in to_admin.body + by_recipient[(bob.email,)].body

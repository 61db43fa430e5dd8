"""A sealed or unreachable keystore: a clear 503, nothing lost, escrowed agents keep backing up."""
import uuid

from formats.blocks import block_encrypt, block_id_for
from formats.frames import FRAME_BLOCK, frame_encode
from formats.keys import derive_keys, generate_user_key
from keystore.models import UserKey
from keystore.vault import keystore_status, vault_client_reset
from tests.keystore.conftest import escrow


def _point_at(settings, server):
    settings.VAULT_ADDR = server["url"]
    settings.VAULT_TOKEN = server["app_token"]
    vault_client_reset()


def test_sealed_keystore_is_503_and_escrowed_users_still_back_up(sealable_openbao, settings, enrolled, alice, bob,
                                                                tmp_path):
    settings.PACK_DIR = tmp_path / "packs"
    _point_at(settings, sealable_openbao)
    alice_key = generate_user_key()
    alices = enrolled(alice)
    assert escrow(alices, alice_key).status_code == 201
    sealable_openbao["root"].sys.seal()
    assert keystore_status() == "sealed"

    response = escrow(enrolled(bob), generate_user_key())
    assert response.status_code == 503 and response.json()["code"] == "keystore_unavailable"
    assert "sealed" in response.json()["detail"]
    assert UserKey.objects.get(user=bob).state == UserKey.State.PENDING  # retried later, nothing lost
    assert alices.post("/api/v1/keys/retrieve").status_code == 503

    archive = alices.enrollment["archive_id"]
    keys = derive_keys(alice_key)
    block_id = block_id_for(keys, b"still backing up")
    frame = frame_encode(FRAME_BLOCK, uuid.UUID(archive), block_id, block_encrypt(keys, block_id, b"still backing up"))
    upload = alices.post(f"/api/v1/archives/{archive}/blocks", data=frame, content_type="application/octet-stream")
    assert upload.status_code == 201


def test_an_unreachable_keystore_is_503(settings, enrolled, alice):
    from tests.support import free_port

    settings.VAULT_ADDR = f"http://127.0.0.1:{free_port()}"
    settings.VAULT_TOKEN = "nothing-listens-there"
    vault_client_reset()
    assert keystore_status() == "unreachable"
    response = escrow(enrolled(alice), generate_user_key())
    assert response.status_code == 503 and "unreachable" in response.json()["detail"]
    vault_client_reset()

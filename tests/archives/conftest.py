"""Fixtures for the archive API: packs in a temporary directory, a user key, block builders."""
import base64
import uuid

import pytest

from formats.blocks import block_encrypt, block_id_for
from formats.frames import FRAME_BLOCK, frame_encode
from formats.keys import derive_keys
from formats.manifests import Manifest, manifest_encrypt, path_id_for

KEYS = derive_keys(bytes(range(32)))


@pytest.fixture(autouse=True)
def pack_dir(settings, tmp_path):
    settings.PACK_DIR = tmp_path / "packs"
    return settings.PACK_DIR


@pytest.fixture
def storage_env(pack_backend, request, settings) -> dict[str, str]:
    """What a `manage.py` child needs besides maintenance_env to use this test's pack storage:
    nothing for the folder; for "s3" (`pack_backend`) a fresh bucket, also used by this process."""
    if pack_backend == "s3":
        request.getfixturevalue("s3_pack_storage")
        return {"HAVEN_PACK_STORAGE": settings.PACK_STORAGE}
    return {}


@pytest.fixture(autouse=True)
def escrowed(db, monkeypatch):
    """These tests encrypt with KEYS; mark every user's key as escrowed under its key_id
    (the escrow itself, through the keystore, is tested in tests/keystore)."""
    from django.db.models.signals import post_save

    from accounts.models import User
    from keystore.models import UserKey

    def escrow(sender, instance, created, **kwargs):
        if created:
            UserKey.objects.create(organization=instance.organization, user=instance, key_id=KEYS.key_id,
                                   state=UserKey.State.ESCROWED)

    post_save.connect(escrow, sender=User, dispatch_uid="test-escrow")
    yield
    post_save.disconnect(sender=User, dispatch_uid="test-escrow")


def block(archive_id: str, data: bytes) -> tuple[bytes, bytes]:
    """(block id, upload frame) of one plaintext block for the archive."""
    block_id = block_id_for(KEYS, data)
    return block_id, frame_encode(FRAME_BLOCK, uuid.UUID(archive_id), block_id, block_encrypt(KEYS, block_id, data))


def version(archive_id: str, path: str, block_ids: list[bytes], sizes: list[int], deleted: bool = False) -> dict:
    version_id = uuid.uuid4()
    path_id = path_id_for(KEYS, path)
    manifest = Manifest(path=path, size=sum(sizes), mtime_ns=1, mode=0o644, block_ids=block_ids,
                        block_sizes=sizes, deleted=deleted)
    blob = manifest_encrypt(KEYS, manifest, archive_id=uuid.UUID(archive_id), path_id=path_id, version_id=version_id)
    return {"version_id": str(version_id), "path_id": path_id, "deleted": deleted,
            "block_ids": [b.hex() for b in block_ids], "manifest": base64.b64encode(blob).decode()}


def upload(client, archive_id: str, body: bytes, **extra):
    return client.post(f"/api/v1/archives/{archive_id}/blocks", data=body,
                       content_type="application/octet-stream", **extra)


def stored(client, archive_id: str, data: bytes) -> bytes:
    """The id of a block of `data`, uploaded (201) to the archive."""
    block_id, frame = block(archive_id, data)
    assert upload(client, archive_id, frame).status_code == 201
    return block_id


def commit(client, archive_id: str, versions: list[dict], run_id=None):
    return client.post(f"/api/v1/archives/{archive_id}/versions", {"run_id": run_id, "versions": versions},
                       format="json")

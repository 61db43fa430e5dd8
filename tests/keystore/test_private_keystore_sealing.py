"""The private keystore's PKCS12 and password, sealed in the database: bound to their row and
organization, under a storage key that production requires outside the data folder."""
import os
import uuid

import pytest

from keystore.engines import private_vault_config
from keystore.models import PrivateKeystore
from keystore.private_keystores import PrivateKeystoreInvalid
from tests.keystore.private_vault_fixture import private_vault_fixture  # noqa: F401 - the fixture
from tests.keystore.test_private_keystore import (  # noqa: F401 - _production_settings is an autouse fixture
    STORAGE_KEY,
    _configure,
    _escrowed_users,
    _migrate,
    _new_pkcs12,
    _production_settings,
)

pytestmark = pytest.mark.slow


# --- the sealed PKCS12 --------------------------------------------------------------------------

def test_sealed_secrets_do_not_open_in_another_organizations_row(vault, private_vault, org_a, org_b, alice, mallory):
    from keystore.vault import KeystoreUnavailable

    _configure(org_a, alice, private_vault)
    _configure(org_b, mallory, private_vault, pkcs12=_new_pkcs12(private_vault, "haven-org-b"),
               cert_role="haven-org-b")
    a, b = PrivateKeystore.objects.get(organization=org_a), PrivateKeystore.objects.get(organization=org_b)
    PrivateKeystore.objects.filter(pk=a.pk).update(pkcs12_sealed=b.pkcs12_sealed, password_sealed=b.password_sealed)
    with pytest.raises(KeystoreUnavailable, match="another row"):
        private_vault_config(PrivateKeystore.objects.get(pk=a.pk))
    assert private_vault_config(b).identity.fingerprint_sha256 == b.cert_fingerprint


def test_production_refuses_to_seal_without_a_storage_key(vault, private_vault, org_a, alice, settings):
    settings.HAVEN_STORAGE_KEY = ""  # PostgreSQL and DEBUG off: production
    with pytest.raises(PrivateKeystoreInvalid, match="HAVEN_STORAGE_KEY"):
        _configure(org_a, alice, private_vault)
    assert not PrivateKeystore.objects.exists()


def test_a_storage_key_file_inside_the_data_folder_is_refused(settings):
    from keystore.sealing import SealedIn, StorageKeyMissing, seal

    settings.HAVEN_STORAGE_KEY_FILE = str(settings.DATA_DIR / "storage_key")
    owner = SealedIn(table="t", organization=uuid.uuid4(), row=uuid.uuid4())
    with pytest.raises(StorageKeyMissing, match="inside the data folder"):
        seal("pkcs12", b"secret", owner=owner)


def test_the_embedded_default_falls_back_to_the_secret_key_with_a_loud_warning(settings, monkeypatch, caplog):
    from keystore import sealing

    settings.HAVEN_STORAGE_KEY, settings.DEBUG = "", True
    monkeypatch.setattr(sealing, "_warned", False)
    owner = sealing.SealedIn(table="t", organization=uuid.uuid4(), row=uuid.uuid4())
    with caplog.at_level("WARNING"):
        assert sealing.unseal("p", sealing.seal("p", b"secret", owner=owner), owner=owner) == b"secret"
    assert "EMBEDDED DEFAULT" in caplog.text and "HAVEN_STORAGE_KEY" in caplog.text


def test_v1_sealed_values_still_open_and_keystore_reseal_rewrites_them(vault, private_vault, org_a, alice):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from django.core.management import call_command

    from keystore.sealing import MAGIC_V2, _v1_key

    keystore = _configure(org_a, alice, private_vault)

    def v1(purpose, value):  # the format before v2: purpose-only associated data, under the secret key
        nonce = os.urandom(12)
        return nonce + AESGCM(_v1_key(settings_secret(), purpose)).encrypt(nonce, value, purpose.encode())

    PrivateKeystore.objects.filter(pk=keystore.pk).update(
        pkcs12_sealed=v1("pkcs12", private_vault.pkcs12),
        password_sealed=v1("pkcs12-password", private_vault.password.encode()))
    keystore.refresh_from_db()
    assert private_vault_config(keystore).identity.fingerprint_sha256 == keystore.cert_fingerprint
    call_command("keystore", "reseal")
    keystore.refresh_from_db()
    assert bytes(keystore.pkcs12_sealed).startswith(MAGIC_V2) and bytes(keystore.password_sealed).startswith(MAGIC_V2)
    assert private_vault_config(keystore).identity.fingerprint_sha256 == keystore.cert_fingerprint


def settings_secret() -> bytes:
    from django.conf import settings

    return settings.SECRET_KEY.encode()



def test_the_data_migration_reseals_v1_values(vault, private_vault, org_a, alice):
    import importlib

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from django.apps import apps

    from keystore.sealing import MAGIC_V2, _v1_key

    keystore = _configure(org_a, alice, private_vault)
    nonce = os.urandom(12)
    v1 = nonce + AESGCM(_v1_key(STORAGE_KEY.encode(), "pkcs12")).encrypt(nonce, private_vault.pkcs12, b"pkcs12")
    PrivateKeystore.objects.filter(pk=keystore.pk).update(pkcs12_sealed=v1)
    importlib.import_module("keystore.migrations.0003_private_keystore_hardening")._reseal(apps, None)
    keystore = PrivateKeystore.objects.get(pk=keystore.pk)
    assert bytes(keystore.pkcs12_sealed).startswith(MAGIC_V2)
    assert private_vault_config(keystore).identity.fingerprint_sha256 == keystore.cert_fingerprint


def test_a_storage_key_that_is_the_secret_key_or_short_is_refused(settings):
    from keystore.sealing import SealedIn, StorageKeyMissing, seal

    owner = SealedIn(table="t", organization=uuid.uuid4(), row=uuid.uuid4())
    for key, reason in ((settings.SECRET_KEY, "separate secret"), ("short", "shorter than 32")):
        settings.HAVEN_STORAGE_KEY = key
        with pytest.raises(StorageKeyMissing, match=reason):
            seal("pkcs12", b"secret", owner=owner)

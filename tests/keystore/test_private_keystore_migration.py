"""Moving keys between Haven's keystore and a private one, as a customer would: a completed migration
deletes Haven's copies (each after an audited read at the target) unless kept; a migration back writes
only absent keys; new settings for the same Vault must read every key. Real OpenBao servers."""
import os
import subprocess

import pytest

from keystore.migration import (
    MigrationRefused,
    keystore_migration_delete_source,
    keystore_migration_start,
)
from keystore.models import KeystoreMigration, PrivateKeystore, UserKey
from keystore.pkcs12 import pkcs12_load
from keystore.private_keystores import PrivateKeystoreInvalid
from keystore.services import key_path, key_retrieve
from tests.keystore.private_vault_fixture import private_vault_fixture  # noqa: F401 - the fixture
from tests.keystore.test_private_keystore import (  # noqa: F401 - _production_settings is an autouse fixture
    STORAGE_KEY,
    _configure,
    _escrowed_users,
    _migrate,
    _new_pkcs12,
    _production_settings,
)
from tests.support import wait_until

pytestmark = pytest.mark.slow


# --- a completed migration moves the keys -------------------------------------------------------

def _haven_root(vault):
    import hvac

    return hvac.Client(url=vault["url"], token=vault["token"])


def _haven_copy(vault, user):
    import hvac

    try:
        return _haven_root(vault).secrets.kv.v1.read_secret(path=key_path(user), mount_point="secret")["data"]
    except hvac.exceptions.InvalidPath:
        return None


def test_a_completed_migration_deletes_the_haven_copies_after_verifying_each(vault, private_vault, org_a, alice):
    from keystore.models import KeyAccess

    keys = _escrowed_users(org_a, 3)
    _configure(org_a, alice, private_vault)
    migration = _migrate(org_a, "private")
    assert migration.state == "completed" and migration.source_deleted_at and migration.source_copies_left == 0
    for user, key in keys.items():
        assert _haven_copy(vault, user) is None  # moved, not copied
        assert key_retrieve(user=user, purpose="web_restore", actor=alice, actor_label="test") == key
        deletion = KeyAccess.objects.filter(subject=user, purpose="deletion", job=str(migration.uuid)).order_by("seq")
        assert [a.outcome for a in deletion] == ["started", "succeeded"]
        assert "verifying key" in deletion[0].detail


def test_keep_source_keeps_the_haven_copies_and_says_where_they_are(vault, private_vault, org_a, alice, capsys):
    from django.core.management import call_command

    keys = _escrowed_users(org_a, 2)
    _configure(org_a, alice, private_vault)
    migration = _migrate(org_a, "private", keep_source=True)
    assert migration.state == "completed" and migration.keep_source and not migration.source_deleted_at
    assert migration.source_copies_left == 2
    assert all(_haven_copy(vault, user) for user in keys)
    call_command("keystore", "status", "--org", org_a.name)
    out = capsys.readouterr().out
    assert "0 key(s) in Haven's keystore, 2 in its own" in out and "2 copy(ies) kept in Haven's keystore" in out
    for user in keys:
        assert f"{user.email}: key {UserKey.objects.get(user=user).key_id} in the private keystore" in out
    call_command("keystore", "delete-source", "--org", org_a.name)
    assert not any(_haven_copy(vault, user) for user in keys)
    assert KeystoreMigration.objects.get().source_copies_left == 0


@pytest.fixture
def audited_haven(tmp_path, settings):
    """Haven's own keystore as a fresh OpenBao with the doc's audit device: what Haven asked it shows."""
    import hvac

    from keystore.embedded import bao_binary, configure_vault
    from keystore.vault import vault_client_reset
    from tests.conftest import _initialized
    from tests.keystore.private_vault_fixture import audit_entries, doc_audit_config
    from tests.support import free_port, stop_process

    port, log = free_port(), tmp_path / "haven-audit.log"
    (tmp_path / "audit.hcl").write_text(doc_audit_config(log))
    process = subprocess.Popen([bao_binary(), "server", "-dev", "-dev-root-token-id=root",
                                f"-dev-listen-address=127.0.0.1:{port}", f"-config={tmp_path / 'audit.hcl'}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ,
                                                                                          "HOME": str(tmp_path)})
    root = hvac.Client(url=f"http://127.0.0.1:{port}", token="root")
    try:
        wait_until(lambda: _initialized(root), timeout=20, what="OpenBao")
        configure_vault(root)
        token = lambda policy: root.auth.token.create(policies=[policy], no_default_policy=True)["auth"]["client_token"]  # noqa: E731
        settings.VAULT_ADDR, settings.VAULT_TOKEN = f"http://127.0.0.1:{port}", token("haven-escrow")
        settings.VAULT_PRIVILEGED_TOKEN = token("haven-privileged")
        vault_client_reset()
        yield {"url": settings.VAULT_ADDR, "token": "root", "entries": lambda: audit_entries(log)}
    finally:
        vault_client_reset()
        stop_process(process, timeout=10)


def _writes(entries, org, operation):
    prefix = f"secret/haven/{org.uuid}/"
    return [e for e in entries if e["type"] == "request" and e["request"]["path"].startswith(prefix)
            and e["request"]["operation"] == operation]


def test_migrating_back_writes_only_absent_keys_and_compares_present_ones(audited_haven, private_vault, org_a,
                                                                           alice):
    keys = _escrowed_users(org_a, 2)
    _configure(org_a, alice, private_vault)
    _migrate(org_a, "private", keep_source=True)  # Haven keeps its two copies
    keys.update(_escrowed_users(org_a, 1, first=2))  # a newcomer, escrowed in the private keystore only
    before = len(_writes(audited_haven["entries"](), org_a, "create"))

    back = _migrate(org_a, "haven")
    assert back.state == "completed" and back.keys_verified == 3
    entries = audited_haven["entries"]()
    assert _writes(entries, org_a, "update") == []  # never an overwrite attempt (the policy would deny it)
    assert len(_writes(entries, org_a, "create")) == before + 1  # only the newcomer's key was written
    for user, key in keys.items():
        assert key_retrieve(user=user, purpose="web_restore", actor=alice, actor_label="test") == key
    assert back.source_copies_left == 3 and not back.source_deleted_at  # they stay in the customer's Vault


def test_a_present_key_that_differs_at_the_target_fails_the_migration(audited_haven, private_vault, org_a, alice):
    import base64

    import hvac

    from formats.keys import generate_user_key, key_id_for
    from keystore.models import KeyAccess

    keys = _escrowed_users(org_a, 1)
    user = next(iter(keys))
    _configure(org_a, alice, private_vault)
    _migrate(org_a, "private", keep_source=True)
    other = generate_user_key()  # someone replaced the Haven copy meanwhile
    hvac.Client(url=audited_haven["url"], token="root").secrets.kv.v1.create_or_update_secret(
        path=key_path(user), secret={"key": base64.b64encode(other).decode(), "key_id": key_id_for(other)},
        mount_point="secret")
    with pytest.raises(MigrationRefused, match="different key"):
        _migrate(org_a, "haven")
    assert KeystoreMigration.objects.filter(target="haven").get().state == "running"
    assert UserKey.objects.get(user=user).location == "private"
    assert KeyAccess.objects.filter(subject=user, outcome="failed", detail__contains="different key").exists()
    assert key_retrieve(user=user, purpose="web_restore", actor=alice, actor_label="test") == keys[user]


# --- deleting the source: audited reads, a client with a timeout ----------------------------------

def test_source_deletion_records_the_read_that_finds_a_key_missing_at_the_target(vault, private_vault, org_a, alice):
    from keystore.models import KeyAccess

    keys = _escrowed_users(org_a, 2)
    _configure(org_a, alice, private_vault)
    migration = _migrate(org_a, "private", keep_source=True)
    lost = next(iter(keys))
    private_vault.root.secrets.kv.v1.delete_secret(path=key_path(lost), mount_point="secret")
    with pytest.raises(MigrationRefused, match="not verified at the target"):
        keystore_migration_delete_source(migration=migration, actor_label="test")
    records = KeyAccess.objects.filter(subject=lost, purpose="deletion").order_by("seq")
    assert [a.outcome for a in records] == ["started", "failed"]  # the read was recorded before it happened
    assert _haven_copy(vault, lost) is not None


def test_source_deletion_uses_a_client_with_a_timeout_and_keystore_errors(vault, private_vault, org_a, alice,
                                                                           settings, monkeypatch):
    import socket

    from keystore import migration as migration_module
    from keystore.models import KeyAccess
    from keystore.vault import KeystoreUnavailable

    keys = _escrowed_users(org_a, 1)
    _configure(org_a, alice, private_vault)
    migration = _migrate(org_a, "private", keep_source=True)
    settings.VAULT_PRIVILEGED_TOKEN = "not-a-token"  # refused: a keystore error, not an hvac exception
    with pytest.raises(KeystoreUnavailable):
        keystore_migration_delete_source(migration=migration, actor_label="test")
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        settings.VAULT_ADDR = f"http://127.0.0.1:{silent.getsockname()[1]}"  # the anchors keep their client
        settings.VAULT_PRIVILEGED_TOKEN = vault["privileged_token"]
        monkeypatch.setattr(migration_module, "PRIVILEGED_TIMEOUT", 1.0)
        with pytest.raises(KeystoreUnavailable, match="unreachable"):
            keystore_migration_delete_source(migration=migration, actor_label="test")
    user = next(iter(keys))
    assert KeyAccess.objects.filter(subject=user, purpose="deletion", outcome="failed").count() == 2
    assert _haven_copy(vault, user) is not None


# --- new settings for the same Vault ------------------------------------------------------------

def test_a_new_certificate_for_the_same_vault_is_accepted_when_it_reads_every_key(vault, private_vault, org_a,
                                                                                  alice):
    from keystore.models import KeyAccess

    keys = _escrowed_users(org_a, 2)
    first = _configure(org_a, alice, private_vault)
    _migrate(org_a, "private")
    renewed = _new_pkcs12(private_vault, "haven-by-hand")
    ca_pasted = "\n" + private_vault.ca_pem.decode() + "\n"  # the same CA, pasted with stray blank lines
    keystore = _configure(org_a, alice, private_vault, pkcs12=renewed, cert_role="haven-by-hand", ca_pem=ca_pasted)
    assert keystore.pk == first.pk and keystore.in_use and keystore.cert_role == "haven-by-hand"
    assert keystore.cert_fingerprint == pkcs12_load(renewed, private_vault.password).fingerprint_sha256
    for user, key in keys.items():
        checks = KeyAccess.objects.filter(subject=user, actor=alice, detail__contains="new keystore settings")
        assert checks.count() == 1 and KeyAccess.objects.filter(subject=user, actor=alice, outcome="succeeded",
                                                                job=checks.get().job).exists()
        assert key_retrieve(user=user, purpose="web_restore", actor=alice, actor_label="test") == key


def test_settings_of_another_vault_are_refused_while_keys_live_in_the_current_one(vault, private_vault, org_a,
                                                                                  alice, tmp_path):
    from keystore.models import KeyAccess
    from tests.keystore.private_vault_fixture import start_private_vault

    keys = _escrowed_users(org_a, 1)
    _configure(org_a, alice, private_vault)
    _migrate(org_a, "private")
    other = start_private_vault(tmp_path)  # logs in fine, but holds none of the keys
    try:
        with pytest.raises(PrivateKeystoreInvalid, match="missing or different.*migrate them back"):
            _configure(org_a, alice, other)
    finally:
        other.stop()
    assert PrivateKeystore.objects.get().address == private_vault.address
    assert KeyAccess.objects.filter(subject=next(iter(keys)), actor=alice, outcome="failed").exists()


def test_a_private_address_is_refused_unless_the_operator_allows_it(vault, private_vault, org_a, alice, settings):
    settings.HAVEN_PRIVATE_KEYSTORE_ALLOW_PRIVATE = False
    for address in (private_vault.address, "https://10.1.2.3:8200", "https://localhost:8200"):
        with pytest.raises(PrivateKeystoreInvalid, match="not a public address"):
            _configure(org_a, alice, private_vault, address=address)
    assert not PrivateKeystore.objects.exists()


def test_a_migration_to_an_address_that_became_private_is_refused(vault, private_vault, org_a, alice, settings):
    _configure(org_a, alice, private_vault)
    settings.HAVEN_PRIVATE_KEYSTORE_ALLOW_PRIVATE = False  # e.g. its name now resolves to an internal address
    with pytest.raises(MigrationRefused, match="not a public address"):
        keystore_migration_start(organization=org_a, target="private", actor_label="test")
    assert not KeystoreMigration.objects.exists()

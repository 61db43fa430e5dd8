"""A private keystore from an uploaded PKCS12; migration both ways with a crash halfway;
certificate renewal with a short-lived certificate. All against real OpenBao servers."""
import os
import subprocess
import uuid
from datetime import timedelta

import pytest
from django.core import mail

from accounts.models import AuditEvent, Device
from keystore.engines import engine_named, private_vault_config
from keystore.migration import (
    MigrationRefused,
    keystore_migration_delete_source,
    keystore_migration_run,
    keystore_migration_start,
)
from keystore.models import KeystoreMigration, PrivateKeystore, UserKey
from keystore.pkcs12 import pkcs12_build, pkcs12_load
from keystore.private_keystores import PrivateKeystoreInvalid, private_keystore_configure, private_keystore_renew
from keystore.services import key_escrow, key_path, key_retrieve
from tests.keystore.private_vault_fixture import private_vault_fixture  # noqa: F401 - the fixture
from tests.support import PYTHON, REPO, wait_until

pytestmark = pytest.mark.slow
STORAGE_KEY = "a-test-storage-key-outside-the-data-folder"


@pytest.fixture(autouse=True)
def _production_settings(settings):
    """Tests run as production does (PostgreSQL): a storage key is required. The test Vaults listen on
    loopback, which only an operator's setting allows."""
    settings.HAVEN_STORAGE_KEY = STORAGE_KEY
    settings.HAVEN_PRIVATE_KEYSTORE_ALLOW_PRIVATE = True


def _configure(org, actor, setup, **overrides):
    values = {"address": setup.address, "ca_pem": setup.ca_pem.decode(), "pkcs12": setup.pkcs12,
              "password": setup.password, "cert_role": setup.cert_role, **overrides}
    return private_keystore_configure(organization=org, actor=actor, **values)


def test_a_private_keystore_is_set_up_from_a_pkcs12(vault, private_vault, org_a, alice):
    keystore = _configure(org_a, alice, private_vault)
    assert not keystore.in_use and keystore.cert_not_after > keystore.created_at
    raw = bytes(PrivateKeystore.objects.get().pkcs12_sealed)
    assert private_vault.pkcs12 not in raw and private_vault.password.encode() not in raw
    assert AuditEvent.objects.filter(action="keystore.private.configure").exists()


@pytest.mark.parametrize("change,message", [
    ({"password": "wrong password"}, "password"),
    ({"pkcs12": b"not a pkcs12 file"}, "PKCS12"),
    ({"pkcs12": b"x" * (5 * 1024 * 1024 + 1)}, "5 MB"),
    ({"address": "http://plain.example:8200"}, "https"),
])
def test_bad_uploads_are_refused_with_a_clear_error(vault, private_vault, org_a, alice, change, message):
    with pytest.raises(PrivateKeystoreInvalid, match=message):
        _configure(org_a, alice, private_vault, **change)
    assert not PrivateKeystore.objects.exists()


def test_a_wrong_ca_is_refused(vault, private_vault, org_a, alice, tmp_path):
    from tests.keystore.private_vault_fixture import start_dev_server

    other = start_dev_server(tmp_path)  # another server's CA cannot vouch for this one
    try:
        with pytest.raises(PrivateKeystoreInvalid):
            _configure(org_a, alice, private_vault, ca_pem=other.ca_pem.decode())
    finally:
        other.stop()


def _escrowed_users(org, count, first=0):
    from accounts.services import device_create, user_ensure
    from formats.keys import generate_user_key, key_id_for

    keys = {}
    for index in range(first, first + count):
        user = user_ensure(organization=org, email=f"user{index}@a.example", role="user", password=None).user
        device = device_create(owner=user, name=f"box-{index}", os_name="", agent_version="")
        key = generate_user_key()
        key_escrow(user=user, key=key, key_id=key_id_for(key), device=device)
        keys[user] = key
    return keys


@pytest.mark.django_db(transaction=True)
def test_migration_both_ways_survives_a_crash_halfway(vault, private_vault, org_a, alice, settings, tmp_path):
    keys = _escrowed_users(org_a, 4)
    assert set(UserKey.objects.values_list("location", flat=True)) == {"haven"}
    _configure(org_a, alice, private_vault)

    # Crash (kill -9) the migration after the second key was copied, before its row moved.
    from django.db import connection

    env = {**os.environ, "DATABASE_URL": os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/"
           + connection.settings_dict["NAME"], "HAVEN_TEST_DATABASE_NAME": "", "VAULT_ADDR": settings.VAULT_ADDR,
           "VAULT_TOKEN": settings.VAULT_TOKEN, "HAVEN_AUDIT_ANCHOR_PREFIX": settings.HAVEN_AUDIT_ANCHOR_PREFIX,
           "HAVEN_SECRET_KEY": settings.SECRET_KEY, "HAVEN_STORAGE_KEY": STORAGE_KEY, "HAVEN_FAULT_DIR": str(tmp_path),
           "HAVEN_FAULT_POINTS": "keystore.migration.after_copy=pause@2"}
    process = subprocess.Popen([PYTHON, "manage.py", "keystore", "migrate", "--org", org_a.name, "--to", "private"],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: (tmp_path / "keystore.migration.after_copy").exists(), timeout=60, what="the crash point")
    process.kill()
    process.wait()
    assert UserKey.objects.filter(location="private").count() == 1
    migration = KeystoreMigration.objects.get()
    assert migration.state == "running" and not PrivateKeystore.objects.get().in_use
    with pytest.raises(MigrationRefused, match="every key must be verified"):
        keystore_migration_delete_source(migration=migration, actor_label="test")
    for user, key in keys.items():  # every key still readable from where its row says it is
        assert key_retrieve(user=user, purpose="web_restore", actor=alice, actor_label="test") == key

    # Resume: the same migration finishes; the organization switches to its own keystore.
    migration = keystore_migration_run(migration=keystore_migration_start(
        organization=org_a, target="private", actor_label="test"))
    assert migration.state == "completed" and migration.keys_verified == migration.keys_total == 4
    assert PrivateKeystore.objects.get().in_use
    private = engine_named(org_a, "private")
    for user, key in keys.items():
        assert private.read(key_path(user))["key_id"] == UserKey.objects.get(user=user).key_id
        assert key_retrieve(user=user, purpose="web_restore", actor=alice, actor_label="test") == key

    # A new user's escrow now lands in the private keystore.
    newcomer = _escrowed_users(org_a, 1, first=4)
    assert UserKey.objects.get(user=next(iter(newcomer))).location == "private"
    keys.update(newcomer)

    # And back, after which the Haven-managed keystore serves every key again.
    back = keystore_migration_run(migration=keystore_migration_start(organization=org_a, target="haven",
                                                                     actor_label="test"))
    assert back.state == "completed" and not PrivateKeystore.objects.get().in_use
    assert set(UserKey.objects.values_list("location", flat=True)) == {"haven"}
    with pytest.raises(MigrationRefused, match="cannot delete"):
        keystore_migration_delete_source(migration=back, actor_label="test")
    for user, key in keys.items():
        assert key_retrieve(user=user, purpose="web_restore", actor=alice, actor_label="test") == key


def test_source_copies_are_deleted_only_through_the_privileged_path(vault, private_vault, org_a, alice):
    import hvac

    keys = _escrowed_users(org_a, 2)
    _configure(org_a, alice, private_vault)
    migration = keystore_migration_run(migration=keystore_migration_start(organization=org_a, target="private",
                                                                          actor_label="test"))
    assert keystore_migration_delete_source(migration=migration, actor_label="test") == 2
    root = hvac.Client(url=vault["url"], token=vault["token"])
    for user, key in keys.items():
        with pytest.raises(hvac.exceptions.InvalidPath):
            root.secrets.kv.v1.read_secret(path=key_path(user), mount_point="secret")
        assert key_retrieve(user=user, purpose="web_restore", actor=alice, actor_label="test") == key


def test_a_short_lived_certificate_is_renewed_under_a_new_entry(vault, private_vault, org_a, alice):
    from keystore.private_vault import LoginRefused, PrivateVaultSession

    issued = private_vault.issue(ttl="240h")  # expires within 30 days: due for renewal
    private_vault.register("haven-short", issued["certificate"])
    short = pkcs12_build(issued["certificate"].encode(), issued["private_key"].encode(),
                         "\n".join(issued["ca_chain"]).encode() + b"\n", private_vault.password)
    keystore = _configure(org_a, alice, private_vault, pkcs12=short, cert_role="haven-short")
    short_identity = pkcs12_load(short, private_vault.password)
    far_future = keystore.cert_not_after - timedelta(days=60)
    assert not private_keystore_renew(keystore=keystore, now=far_future).renewed  # not due yet

    result = private_keystore_renew(keystore=keystore)
    keystore.refresh_from_db()
    assert result.renewed and keystore.cert_role == result.entry != "haven-short"
    assert keystore.cert_not_after >= short_identity.not_valid_after

    with PrivateVaultSession(private_vault_config(keystore)) as session:  # the new certificate logs in
        assert session.token_ttl() > 0
    short_config = private_vault.config(identity=short_identity, cert_role="haven-short")
    with pytest.raises(LoginRefused), PrivateVaultSession(short_config) as session:  # the old entry is gone
        session.login()
    assert AuditEvent.objects.filter(action="keystore.private.renew").exists()


def test_a_failed_renewal_alerts_the_admins_and_the_task_retries(vault, private_vault, org_a, alice):
    from celery.exceptions import Retry

    from keystore.tasks import private_keystore_renew_task

    keystore = _configure(org_a, alice, private_vault)
    PrivateKeystore.objects.filter(pk=keystore.pk).update(
        cert_not_after=keystore.cert_not_after.replace(year=2000))  # looks due, and...
    private_vault.root.secrets.pki.delete_role("haven-client", mount_point="pki_int")  # ...the PKI refuses
    try:
        with pytest.raises(Retry):
            private_keystore_renew_task.apply(throw=True)
    finally:
        from tests.keystore.private_vault_fixture import _client_role

        _client_role(private_vault.root)
    keystore.refresh_from_db()
    assert keystore.renewal_error and keystore.cert_role == "haven-initial"
    assert AuditEvent.objects.filter(action="keystore.private.renew_failed").exists()
    assert mail.outbox and mail.outbox[-1].to == [alice.email]
    assert Device.objects.count() == 0


def test_the_private_keystore_cannot_be_replaced_while_keys_live_there(vault, private_vault, org_a, alice):
    _escrowed_users(org_a, 1)
    _configure(org_a, alice, private_vault)
    keystore_migration_run(migration=keystore_migration_start(organization=org_a, target="private",
                                                              actor_label="test"))
    PrivateKeystore.objects.update(in_use=False)  # even if the switch were off, keys live there
    with pytest.raises(PrivateKeystoreInvalid, match="migrate them back"):
        _configure(org_a, alice, private_vault, address="https://other.example:8200")
    assert PrivateKeystore.objects.get().address == private_vault.address


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


def _migrate(org, target, **options):
    return keystore_migration_run(migration=keystore_migration_start(organization=org, target=target,
                                                                     actor_label="test", **options))


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

def _new_pkcs12(setup, entry):
    """What the admin does to renew by hand: issue a certificate, pin it under a new entry, export it."""
    issued = setup.issue(ttl="2160h")
    setup.register(entry, issued["certificate"])
    return pkcs12_build(issued["certificate"].encode(), issued["private_key"].encode(),
                        "\n".join(issued["ca_chain"]).encode() + b"\n", setup.password)


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


# --- the private Vault's state, renewal now -----------------------------------------------------

def test_keystore_status_reports_the_private_vaults_state(vault, org_a, alice, tmp_path, capsys):
    from django.core.management import CommandError, call_command

    from tests.keystore.private_vault_fixture import start_private_vault

    setup = start_private_vault(tmp_path)
    try:
        keystore = _configure(org_a, alice, setup)
        _migrate(org_a, "private")  # no keys yet: the organization simply switches to it
        call_command("keystore", "status")
        out = capsys.readouterr().out
        assert f"private keystore {setup.address}: unsealed" in out and keystore.cert_fingerprint in out
        assert f"expires {keystore.cert_not_after:%Y-%m-%d}" in out
        setup.root.sys.seal()
        with pytest.raises(CommandError, match="sealed"):
            call_command("keystore", "status")
        assert f"private keystore {setup.address}: sealed" in capsys.readouterr().out
    finally:
        setup.stop()
    with pytest.raises(CommandError, match="unreachable"):
        call_command("keystore", "status")


def test_renewal_can_be_run_now_from_the_command_line(vault, private_vault, org_a, alice, capsys):
    from django.core.management import call_command

    pkcs12 = _new_pkcs12(private_vault, "haven-renew-now")
    keystore = _configure(org_a, alice, private_vault, pkcs12=pkcs12, cert_role="haven-renew-now")
    call_command("keystore", "renew", "--org", org_a.name)  # not due for 90 days: renewed all the same
    renewed = PrivateKeystore.objects.get(pk=keystore.pk)
    assert renewed.cert_role != "haven-renew-now" and renewed.cert_fingerprint != keystore.cert_fingerprint
    assert f"renewed, login entry {renewed.cert_role}" in capsys.readouterr().out


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

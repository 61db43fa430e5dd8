"""A private keystore from an uploaded PKCS12; migration both ways with a crash halfway;
certificate renewal with a short-lived certificate. All against real OpenBao servers."""
import os
import subprocess
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
           "HAVEN_SECRET_KEY": settings.SECRET_KEY, "HAVEN_STORAGE_KEY": STORAGE_KEY,
           "HAVEN_PRIVATE_KEYSTORE_ALLOW_PRIVATE": "1", "HAVEN_FAULT_DIR": str(tmp_path),
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


# --- helpers shared with the migration and sealing tests ----------------------------------------

def _migrate(org, target, **options):
    return keystore_migration_run(migration=keystore_migration_start(organization=org, target=target,
                                                                     actor_label="test", **options))


def _new_pkcs12(setup, entry):
    """What the admin does to renew by hand: issue a certificate, pin it under a new entry, export it."""
    issued = setup.issue(ttl="2160h")
    setup.register(entry, issued["certificate"])
    return pkcs12_build(issued["certificate"].encode(), issued["private_key"].encode(),
                        "\n".join(issued["ca_chain"]).encode() + b"\n", setup.password)


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

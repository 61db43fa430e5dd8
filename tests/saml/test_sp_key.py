"""The SAML SP key pair is the installation's, not a host's: every process reads the same one from
the database (or the operator's files), it is created exactly once, and it rotates through a
staged rollover (console/saml/sp_keys.py, manage.py samlcert)."""
import os
import re
import stat
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from cryptography import x509
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from saml2.sigver import RSACrypto, verify_redirect_signature

from accounts.models import AuditEvent, SamlServiceProviderKey
from console.saml import sp_keys
from console.saml.sp_keys import _generated_pair, sp_keypair
from tests.saml.conftest import STORAGE_KEY
from tests.saml.test_saml_login import _acs, _signed_in_as, _start, idp_a  # noqa: F401
from tests.support import PYTHON, REPO, wait_until


def _another_process(monkeypatch, data_dir: Path | None = None, settings=None):
    """What a second web process (on another host, with its own data folder) starts from."""
    monkeypatch.setattr(sp_keys, "_folder", None)
    if data_dir is not None:
        settings.DATA_DIR = data_dir


def _metadata_certs(org) -> list[str]:
    response = Client().get(f"/saml/{org.uuid}/metadata/")
    assert response.status_code == 200, response.content[:300]
    return re.findall(r"<(?:\w+:)?X509Certificate>([^<]+)</", response.content.decode())


def _signed_by(login_redirect: str, cert_body: str) -> bool:
    """Does the AuthnRequest's redirect signature verify with this certificate?"""
    query = {name: values[0] for name, values in parse_qs(urlparse(login_redirect).query).items()}
    return verify_redirect_signature(query, RSACrypto(None), cert=cert_body)


def _pem_body(pem: bytes | str) -> str:
    text = pem.decode() if isinstance(pem, bytes) else pem
    return "".join(line for line in text.splitlines() if "-----" not in line)


def test_every_process_and_host_uses_the_one_pair_in_the_database(org_a, monkeypatch, settings, tmp_path):
    settings.DATA_DIR = tmp_path / "host-a"
    first = sp_keypair()
    first_metadata = _metadata_certs(org_a)
    _another_process(monkeypatch, tmp_path / "host-b", settings)
    second = sp_keypair()

    assert first.key_file != second.key_file  # each process has its own copy...
    assert first.key_file.read_bytes() == second.key_file.read_bytes()  # ...of the same key
    assert first.cert_file.read_bytes() == second.cert_file.read_bytes()
    assert _metadata_certs(org_a) == first_metadata == [_pem_body(first.cert_file.read_bytes())]
    row = SamlServiceProviderKey.objects.get()
    assert b"PRIVATE KEY" not in bytes(row.key_sealed)  # sealed, not stored in the clear
    for pair in (first, second):
        assert stat.S_IMODE(pair.key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(pair.key_file.parent.stat().st_mode) == 0o700
    for host in ("host-a", "host-b"):  # nothing on either host's disk
        assert not list((tmp_path / host).rglob("*.key"))


@pytest.mark.django_db(transaction=True)
def test_two_processes_creating_the_pair_at_once_end_with_one(tmp_path):
    """Both processes find no pair and make one; they are held there until both have (a fault
    point), then both insert: one wins, the other uses the winner's, both print the same."""
    database = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + connection.settings_dict["NAME"]
    processes = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        env = {**os.environ, "DATABASE_URL": database, "HAVEN_TEST_DATABASE_NAME": "",
               "HAVEN_DATA_DIR": str(tmp_path / name / "var"), "HAVEN_SECRET_KEY": "test-secret",
               "HAVEN_STORAGE_KEY": STORAGE_KEY, "HAVEN_FAULT_DIR": str(tmp_path / name),
               "HAVEN_FAULT_POINTS": "saml.sp_key.before_insert=wait"}
        processes.append(subprocess.Popen([PYTHON, "manage.py", "samlcert", "show"], cwd=REPO, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        wait_until(lambda: all((tmp_path / n / "saml.sp_key.before_insert").exists() for n in "ab"), timeout=120,
                   what="both processes to have made a key")
        for name in ("a", "b"):
            (tmp_path / name / "saml.sp_key.before_insert.go").touch()
        outputs = [process.communicate(timeout=120) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
    fingerprints = [re.search(r"current: sha256 (\S+)", out).group(1) for out, _ in outputs]
    row = SamlServiceProviderKey.objects.get()
    assert fingerprints[0] == fingerprints[1] == sp_keys.fingerprint(
        x509.load_pem_x509_certificate(row.certificate_pem.encode()))


def test_the_operators_files_are_used_and_never_written(org_a, settings, tmp_path):
    key_pem, cert_pem = _generated_pair()
    (tmp_path / "sp.key").write_bytes(key_pem)
    (tmp_path / "sp.crt").write_bytes(cert_pem)
    settings.HAVEN_SAML_SP_KEY_FILE, settings.HAVEN_SAML_SP_CERT_FILE = str(tmp_path / "sp.key"), str(
        tmp_path / "sp.crt")

    assert _metadata_certs(org_a) == [_pem_body(cert_pem)]
    assert not SamlServiceProviderKey.objects.exists()
    with pytest.raises(CommandError, match="replace those files"):
        call_command("samlcert", "rotate")
    assert (tmp_path / "sp.key").read_bytes() == key_pem


def test_a_pre_upgrade_host_key_is_adopted(org_a, settings, tmp_path):
    """The certificate IdPs already trust stays: the host's old var/saml pair moves into the database."""
    settings.DATA_DIR = tmp_path
    key_pem, cert_pem = _generated_pair()
    (tmp_path / "saml").mkdir()
    (tmp_path / "saml" / "sp.key").write_bytes(key_pem)
    (tmp_path / "saml" / "sp.crt").write_bytes(cert_pem)

    assert _metadata_certs(org_a) == [_pem_body(cert_pem)]
    assert SamlServiceProviderKey.objects.get().certificate_pem == cert_pem.decode()


def test_a_staged_rollover_publishes_both_then_signs_with_the_new_one(idp_a, org_a, alice, capsys):  # noqa: F811
    old = _metadata_certs(org_a)
    call_command("samlcert", "rotate", "--stage")
    staged = _metadata_certs(org_a)
    assert len(staged) == 2 and staged[0] == old[0]
    browser = Client()  # the current key still signs: sign-in goes on during the rollover
    redirect = _start(browser, org_a)
    assert _signed_by(redirect, staged[0]) and not _signed_by(redirect, staged[1])
    assert _acs(browser, org_a, idp_a.answer(redirect, alice.email)).status_code == 302

    call_command("samlcert", "activate")
    assert _metadata_certs(org_a) == [staged[1]]
    redirect = _start(Client(), org_a)
    assert _signed_by(redirect, staged[1]) and not _signed_by(redirect, staged[0])
    assert SamlServiceProviderKey.objects.get().slot == "current"
    changes = list(AuditEvent.objects.filter(organization=org_a, action="saml.sp_certificate.change")
                   .order_by("occurred_at").values_list("detail__change", flat=True))
    assert changes == ["rotated, staged", "activated"]
    browser = Client()
    assert _acs(browser, org_a, idp_a.answer(_start(browser, org_a), alice.email)).status_code == 302
    assert _signed_in_as(browser) == alice.email


def test_rotate_switches_at_once_and_activate_needs_a_staged_one(org_a):
    before = _metadata_certs(org_a)
    call_command("samlcert", "rotate")
    after = _metadata_certs(org_a)
    assert len(after) == 1 and after != before
    with pytest.raises(CommandError, match="no certificate is staged"):
        call_command("samlcert", "activate")


def test_import_takes_a_matching_pair_only(org_a, tmp_path):
    key_pem, cert_pem = _generated_pair()
    other_key, _ = _generated_pair()
    (tmp_path / "sp.key").write_bytes(key_pem)
    (tmp_path / "sp.crt").write_bytes(cert_pem)
    (tmp_path / "other.key").write_bytes(other_key)
    with pytest.raises(CommandError, match="not the key's"):
        call_command("samlcert", "import", "--key", str(tmp_path / "other.key"), "--cert", str(tmp_path / "sp.crt"))
    call_command("samlcert", "import", "--key", str(tmp_path / "sp.key"), "--cert", str(tmp_path / "sp.crt"))
    assert _metadata_certs(org_a) == [_pem_body(cert_pem)]


def test_production_without_a_storage_key_says_so_and_makes_no_host_key(org_a, settings, tmp_path):
    settings.HAVEN_STORAGE_KEY = ""
    settings.DATA_DIR = tmp_path
    response = Client().get(f"/saml/{org_a.uuid}/metadata/")
    assert response.status_code == 503
    assert b"HAVEN_STORAGE_KEY" in response.content and b"HAVEN_SAML_SP_KEY_FILE" in response.content
    assert not SamlServiceProviderKey.objects.exists() and not list(tmp_path.rglob("*"))


def test_keystore_reseal_moves_an_sp_key_sealed_under_the_secret_key_to_the_storage_key(settings, monkeypatch):
    """An SP key made before HAVEN_STORAGE_KEY was set (sealed under the secret key) is rewritten
    by `manage.py keystore reseal`, so a later change of the secret key cannot lock SAML out."""
    from keystore import sealing
    from keystore.sealing import SP_KEY_PURPOSE, is_current, sp_key_owner, unseal

    settings.HAVEN_STORAGE_KEY = ""
    with monkeypatch.context() as embedded:  # `make run`'s defaults: the secret key seals
        embedded.setattr(sealing, "embedded_default", lambda: True)
        sp_keypair()
    row = SamlServiceProviderKey.objects.get()
    settings.HAVEN_STORAGE_KEY = STORAGE_KEY
    assert not is_current(SP_KEY_PURPOSE, row.key_sealed, owner=sp_key_owner(row))
    before = unseal(SP_KEY_PURPOSE, row.key_sealed, owner=sp_key_owner(row))
    call_command("keystore", "reseal")
    row.refresh_from_db()
    assert is_current(SP_KEY_PURPOSE, row.key_sealed, owner=sp_key_owner(row))
    settings.SECRET_KEY = "another-secret-key-entirely-" + "x" * 40
    assert unseal(SP_KEY_PURPOSE, row.key_sealed, owner=sp_key_owner(row)) == before

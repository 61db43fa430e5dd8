"""Private keystore: a customer's own OpenBao, set up as docs/private-keystore.md says, reached with a
PKCS12 client certificate over TLS cert auth. Every test talks to a real server."""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import hvac
import hvac.exceptions
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from keystore.pkcs12 import (
    MAX_PKCS12_BYTES,
    ClientIdentity,
    Pkcs12Error,
    pkcs12_build,
    pkcs12_load,
    tls_client_files,
)
from keystore.private_vault import (
    KeyExists,
    LoginRefused,
    PermissionDenied,
    PrivateVaultError,
    PrivateVaultSession,
    Sealed,
    Unreachable,
    WrongCA,
    cert_auth_delete,
    cert_auth_register,
    issue_client_certificate,
    key_path,
    private_vault_health,
    private_vault_login,
)
from tests.keystore.private_vault_fixture import (  # noqa: F401 - private_vault_fixture is the `private_vault` fixture
    COMMON_NAME,
    DOC,
    INITIAL_ENTRY,
    POLICY,
    PrivateVaultSetup,
    audit_entries,
    bao_binary,
    private_vault_fixture,
    start_dev_server,
    start_private_vault,
)
from tests.support import free_port

pytestmark = pytest.mark.slow


def new_key_path() -> str:
    return key_path(uuid.uuid4(), uuid.uuid4())


def entry_name(prefix: str = "haven") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def session(private_vault: PrivateVaultSetup):
    with PrivateVaultSession(private_vault.config()) as session:
        yield session


# --- login and the Haven policy on keys ---------------------------------------------------------

def test_login_with_the_pkcs12_creates_a_key_once_and_reads_it_back(session):
    path = new_key_path()
    assert session.read_key(path) is None
    session.create_key(path, {"wrapped_key": "c2VjcmV0", "version": "1"})
    assert session.read_key(path) == {"wrapped_key": "c2VjcmV0", "version": "1"}
    assert session.logins == 1


def test_overwriting_an_escrowed_key_is_refused_with_key_exists(session):
    path = new_key_path()
    session.create_key(path, {"wrapped_key": "first"})
    with pytest.raises(KeyExists, match="already escrowed"):
        session.create_key(path, {"wrapped_key": "second"})
    assert session.read_key(path) == {"wrapped_key": "first"}


def test_haven_policy_refuses_to_list_or_delete_keys(private_vault, session):
    path = new_key_path()
    session.create_key(path, {"wrapped_key": "kept"})
    client = private_vault_login(private_vault.config())
    kv = client.secrets.kv.v1
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.list_secrets(path=path.rsplit("/", 1)[0], mount_point="secret")
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.delete_secret(path=path, mount_point="secret")
    with pytest.raises(hvac.exceptions.Forbidden):  # an explicit update (PUT) is refused too
        kv.create_or_update_secret(path=path, secret={"wrapped_key": "replaced"}, method="PUT", mount_point="secret")
    assert session.read_key(path) == {"wrapped_key": "kept"}


def test_a_refusal_on_a_live_token_is_permission_denied_without_logging_in_again(session):
    with pytest.raises(PermissionDenied, match="permission denied"):
        session.call(lambda client: client.secrets.kv.v1.read_secret(path="elsewhere", mount_point="secret"),
                     what="reading secret/elsewhere")
    assert session.logins == 1


def test_key_paths_cannot_leave_the_haven_prefix(session):
    for bad in ("other/x", "haven/../sys", "haven//x", "haven"):
        with pytest.raises(ValueError):
            session.read_key(bad)


# --- the PKCS12 upload --------------------------------------------------------------------------

def test_pkcs12_with_the_right_password_gives_the_identity(private_vault):
    identity = pkcs12_load(private_vault.pkcs12, private_vault.password)
    assert identity.subject == f"CN={COMMON_NAME}"
    assert identity.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert identity.chain_pem.count(b"BEGIN CERTIFICATE") == 2  # intermediate and root
    assert identity.not_valid_after > datetime.now(UTC) + timedelta(days=80)


def test_wrong_pkcs12_password_is_refused_clearly(private_vault):
    with pytest.raises(Pkcs12Error, match="^Wrong password for the PKCS12 file"):
        pkcs12_load(private_vault.pkcs12, "not the password")


def test_a_pem_file_is_not_a_pkcs12_file(private_vault):
    with pytest.raises(Pkcs12Error, match="not a PKCS12 .* looks like a PEM file"):
        pkcs12_load(private_vault.identity().cert_pem, private_vault.password)


def test_random_bytes_are_not_a_pkcs12_file():
    with pytest.raises(Pkcs12Error, match="not a PKCS12"):
        pkcs12_load(os.urandom(2048), "password")


def test_a_pkcs12_file_larger_than_5_mb_is_refused():
    with pytest.raises(Pkcs12Error, match="limit is 5 MB"):
        pkcs12_load(b"\x30" * (MAX_PKCS12_BYTES + 1), "password")


def test_a_pkcs12_file_without_a_private_key_is_refused(private_vault):
    certificate_only = pkcs12.serialize_key_and_certificates(
        name=b"haven", key=None, cert=_certificate(private_vault.identity()), cas=None,
        encryption_algorithm=serialization.BestAvailableEncryption(b"pw"))
    with pytest.raises(Pkcs12Error, match="no private key"):
        pkcs12_load(certificate_only, "pw")


def test_a_certificate_not_yet_valid_is_refused(private_vault):
    with pytest.raises(Pkcs12Error, match="not valid before"):
        pkcs12_load(private_vault.pkcs12, private_vault.password, now=datetime(2000, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def expired_pkcs12(private_vault) -> tuple[bytes, str]:
    """A certificate issued for one second and registered as `haven-expired`, once it has expired."""
    issued = private_vault.issue(ttl="1s")
    private_vault.register("haven-expired", issued["certificate"])
    data = pkcs12_build(issued["certificate"].encode(), issued["private_key"].encode(), b"", "pw")
    not_after = datetime.fromtimestamp(issued["expiration"], UTC)
    time.sleep(max(0.0, (not_after - datetime.now(UTC)).total_seconds()) + 1.1)
    return data, "pw"


def test_an_expired_certificate_is_refused_on_upload(expired_pkcs12):
    with pytest.raises(Pkcs12Error, match="expired on"):
        pkcs12_load(*expired_pkcs12)


def test_an_expired_certificate_cannot_log_in(private_vault, expired_pkcs12):
    identity = pkcs12_load(*expired_pkcs12, check_validity=False)
    with pytest.raises(LoginRefused, match="expired"):
        private_vault_login(private_vault.config(identity, cert_role="haven-expired"))


def test_a_certificate_not_registered_cannot_log_in(private_vault):
    issued = private_vault.issue()
    identity = pkcs12_load(pkcs12_build(issued["certificate"].encode(), issued["private_key"].encode(), b"", "pw"), "pw")
    with pytest.raises(LoginRefused, match="invalid certificate"):
        private_vault_login(private_vault.config(identity))


def test_the_identity_never_shows_its_key(private_vault):
    identity = private_vault.identity()
    body = identity.key_pem.split(b"\n")[1].decode()
    for text in (repr(identity), str(identity), f"{identity}", repr(private_vault.config(identity))):
        assert "PRIVATE KEY" not in text and body not in text
        assert identity.fingerprint_sha256 in text


# --- transport errors ---------------------------------------------------------------------------

def test_a_wrong_ca_bundle_is_wrong_ca(private_vault):
    pki_root_ca = private_vault.root.secrets.pki.read_ca_certificate(mount_point="pki").encode()
    with pytest.raises(WrongCA, match="not trusted by the uploaded CA bundle"):
        private_vault_login(private_vault.config(ca_pem=pki_root_ca))


def test_a_closed_port_is_unreachable(private_vault):
    with pytest.raises(Unreachable):
        private_vault_login(private_vault.config(address=f"https://127.0.0.1:{free_port()}", timeout=5))


def test_a_plain_http_address_is_refused(private_vault):
    with pytest.raises(ValueError, match="https://"):
        private_vault.config(address=private_vault.address.replace("https://", "http://"))


def test_a_sealed_vault_is_sealed(tmp_path):
    setup = start_private_vault(tmp_path)
    try:
        setup.root.sys.seal()
        with pytest.raises(Sealed, match="sealed"):
            private_vault_login(setup.config())
    finally:
        setup.stop()


# --- short-lived tokens -------------------------------------------------------------------------

def test_an_expired_token_makes_the_session_log_in_again_transparently(private_vault):
    name = entry_name()
    private_vault.register(name, private_vault.identity().cert_pem.decode(), token_ttl="2s")
    frozen_clock = lambda: 0.0  # noqa: E731 - the session never *predicts* expiry: Vault's 403 must trigger it
    with PrivateVaultSession(private_vault.config(cert_role=name), clock=frozen_clock) as session:
        path = new_key_path()
        session.create_key(path, {"wrapped_key": "k"})
        time.sleep(2.5)
        assert session.read_key(path) == {"wrapped_key": "k"}
        assert session.logins == 2


def test_a_token_near_expiry_is_replaced_before_the_request(private_vault):
    now = [1000.0]
    with PrivateVaultSession(private_vault.config(), clock=lambda: now[0]) as session:
        assert 0 < session.token_ttl() <= 60
        now[0] += 25  # ~35 s left of 60: keep the token
        session.read_key(new_key_path())
        assert session.logins == 1
        now[0] += 10  # ~25 s left: within the 30 s margin
        session.read_key(new_key_path())
        assert session.logins == 2


def test_a_revoked_token_makes_the_session_log_in_again(private_vault, session):
    session.read_key(new_key_path())
    private_vault.root.auth.token.revoke(session._login.client.token)
    assert session.read_key(new_key_path()) is None
    assert session.logins == 2


# --- certificate renewal ------------------------------------------------------------------------

def test_renewal_issues_registers_and_proves_a_new_certificate_then_retires_the_old_one(tmp_path):
    setup = start_private_vault(tmp_path)
    try:
        old_config = setup.config()
        path = new_key_path()
        with PrivateVaultSession(old_config) as old:
            old.create_key(path, {"wrapped_key": "k"})
            renewed = issue_client_certificate(old, common_name=COMMON_NAME, ttl="720h")
            new_entry = f"haven-{datetime.now(UTC):%Y%m%d}"
            cert_auth_register(old, new_entry, renewed.cert_pem, [POLICY], "60s")
        assert renewed.fingerprint_sha256 != old_config.identity.fingerprint_sha256
        assert renewed.not_valid_after > datetime.now(UTC) + timedelta(days=29)
        with PrivateVaultSession(setup.config(renewed, cert_role=new_entry)) as new:
            assert new.read_key(path) == {"wrapped_key": "k"}
            cert_auth_delete(new, INITIAL_ENTRY)
        with pytest.raises(LoginRefused):
            private_vault_login(old_config)
    finally:
        setup.stop()


def test_haven_cannot_register_a_login_with_other_policies_or_names(private_vault, session):
    certificate = private_vault.issue()["certificate"]
    cert_auth_register(session, entry_name(), certificate, [POLICY], "60s")
    with pytest.raises(PermissionDenied):
        cert_auth_register(session, entry_name(), certificate, [POLICY, "admin"], "60s")
    with pytest.raises(PermissionDenied):
        cert_auth_register(session, entry_name("admin"), certificate, [POLICY], "60s")
    with pytest.raises(PermissionDenied):  # hvac's helper sends every optional field: allowed_parameters refuse it
        session.call(lambda client: client.auth.cert.create_ca_certificate_role(
            name=entry_name(), certificate=certificate, token_policies=[POLICY]))


def test_the_client_role_issues_only_havens_name(session):
    with pytest.raises(PrivateVaultError, match="not allowed by this role"):
        issue_client_certificate(session, common_name="intranet.example.com")


SEED_004_POLICY = """
path "pki/issue/*" {capabilities = ["create","read", "update", "delete", "list"]}
path "sys/policy/*" {capabilities = ["create", "read", "update", "delete", "list"]}
path "auth/cert/certs/*" {capabilities = ["create", "read", "update", "delete", "list"]}
"""


def test_seed_004_sample_policy_cannot_escrow_keys_but_can_mint_an_admin_login(private_vault):
    """What the doc says about the Code42 sample policy, shown on a real server."""
    root = private_vault.root
    root.sys.create_or_update_policy("seed-004", SEED_004_POLICY)
    root.sys.create_or_update_policy("admin", 'path "*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }')
    token = root.auth.token.create(policies=["seed-004"], ttl="5m")["auth"]["client_token"]
    seed = hvac.Client(url=private_vault.address, verify=str(private_vault.server.ca_path), token=token)
    with pytest.raises(hvac.exceptions.Forbidden):
        seed.secrets.kv.v1.create_or_update_secret(path=new_key_path(), secret={"k": "v"}, method="POST",
                                                   mount_point="secret")
    identity = private_vault.identity()
    backdoor = entry_name("backdoor")
    seed.write_data(f"auth/cert/certs/{backdoor}", data={"certificate": identity.cert_pem.decode(),
                                                         "token_policies": "admin"})
    admin = private_vault_login(private_vault.config(cert_role=backdoor))
    assert "admin" in admin.auth.token.lookup_self()["data"]["policies"]


# --- key material on disk -----------------------------------------------------------------------

def test_tls_client_files_in_memory_create_nothing_on_disk(private_vault):
    identity = private_vault.identity()
    before = set(os.listdir(tempfile.gettempdir()))
    with tls_client_files(identity) as (cert_path, key_path_):
        assert cert_path.startswith("/proc/self/fd/") and key_path_.startswith("/proc/self/fd/")
        assert Path(key_path_).read_bytes() == identity.key_pem
        assert Path(cert_path).read_bytes() == identity.cert_pem + identity.chain_pem
        assert set(os.listdir(tempfile.gettempdir())) == before
    assert not os.path.exists(cert_path) and not os.path.exists(key_path_)


def test_tls_client_files_fallback_is_private_and_removed(private_vault):
    identity = private_vault.identity()
    with tls_client_files(identity, in_memory=False) as (cert_path, key_path_):
        assert Path(key_path_).read_bytes() == identity.key_pem
        assert stat.S_IMODE(os.stat(key_path_).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(key_path_)).st_mode) == 0o700
    for path in (cert_path, key_path_):
        assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))


def test_logins_leave_no_open_files_behind(private_vault):
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    with PrivateVaultSession(private_vault.config()) as warm_up:
        warm_up.token_ttl()
    before = open_fds()
    for _ in range(5):
        with PrivateVaultSession(private_vault.config()) as session:
            session.login()
            session.token_ttl()
    assert open_fds() == before


def test_pkcs12_build_round_trips(private_vault):
    identity = private_vault.identity()
    rebuilt = pkcs12_load(pkcs12_build(identity.cert_pem, identity.key_pem, identity.chain_pem, "other"), "other")
    assert rebuilt == identity


# --- the customer documentation -----------------------------------------------------------------

def test_the_documented_setup_commands_work_on_openbao(tmp_path):
    """Run every ```sh block of docs/private-keystore.md with the `bao` CLI, then use its haven.p12."""
    for tool in ("jq", "openssl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    server = start_dev_server(tmp_path)
    try:
        workdir = tmp_path / "admin"
        workdir.mkdir()
        script = "\n".join([
            "set -euo pipefail",
            "bao secrets disable secret",  # the doc's prose: a dev server's empty KV v2 `secret/`
            *_doc_shell_blocks(),
        ])
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))},
               "PATH": f"{os.path.dirname(bao_binary())}:{os.environ['PATH']}", "HOME": str(workdir),
               "BAO_ADDR": server.address, "BAO_CACERT": str(server.ca_path), "BAO_TOKEN": server.root_token,
               "HAVEN_CN": COMMON_NAME}
        result = subprocess.run(["bash", "-c", script], cwd=workdir, env=env, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        assert "WARNING" not in result.stderr, result.stderr
        capabilities = [line for line in result.stdout.splitlines() if re.fullmatch(r"[a-z, ]+", line)]
        assert capabilities == ["create, read", "deny", "create, delete, read, update", "deny"]
        assert not (workdir / "haven-key.pem").exists() and not (workdir / "haven-cert.json").exists()
        for written in ("haven.p12", "haven-cert.pem", "haven-ca-chain.pem"):  # the doc's `umask 077`
            assert stat.S_IMODE((workdir / written).stat().st_mode) == 0o600, written

        password = re.search(r"^PKCS12 password .*: (\S+)$", result.stdout, re.M).group(1)
        setup = PrivateVaultSetup(server=server, pkcs12=(workdir / "haven.p12").read_bytes(), password=password)
        with PrivateVaultSession(setup.config()) as session:
            path = new_key_path()
            session.create_key(path, {"wrapped_key": "k"})
            with pytest.raises(KeyExists):
                session.create_key(path, {"wrapped_key": "other"})
    finally:
        server.stop()


def _doc_shell_blocks() -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", DOC.read_text(), re.S | re.M)


def _certificate(identity: ClientIdentity) -> x509.Certificate:
    return x509.load_pem_x509_certificate(identity.cert_pem)


# --- the audit device and the Vault's health ----------------------------------------------------

def test_the_documented_audit_device_records_havens_requests(private_vault, session):
    path = new_key_path()
    session.create_key(path, {"wrapped_key": "k"})
    requests_ = [e["request"] for e in audit_entries(private_vault.server.audit_log) if e["type"] == "request"]
    assert {"path": f"secret/{path}", "operation": "create"} in [
        {"path": r["path"], "operation": r["operation"]} for r in requests_]
    assert stat.S_IMODE(private_vault.server.audit_log.stat().st_mode) == 0o600


def test_the_health_of_a_private_vault_is_read_without_logging_in(tmp_path, private_vault):
    assert private_vault_health(private_vault.address, private_vault.ca_pem) == "unsealed"
    pki_root_ca = private_vault.root.secrets.pki.read_ca_certificate(mount_point="pki").encode()
    assert private_vault_health(private_vault.address, pki_root_ca) == "untrusted"
    assert private_vault_health(f"https://127.0.0.1:{free_port()}", private_vault.ca_pem, timeout=2) == "unreachable"
    setup = start_private_vault(tmp_path)
    try:
        setup.root.sys.seal()
        assert private_vault_health(setup.address, setup.ca_pem) == "sealed"
    finally:
        setup.stop()

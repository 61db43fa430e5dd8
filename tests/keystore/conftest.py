"""Keystore test helpers: enrolled devices that talk to the real OpenBao of the suite."""
import base64

import pytest

from formats.keys import derive_keys, generate_user_key, key_id_for


def escrow(client, key: bytes):
    return client.post("/api/v1/keys/escrow", {"key": base64.b64encode(key).decode(), "key_id": key_id_for(key)},
                       format="json")


@pytest.fixture
def fresh_key():
    return generate_user_key()


def keys_of(key: bytes):
    return derive_keys(key)


@pytest.fixture
def sealable_openbao(tmp_path):
    """A dev OpenBao of this test's own, configured like Haven's, that the test may seal."""
    import subprocess

    import hvac

    from keystore.embedded import bao_binary, configure_vault
    from tests.conftest import _initialized
    from tests.support import free_port, wait_until

    port = free_port()
    process = subprocess.Popen([bao_binary(), "server", "-dev", "-dev-root-token-id=root",
                                f"-dev-listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    root = hvac.Client(url=f"http://127.0.0.1:{port}", token="root")
    try:
        wait_until(lambda: _initialized(root), timeout=20, what="OpenBao")
        configure_vault(root)
        token = root.auth.token.create(policies=["haven-escrow"], no_default_policy=True)["auth"]["client_token"]
        yield {"url": f"http://127.0.0.1:{port}", "root": root, "app_token": token}
    finally:
        process.terminate()
        process.wait(timeout=10)

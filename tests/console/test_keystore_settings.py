"""The console's keystore page: an admin uploads a PKCS12; bad uploads get clear errors."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from keystore.models import PrivateKeystore
from tests.conftest import PASSWORD
from tests.keystore.private_vault_fixture import private_vault_fixture  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow
STORAGE_KEY = "a-test-storage-key-outside-the-data-folder"


@pytest.fixture(autouse=True)
def _production_settings(settings):
    """Tests run as production does (PostgreSQL): a storage key is required. The test Vaults listen on
    loopback, which only an operator's setting allows."""
    settings.HAVEN_STORAGE_KEY = STORAGE_KEY
    settings.HAVEN_PRIVATE_KEYSTORE_ALLOW_PRIVATE = True


def _browser(user):
    client = Client()
    assert client.login(username=user.email, password=PASSWORD)
    return client


def _post(browser, setup, **overrides):
    data = {"action": "configure", "address": setup.address, "ca_pem": setup.ca_pem.decode(),
            "password": setup.password, "cert_role": "haven-initial",
            "pkcs12": SimpleUploadedFile("haven.p12", setup.pkcs12, content_type="application/x-pkcs12")}
    data.update(overrides)
    return browser.post("/keystore/", data)


def test_an_admin_uploads_a_pkcs12_and_haven_logs_in(vault, private_vault, alice):
    response = _post(_browser(alice), private_vault)
    assert response.status_code == 302
    page = _browser(alice).get("/keystore/").content.decode()
    assert private_vault.address in page and "configured, not in use" in page


@pytest.mark.parametrize("overrides,message", [
    ({"password": "not the password"}, "password"),
    ({"pkcs12": SimpleUploadedFile("big.p12", b"x" * (5 * 1024 * 1024 + 1))}, "larger than 5 MB"),
    ({"pkcs12": SimpleUploadedFile("notes.txt", b"hello")}, "PKCS12"),
])
def test_bad_uploads_are_clear_errors(vault, private_vault, alice, overrides, message):
    response = _post(_browser(alice), private_vault, **overrides)
    assert response.status_code == 400 and message in response.content.decode()
    assert not PrivateKeystore.objects.exists()


def test_only_admins_reach_the_keystore_page(vault, private_vault, bob):
    assert _browser(bob).get("/keystore/").status_code == 403
    assert _post(_browser(bob), private_vault).status_code == 403
    assert not PrivateKeystore.objects.exists()


def test_the_page_shows_the_vaults_state_and_where_each_key_lives(vault, private_vault, alice, org_a):
    from keystore.migration import keystore_migration_run, keystore_migration_start
    from tests.keystore.test_private_keystore import _escrowed_users

    keys = _escrowed_users(org_a, 2)
    assert _post(_browser(alice), private_vault).status_code == 302
    keystore_migration_run(migration=keystore_migration_start(organization=org_a, target="private",
                                                              actor_label="test", keep_source=True))
    page = _browser(alice).get("/keystore/").content.decode()
    keystore = PrivateKeystore.objects.get()
    assert "unsealed" in page and keystore.cert_fingerprint in page
    assert "0 key(s)" in page and "2 copy(ies) kept in Haven&#x27;s keystore" in page
    for user in keys:
        assert user.email in page
    assert page.count("The organization&#x27;s private keystore") == 2


def test_an_admin_may_keep_the_source_copies(vault, private_vault, alice):
    from keystore.models import KeystoreMigration

    browser = _browser(alice)
    assert _post(browser, private_vault).status_code == 302
    response = browser.post("/keystore/", {"action": "migrate", "target": "private", "keep_source": "on"})
    assert response.status_code == 302
    assert KeystoreMigration.objects.get().keep_source
    assert "Keep the source copies" in browser.get("/keystore/").content.decode()


def test_the_ca_field_asks_for_pasted_text(vault, alice):
    page = _browser(alice).get("/keystore/").content.decode()
    assert "Paste the text of the PEM file" in page and "<textarea" in page


def test_production_without_a_storage_key_refuses_the_upload_clearly(vault, private_vault, alice, settings):
    settings.HAVEN_STORAGE_KEY = ""
    response = _post(_browser(alice), private_vault)
    assert response.status_code == 400 and "HAVEN_STORAGE_KEY" in response.content.decode()
    assert not PrivateKeystore.objects.exists()

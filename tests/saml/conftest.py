"""Every SAML test runs as production does: the SP key pair sealed in the database under a
storage key kept outside the data folder (console/saml/sp_keys.py)."""
import pytest

STORAGE_KEY = "a-saml-test-storage-key-outside-the-data-folder"


@pytest.fixture(autouse=True)
def _storage_key(settings):
    settings.HAVEN_STORAGE_KEY = STORAGE_KEY

"""The console's single sign-on page, the login page's SSO form and one-time enrollment codes."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from accounts.models import SamlSettings
from console.saml.metadata import MetadataError, metadata_fetch
from tests.conftest import PASSWORD
from tests.saml.idp import make_idp


def _browser(user):
    client = Client()
    assert client.login(username=user.email, password=PASSWORD)
    return client


def test_an_admin_uploads_idp_metadata_and_sees_the_sp_values(alice, org_a, tmp_path, settings):
    settings.HAVEN_PUBLIC_URL = "https://haven.example"
    sp_metadata = Client().get(f"/saml/{org_a.uuid}/metadata/").content.decode()
    idp = make_idp(tmp_path / "idp", "https://idp.example", sp_metadata)
    browser = _browser(alice)
    page = browser.get("/sso/").content.decode()
    assert f"https://haven.example/saml/{org_a.uuid}/acs/" in page
    response = browser.post("/sso/", {"enabled": "on", "attribute_groups": "groups",
                                      "metadata_file": SimpleUploadedFile("idp.xml", idp.metadata_xml.encode())})
    assert response.status_code == 302
    saml = SamlSettings.objects.get(organization=org_a)
    assert saml.enabled and saml.idp_entity_id == "https://idp.example"


def test_metadata_that_is_not_an_idp_is_refused(alice, org_a):
    browser = _browser(alice)
    for bad in (b"<not-xml", b'<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x"/>'):
        response = browser.post("/sso/", {"enabled": "on", "metadata_file": SimpleUploadedFile("idp.xml", bad)})
        assert response.status_code == 400
    assert not SamlSettings.objects.filter(organization=org_a, enabled=True).exists()


def test_only_admins_configure_sso(bob):
    assert _browser(bob).get("/sso/").status_code == 403


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/metadata", "http://10.1.2.3/md", "http://localhost/md",
                                 "ftp://idp.example/md"])
def test_metadata_is_fetched_only_from_public_addresses(url, settings):
    settings.HAVEN_SAML_METADATA_ALLOW_PRIVATE = False
    with pytest.raises(MetadataError):
        metadata_fetch(url)


def test_an_operator_may_allow_private_metadata_addresses(settings, tmp_path):
    import http.server
    import threading

    settings.HAVEN_SAML_METADATA_ALLOW_PRIVATE = True
    (tmp_path / "md.xml").write_text("<metadata/>")
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(tmp_path))  # noqa: E731
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.handle_request, daemon=True).start()
    try:
        assert metadata_fetch(f"http://127.0.0.1:{server.server_port}/md.xml") == "<metadata/>"
    finally:
        server.server_close()


def test_a_signed_in_user_gets_a_one_time_enrollment_code(bob):
    from accounts.models import EnrollmentCode

    browser = _browser(bob)
    page = browser.post("/devices/enroll/").content.decode()
    assert "--code" in page and EnrollmentCode.objects.filter(user=bob, used_at__isnull=True).count() == 1

"""The console's API clients page: administrators create a client (its key shown once, on that
page only) and revoke it; nobody else reaches it; another organization's client is a 404."""
import re

from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ApiClient, AuditEvent
from tests.conftest import PASSWORD

KEY = re.compile(r'<code id="api-key">([^<]+)</code>')


def _browser(user):
    client = Client()
    assert client.login(username=user.email, password=PASSWORD)
    return client


def _api(key):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return api


def test_an_admin_creates_a_client_whose_key_is_shown_once_and_works(alice):
    browser = _browser(alice)
    page = browser.post("/api-clients/", {"name": "SOAR", "scopes": ["devices:read", "restores:write"]})
    assert page.status_code == 200
    key = KEY.search(page.content.decode()).group(1)
    client = ApiClient.objects.get()
    assert (client.name, client.scopes, client.created_by) == ("SOAR", ["devices:read", "restores:write"], alice)
    assert key not in client.key_hash
    listing = browser.get("/api-clients/").content.decode()
    assert key not in listing and "SOAR" in listing and client.key_prefix in listing  # never shown again
    assert _api(key).get("/api/v1/public/devices").status_code == 200
    assert b"API clients" in browser.get("/").content  # in the navigation


def test_revoking_in_the_console_is_audited_and_the_key_stops_working(alice):
    browser = _browser(alice)
    key = KEY.search(browser.post("/api-clients/", {"name": "SIEM", "scopes": ["audit:read"]}).content.decode()).group(1)
    client = ApiClient.objects.get()
    assert browser.post("/api-clients/", {"action": "revoke", "client": str(client.uuid)}).status_code == 302
    assert _api(key).get("/api/v1/public/audit").status_code == 401
    event = AuditEvent.objects.get(action="api_client.revoke")
    assert (event.actor, event.target_uuid) == (alice, client.uuid)
    assert "revoked" in browser.get("/api-clients/").content.decode()


def test_bad_input_is_refused_with_the_form(alice):
    browser = _browser(alice)
    for data in ({"name": "x"}, {"name": "x", "scopes": ["root"]}, {"scopes": ["audit:read"]}):
        response = browser.post("/api-clients/", data)
        assert response.status_code == 400 and not KEY.search(response.content.decode())
    assert not ApiClient.objects.exists()


def test_only_administrators_reach_the_page(alice, bob, org_a):
    from tests.conftest import _user

    analyst = _user(org_a, "sam@a.example", "security_analyst")
    for user in (bob, analyst):
        browser = _browser(user)
        assert browser.get("/api-clients/").status_code == 403
        assert browser.post("/api-clients/", {"name": "x", "scopes": ["audit:read"]}).status_code == 403
        assert b"API clients" not in browser.get("/").content
    assert not ApiClient.objects.exists()


def test_another_organizations_admin_cannot_revoke_the_client(alice, mallory):
    _browser(alice).post("/api-clients/", {"name": "Alices-SOAR", "scopes": ["audit:read"]})
    client = ApiClient.objects.get()
    browser = _browser(mallory)
    assert browser.post("/api-clients/", {"action": "revoke", "client": str(client.uuid)}).status_code == 404
    assert browser.post("/api-clients/", {"action": "revoke", "client": "nope"}).status_code == 404
    assert "Alices-SOAR" not in browser.get("/api-clients/").content.decode()
    client.refresh_from_db()
    assert client.revoked_at is None


def test_the_form_needs_csrf(alice):
    browser = Client(enforce_csrf_checks=True)
    assert browser.login(username=alice.email, password=PASSWORD)
    assert browser.post("/api-clients/", {"name": "x", "scopes": ["audit:read"]}).status_code == 403
    assert not ApiClient.objects.exists()

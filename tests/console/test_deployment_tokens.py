"""The console's Deployment page: administrators create a token (shown once), list and revoke it."""
import re

from django.test import Client

from accounts.models import DeploymentToken, Group
from tests.conftest import PASSWORD


def _browser(user):
    client = Client()
    assert client.login(username=user.email, password=PASSWORD)
    return client


def test_an_admin_creates_a_token_shown_once_and_revokes_it(alice, org_a):
    group = Group.objects.create(organization=org_a, name="Laptops")
    browser = _browser(alice)
    assert 'href="/deployment/"' in browser.get("/").content.decode()
    page = browser.post("/deployment/", {"action": "create", "label": "Intune", "days": "5", "max_uses": "20",
                                         "group": str(group.pk), "create_users": "on"}).content.decode()
    raw = re.search(r'<code id="deployment-token">([^<]+)</code>', page).group(1)
    token = DeploymentToken.objects.get()
    assert raw.startswith("hvt_") and raw not in token.token_hash and token.created_by == alice
    assert (token.label, token.max_uses, token.group, token.create_users) == ("Intune", 20, group, True)
    listing = browser.get("/deployment/").content.decode()
    assert raw not in listing and token.token_prefix in listing and "active" in listing
    browser.post("/deployment/", {"action": "revoke", "token": str(token.uuid)})
    token.refresh_from_db()
    assert token.state == "revoked"


def test_invalid_settings_are_400_and_store_nothing(alice):
    response = _browser(alice).post("/deployment/", {"action": "create", "days": "0"})
    assert response.status_code == 400 and not DeploymentToken.objects.exists()


def test_plain_users_get_403(bob):
    browser = _browser(bob)
    assert browser.get("/deployment/").status_code == 403
    assert 'href="/deployment/"' not in browser.get("/").content.decode()


def test_another_orgs_admin_neither_sees_nor_revokes_the_token(alice, mallory):
    _browser(alice).post("/deployment/", {"action": "create", "days": "7"})
    token = DeploymentToken.objects.get()
    other = _browser(mallory)
    assert token.token_prefix not in other.get("/deployment/").content.decode()
    assert other.post("/deployment/", {"action": "revoke", "token": str(token.uuid)}).status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_a_group_of_another_org_cannot_be_chosen(alice, mallory, org_b):
    theirs = Group.objects.create(organization=org_b, name="Theirs")
    response = _browser(alice).post("/deployment/", {"action": "create", "days": "7", "group": str(theirs.pk)})
    assert response.status_code == 400 and not DeploymentToken.objects.exists()

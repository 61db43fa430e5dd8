"""The console's provisioning page: SCIM tokens (shown once, revocable) and group → role mapping."""
import re

from django.test import Client

from accounts.models import Group, ScimToken
from accounts.services import scim_token_lookup
from tests.conftest import PASSWORD


def _browser(user):
    client = Client()
    assert client.login(username=user.email, password=PASSWORD)
    return client


def test_an_admin_creates_and_revokes_a_scim_token(alice):
    browser = _browser(alice)
    page = browser.post("/provisioning/", {"action": "create", "label": "Okta"}).content.decode()
    raw = re.search(r'<code id="scim-token">([^<]+)</code>', page).group(1)
    token = scim_token_lookup(raw)
    assert token is not None and token.organization == alice.organization and raw not in token.token_hash
    browser.post("/provisioning/", {"action": "revoke", "token": str(token.uuid)})
    assert scim_token_lookup(raw) is None
    assert ScimToken.objects.get().revoked_at is not None


def test_another_orgs_admin_cannot_revoke_the_token(alice, mallory):
    _browser(alice).post("/provisioning/", {"action": "create", "label": "Okta"})
    token = ScimToken.objects.get()
    assert _browser(mallory).post("/provisioning/", {"action": "revoke", "token": str(token.uuid)}).status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_mapping_a_group_to_a_role_changes_its_members_roles(alice, bob, org_a):
    group = Group.objects.create(organization=org_a, name="Helpdesk")
    group.members.add(bob)
    _browser(alice).post(f"/groups/{group.uuid}/role", {"role": "restore_operator"})
    bob.refresh_from_db()
    assert bob.role == "restore_operator"
    _browser(alice).post(f"/groups/{group.uuid}/role", {"role": ""})
    bob.refresh_from_db()
    assert bob.role == "user"


def test_plain_users_reach_no_provisioning(bob):
    assert _browser(bob).get("/provisioning/").status_code == 403


def test_a_group_role_change_is_audited(alice, bob, org_a):
    from accounts.models import AuditEvent

    group = Group.objects.create(organization=org_a, name="Helpdesk")
    _browser(alice).post(f"/groups/{group.uuid}/role", {"role": "security_analyst"})
    event = AuditEvent.objects.get(action="group.role")
    assert event.target_uuid == group.uuid and event.actor == alice and event.detail == {"role": "security_analyst"}


def test_an_unknown_role_is_refused_and_changes_nothing(alice, org_a):
    group = Group.objects.create(organization=org_a, name="Helpdesk")
    assert _browser(alice).post(f"/groups/{group.uuid}/role", {"role": "god"}).status_code == 403
    group.refresh_from_db()
    assert group.role == ""


def test_another_orgs_admin_gets_404_for_the_group(alice, mallory, org_a):
    group = Group.objects.create(organization=org_a, name="Helpdesk")
    assert _browser(mallory).post(f"/groups/{group.uuid}/role", {"role": "org_admin"}).status_code == 404
    group.refresh_from_db()
    assert group.role == ""


def test_viewing_the_sso_page_writes_nothing_and_saving_is_audited(alice):
    from accounts.models import AuditEvent, SamlSettings

    browser = _browser(alice)
    assert browser.get("/sso/").status_code == 200
    assert not SamlSettings.objects.exists()
    response = browser.post("/sso/", {"attribute_email": "mail", "attribute_name": "cn", "attribute_groups": "g"})
    assert response.status_code == 302
    saml = SamlSettings.objects.get(organization=alice.organization)
    assert (saml.attribute_email, saml.enabled) == ("mail", False)
    event = AuditEvent.objects.get(action="saml.settings.update")
    assert event.actor == alice and event.detail["enabled"] is False

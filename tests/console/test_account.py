"""The account page: changing one's own password (audited, this session kept) and its forms' rules."""
from django.test import Client

from accounts.models import AuditEvent, User
from tests.conftest import PASSWORD

NEW_PASSWORD = "an entirely new passphrase"


def _browser(user, **kwargs):
    client = Client(**kwargs)
    assert client.login(username=user.email, password=PASSWORD)
    return client


def _change(client, old=PASSWORD, new=NEW_PASSWORD, confirm=None):
    return client.post("/account/", {"action": "password", "old_password": old, "new_password1": new,
                                     "new_password2": confirm or new})


def test_the_account_page_needs_a_sign_in(db):
    response = Client().get("/account/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_it_changes_the_password_keeps_this_session_and_ends_others(bob):
    this, other = _browser(bob), _browser(bob)
    assert _change(this).status_code == 302
    assert this.get("/").status_code == 200
    assert other.get("/").status_code == 302  # Django's session hash follows the password
    assert Client().login(username=bob.email, password=NEW_PASSWORD)
    assert not Client().login(username=bob.email, password=PASSWORD)
    event = AuditEvent.objects.get(action="user.password_change")
    assert event.actor == bob and event.target_uuid == bob.uuid and NEW_PASSWORD not in str(event.detail)


def test_a_wrong_old_password_or_a_weak_new_one_changes_nothing(bob):
    client = _browser(bob)
    assert _change(client, old="not my password").status_code == 400
    assert _change(client, new="short").status_code == 400
    assert _change(client, confirm="a different passphrase").status_code == 400
    assert Client().login(username=bob.email, password=PASSWORD)
    assert not AuditEvent.objects.filter(action="user.password_change").exists()


def test_single_sign_on_people_get_no_password_form(org_a):
    sso = User.objects.create_user("sam@a.example", None, organization=org_a)
    client = Client()
    client.force_login(sso, backend="console.saml.backends.OrganizationSamlBackend")
    page = client.get("/account/").content.decode()
    assert "Change password" not in page and "identity provider" in page
    assert client.get("/account/two-factor/").status_code == 302
    assert _change(client, old="").status_code == 400


def test_account_forms_need_the_csrf_token(bob):
    client = _browser(bob, enforce_csrf_checks=True)
    assert _change(client).status_code == 403
    assert Client().login(username=bob.email, password=PASSWORD)


def test_an_unknown_action_is_a_400(bob):
    assert _browser(bob).post("/account/", {"action": "bogus"}).status_code == 400


def test_the_header_links_to_the_account_page(bob):
    assert b'href="/account/"' in _browser(bob).get("/").content

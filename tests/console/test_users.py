"""The console's Users pages: scoped lists and pages, administrators' edits, SCIM's ownership."""
import pytest
from django.test import Client

from accounts.models import AuditEvent, Device, Role, ScimToken, User
from accounts.services import scim_token_issue
from tests.conftest import PASSWORD


def _browser(user):
    client = Client()
    assert client.login(username=user.email, password=PASSWORD)
    return client


@pytest.fixture
def many_users(org_a):
    User.objects.bulk_create([User(organization=org_a, email=f"person{n:03d}@a.example", full_name=f"Person {n}",
                                   password="!") for n in range(120)])


def test_the_list_shows_only_the_admins_own_organization(alice, bob, mallory):
    page = _browser(alice).get("/users/").content.decode()
    assert alice.email in page and bob.email in page and mallory.email not in page


def test_a_plain_user_sees_only_themselves(alice, bob):
    page = _browser(bob).get("/users/").content.decode()
    assert bob.email in page and alice.email not in page
    assert b'href="/users/"' not in _browser(bob).get("/").content  # no nav link for plain users


def test_search_by_email_and_name(alice, bob, org_a):
    User.objects.create_user("carol@a.example", PASSWORD, organization=org_a, full_name="Carol Smith")
    client = _browser(alice)
    page = client.get("/users/", {"q": "smith"}).content.decode()
    assert "carol@a.example" in page and bob.email not in page
    page = client.get("/users/", {"q": "BOB@"}).content.decode()
    assert bob.email in page and "carol@a.example" not in page
    assert "Nobody matches" in client.get("/users/", {"q": "zzz"}).content.decode()


def test_sort_by_devices_and_last_login(alice, bob, enrolled):
    enrolled(bob, "one")
    enrolled(bob, "two")
    client = _browser(alice)

    def table(sort):  # the header names the signed-in administrator too: look at the table only
        return client.get("/users/", {"sort": sort}).content.decode().split('<table class="users">', 1)[1]

    page = table("-devices")
    assert page.index(bob.email) < page.index(alice.email)
    page = table("devices")
    assert page.index(alice.email) < page.index(bob.email)
    page = table("-last_login")
    assert page.index(alice.email) < page.index(bob.email)  # alice signed in; bob's agent did not
    page = table("-email")
    assert page.index(bob.email) < page.index(alice.email)


def test_bad_list_parameters_fall_back_rather_than_fail(alice):
    client = _browser(alice)
    for params in ({"sort": "password"}, {"page": "-3"}, {"page": "many"}, {"page": "99999"}):
        assert client.get("/users/", params).status_code == 200


def test_the_list_pages_in_a_fixed_number_of_queries(alice, many_users, django_assert_max_num_queries):
    client = _browser(alice)
    with django_assert_max_num_queries(6):  # session, user, count, SCIM token, the page, the nav alert count
        page = client.get("/users/", {"page": 2}).content.decode()
    assert "Page 2 of 3" in page and page.count('href="/users/') >= 50


def test_an_admin_creates_a_user_with_a_password(alice):
    client = _browser(alice)
    response = client.post("/users/new", {"email": "Dave@A.example", "full_name": "Dave", "role": "restore_operator",
                                          "password": "a long enough passphrase"})
    dave = User.objects.get(email="dave@a.example")
    assert response.status_code == 302 and response["Location"] == f"/users/{dave.uuid}/"
    assert dave.organization == alice.organization and dave.role == Role.RESTORE_OPERATOR
    assert Client().login(username="dave@a.example", password="a long enough passphrase")
    event = AuditEvent.objects.get(action="user.create", target_uuid=dave.uuid)
    assert event.actor == alice and "passphrase" not in str(event.detail)


def test_a_user_created_without_a_password_signs_in_through_sso_only(alice):
    _browser(alice).post("/users/new", {"email": "erin@a.example", "role": "user"})
    assert not User.objects.get(email="erin@a.example").has_usable_password()


def test_creation_refuses_a_taken_email_weak_password_and_non_admins(alice, bob, mallory):
    client = _browser(alice)
    response = client.post("/users/new", {"email": mallory.email, "role": "user"})
    assert response.status_code == 400 and b"cannot be used" in response.content
    assert User.objects.get(email=mallory.email).organization == mallory.organization
    assert client.post("/users/new", {"email": "f@a.example", "role": "user", "password": "123"}).status_code == 400
    assert client.post("/users/new", {"email": "f@a.example", "role": "root"}).status_code == 400
    assert _browser(bob).post("/users/new", {"email": "g@a.example", "role": "org_admin"}).status_code == 403
    assert not User.objects.filter(email__in=["f@a.example", "g@a.example"]).exists()


def test_creation_refuses_an_address_in_a_domain_another_organization_verified(alice, mallory):
    """Org B's people sign in through org B's IdP: org A's admin cannot make accounts in b.example,
    and gets the same answer as for a taken address. Domains nobody verified stay usable."""
    from accounts.domains import verified_domains_change

    verified_domains_change(organization=mallory.organization, add=["b.example"], remove=[], actor_label="operator")
    client = _browser(alice)
    response = client.post("/users/new", {"email": "new.hire@B.example", "role": "user"})
    assert response.status_code == 400 and b"cannot be used" in response.content
    assert not User.objects.filter(email="new.hire@b.example").exists()
    assert client.post("/users/new", {"email": "contractor@elsewhere.example", "role": "user"}).status_code == 302


def test_an_admin_changes_a_role_audited(alice, bob):
    assert _browser(alice).post(f"/users/{bob.uuid}/role", {"role": "security_analyst"}).status_code == 302
    bob.refresh_from_db()
    assert bob.role == Role.SECURITY_ANALYST
    assert AuditEvent.objects.get(action="user.role").detail == {"from": "user", "to": "security_analyst"}


def test_the_last_admin_cannot_demote_or_deactivate_themselves(alice):
    client = _browser(alice)
    page = client.post(f"/users/{alice.uuid}/role", {"role": "user"}, follow=True).content.decode()
    assert "no active administrator left" in page
    client.post(f"/users/{alice.uuid}/deactivate")
    alice.refresh_from_db()
    assert alice.role == Role.ORG_ADMIN and alice.is_active


def test_deactivation_deauthorizes_every_device_as_scim_does(alice, bob, enrolled):
    agent = enrolled(bob, "bob-laptop")
    enrolled(bob, "bob-desktop")
    assert _browser(alice).post(f"/users/{bob.uuid}/deactivate").status_code == 302
    bob.refresh_from_db()
    assert not bob.is_active
    assert not Device.objects.filter(owner=bob, authorized=True).exists()
    assert not Device.objects.filter(owner=bob, tokens__revoked_at__isnull=True).exists()
    assert agent.get("/api/v1/archives").status_code == 401
    assert not Client().login(username=bob.email, password=PASSWORD)
    assert AuditEvent.objects.filter(action="user.deactivate", target_uuid=bob.uuid, actor_label=alice.email).exists()
    assert AuditEvent.objects.filter(action="device.deauthorize", actor_label=alice.email).count() == 2


def test_reactivation_lets_the_user_in_but_keeps_devices_deauthorized(alice, bob, enrolled):
    enrolled(bob)
    client = _browser(alice)
    client.post(f"/users/{bob.uuid}/deactivate")
    assert client.post(f"/users/{bob.uuid}/reactivate").status_code == 302
    bob.refresh_from_db()
    assert bob.is_active and Client().login(username=bob.email, password=PASSWORD)
    assert not Device.objects.filter(owner=bob, authorized=True).exists()


def test_scim_provisioned_orgs_refuse_what_scim_owns(alice, bob, org_a):
    scim_token_issue(organization=org_a, label="Okta")
    client = _browser(alice)
    page = client.post("/users/new", {"email": "h@a.example", "role": "user"}, follow=True).content.decode()
    assert "provisions its users through SCIM" in page
    assert not User.objects.filter(email="h@a.example").exists()
    for action, data in (("role", {"role": "org_admin"}), ("deactivate", {}), ("reactivate", {})):
        page = client.post(f"/users/{bob.uuid}/{action}", data, follow=True).content.decode()
        assert "through SCIM" in page, action
    bob.refresh_from_db()
    assert bob.role == Role.USER and bob.is_active
    assert "Add a user" not in client.get("/users/").content.decode()


def test_a_revoked_scim_token_gives_the_console_back(alice, bob, org_a):
    scim_token_issue(organization=org_a, label="Okta")
    ScimToken.objects.update(revoked_at="2026-01-01T00:00:00Z")
    _browser(alice).post(f"/users/{bob.uuid}/role", {"role": "restore_operator"})
    bob.refresh_from_db()
    assert bob.role == Role.RESTORE_OPERATOR


def test_non_admins_cannot_change_anyone(alice, bob, org_a):
    analyst = User.objects.create_user("ann@a.example", PASSWORD, organization=org_a, role=Role.SECURITY_ANALYST)
    for actor in (bob, analyst):
        assert _browser(actor).post(f"/users/{alice.uuid}/role", {"role": "user"}).status_code == 403
        assert _browser(actor).post(f"/users/{alice.uuid}/deactivate").status_code == 403
    alice.refresh_from_db()
    assert alice.role == Role.ORG_ADMIN and alice.is_active


def test_another_orgs_users_are_404_for_pages_and_edits(alice, bob, mallory):
    client = _browser(mallory)
    assert client.get(f"/users/{bob.uuid}/").status_code == 404
    assert client.post(f"/users/{bob.uuid}/deactivate").status_code == 404
    assert client.post(f"/users/{bob.uuid}/role", {"role": "org_admin"}).status_code == 404
    assert client.get("/users/not-a-uuid/").status_code == 404
    assert _browser(bob).get(f"/users/{alice.uuid}/").status_code == 404  # a plain user: only themselves
    bob.refresh_from_db()
    assert bob.is_active and bob.role == Role.USER


def test_the_user_page_shows_devices_archives_and_key_history_as_scoped(alice, bob, org_a, enrolled, vault):
    from keystore.audit import key_access_record

    agent = enrolled(bob, "bob-laptop")
    device = Device.objects.get(uuid=agent.enrollment["device_id"])
    key_access_record(subject=bob, purpose="web_restore", outcome="succeeded", actor=alice, actor_label=alice.email)
    admin_page = _browser(alice).get(f"/users/{bob.uuid}/").content.decode()
    assert "bob-laptop" in admin_page and str(device.archives.get().uuid) in admin_page
    assert "Web restore" in admin_page
    analyst = User.objects.create_user("ann@a.example", PASSWORD, organization=org_a, role=Role.SECURITY_ANALYST)
    analyst_page = _browser(analyst).get(f"/users/{bob.uuid}/").content.decode()
    # Analysts see the device, not the archive nor the key's history (DESIGN §1; the selectors).
    assert "bob-laptop" in analyst_page and str(device.archives.get().uuid) not in analyst_page
    assert "Web restore" not in analyst_page
    own_page = _browser(bob).get(f"/users/{bob.uuid}/").content.decode()
    assert "Web restore" in own_page and "Deactivate" not in own_page


def test_the_user_page_runs_a_fixed_number_of_queries(alice, bob, enrolled, django_assert_max_num_queries):
    for n in range(5):
        enrolled(bob, f"box-{n}")
    client = _browser(alice)
    with django_assert_max_num_queries(9):  # the same with 5 devices as with 1 (+ the nav alert count): no per-row query
        assert client.get(f"/users/{bob.uuid}/").status_code == 200


"""An IdP provisions addresses in its organization's verified domains only, and learns nothing
about other tenants' users: an address another organization holds gets the answer of an address
outside the domains, byte for byte, whether or not anyone holds it."""
import pytest

from accounts.models import User
from accounts.services import user_ensure
from tests.scim.conftest import ScimClient, op, user_body, verify_domains


@pytest.fixture
def acme_and_globex(org_a, org_b, scim_token):
    """Org A is Acme (acme.test), org B is Globex (globex.test); alice@acme.test is Acme's."""
    verify_domains(org_a, "acme.test", "a.example")
    verify_domains(org_b, "globex.test")
    alice = user_ensure(organization=org_a, email="alice@acme.test", role="user", password=None).user
    return alice, ScimClient(scim_token(org_a)), ScimClient(scim_token(org_b))


def _refusal(response) -> bytes:
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/scim+json"
    assert response.json()["scimType"] == "invalidValue"
    return response.content


def test_another_tenant_cannot_tell_whether_an_address_exists(acme_and_globex):
    alice, _, globex = acme_and_globex

    existing = globex.post("Users", user_body("alice@acme.test"))
    unused = globex.post("Users", user_body("nobody@acme.test"))
    elsewhere = globex.post("Users", user_body("someone@unverified.example"))

    assert _refusal(existing) == _refusal(unused) == _refusal(elsewhere)
    assert b"acme" not in existing.content.lower() and b"Org A" not in existing.content
    alice.refresh_from_db()
    assert alice.organization.name == "Org A" and alice.is_active


def test_another_tenant_cannot_claim_unused_addresses(acme_and_globex, org_a):
    _, acme, globex = acme_and_globex

    _refusal(globex.post("Users", user_body("newhire@acme.test")))
    assert not User.objects.filter(email="newhire@acme.test").exists()

    created = acme.post("Users", user_body("newhire@acme.test"))
    assert created.status_code == 201, created.content
    assert User.objects.get(email="newhire@acme.test").organization == org_a


def test_a_user_name_change_stays_in_the_verified_domains(acme_and_globex, org_b):
    alice, acme, globex = acme_and_globex
    gina = user_ensure(organization=org_b, email="gina@globex.test", role="user", password=None).user

    for body in (op("replace", "userName", "alice@acme.test"), op("replace", "userName", "gina2@acme.test")):
        _refusal(globex.patch(f"Users/{gina.uuid}", body))
    _refusal(globex.put(f"Users/{gina.uuid}", user_body("unused@acme.test")))
    gina.refresh_from_db()
    assert gina.email == "gina@globex.test"

    moved = acme.patch(f"Users/{alice.uuid}", op("replace", "userName", "alice.smith@acme.test"))
    assert moved.status_code == 200, moved.content
    assert not User.objects.filter(email__in=["gina2@acme.test", "unused@acme.test"]).exists()


def test_an_address_held_by_another_org_inside_a_verified_domain_is_refused_like_any_other(
        acme_and_globex, org_b):
    """Two organizations may not both own a domain, but an address created before the rule (or by
    an operator) can sit in another org: the IdP of the domain's owner gets the same refusal."""
    _, acme, _ = acme_and_globex
    user_ensure(organization=org_b, email="legacy@acme.test", role="user", password=None)

    held = acme.post("Users", user_body("legacy@acme.test"))
    unverified = acme.post("Users", user_body("legacy@unverified.example"))

    assert _refusal(held) == _refusal(unverified)
    assert User.objects.get(email="legacy@acme.test").organization == org_b


def test_an_org_without_verified_domains_provisions_nobody(org_a, scim_token):
    verify_domains(org_a)
    scim = ScimClient(scim_token(org_a))

    _refusal(scim.post("Users", user_body("carol@a.example")))
    assert not User.objects.filter(email="carol@a.example").exists()


def test_existing_users_outside_the_domains_keep_working(org_a, alice, scim_a):
    """A user created before the domains were verified can still be updated and deactivated."""
    verify_domains(org_a, "acme.test")

    response = scim_a.put(f"Users/{alice.uuid}", user_body(alice.email, displayName="Alice A", active=False))

    assert response.status_code == 200, response.content
    alice.refresh_from_db()
    assert alice.full_name == "Alice A" and not alice.is_active

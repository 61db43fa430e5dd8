"""manage.py deploytoken: prints a token once (that enrolls), lists and revokes; bad input is an error."""
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import AuditEvent, DeploymentToken, Group


def _run(*args) -> str:
    out = StringIO()
    call_command("deploytoken", *args, stdout=out)
    return out.getvalue().strip()


def test_it_prints_a_working_token_with_the_asked_settings(api, bob, org_a):
    Group.objects.create(organization=org_a, name="Laptops")
    raw = _run("--org", "Org A", "--uses", "2", "--days", "3", "--group", "Laptops", "--create-users")
    token = DeploymentToken.objects.get()
    assert raw.startswith("hvt_") and raw not in token.token_hash
    assert (token.max_uses, token.group.name, token.create_users, token.allow_existing_keys) == (2, "Laptops", True, False)
    assert 2.9 * 86400 < (token.expires_at - token.created_at).total_seconds() <= 3 * 86400
    assert AuditEvent.objects.get(action="deployment_token.create").actor_label == "manage.py deploytoken"
    response = api.post("/api/v1/enroll/deployment", {"deployment_token": raw, "user_email": bob.email,
                                                      "device_name": "d"}, format="json")
    assert response.status_code == 201
    listing = _run("--org", "org-a", "--list")
    assert str(token.uuid) in listing and "active" in listing and "uses 1/2" in listing and raw not in listing


def test_it_revokes(org_a):
    _run("--org", "Org A")
    token = DeploymentToken.objects.get()
    assert _run("--org", "Org A", "--revoke", str(token.uuid)) == f"revoked {token.uuid}"
    token.refresh_from_db()
    assert token.state == "revoked" and "revoked" in _run("--org", "Org A", "--list")


@pytest.mark.parametrize("args", [
    ["--org", "Nope"], ["--org", "Org A", "--days", "0"], ["--org", "Org A", "--uses", "0"],
    ["--org", "Org A", "--group", "Nope"], ["--org", "Org A", "--revoke", "not-a-uuid"],
])
def test_bad_input_is_an_error_and_stores_nothing(org_a, args):
    with pytest.raises(CommandError):
        _run(*args)
    assert not DeploymentToken.objects.exists()


def test_another_orgs_token_cannot_be_revoked_by_naming_this_org(org_a, org_b):
    _run("--org", "Org B")
    token = DeploymentToken.objects.get()
    with pytest.raises(CommandError):
        _run("--org", "Org A", "--revoke", str(token.uuid))
    token.refresh_from_db()
    assert token.revoked_at is None

"""POST /api/v1/enroll/deployment: a deployment token and a user's email enroll a device; a token
that is unknown, expired, exhausted or revoked (or an email it does not cover) stores nothing."""
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.deployment import deployment_token_create, deployment_token_revoke
from accounts.domains import verified_domains_change
from accounts.models import AuditEvent, DeploymentToken, Device, DeviceToken, Group, User
from archives.models import Archive
from keystore.models import UserKey


def _enroll(api, token, email, name="fleet-laptop", **extra):
    return api.post("/api/v1/enroll/deployment", {"deployment_token": token, "user_email": email,
                                                  "device_name": name, "os": "Linux 6.1", **extra}, format="json")


def _nothing_created(token: DeploymentToken | None = None, users: int | None = None):
    assert not Device.objects.exists() and not DeviceToken.objects.exists() and not Archive.objects.exists()
    if token is not None:
        token.refresh_from_db()
        assert token.use_count == 0 and token.last_used_at is None
    if users is not None:
        assert User.objects.count() == users


def test_a_token_enrolls_an_existing_user_joins_the_group_and_is_audited(api, alice, bob, org_a):
    group = Group.objects.create(organization=org_a, name="Laptops")
    token, raw = deployment_token_create(organization=org_a, max_uses=5, group=group, actor=alice)
    response = _enroll(api, raw, "BOB@a.example")
    assert response.status_code == 201, response.json()
    body = response.json()
    device = Device.objects.get(uuid=body["device_id"])
    assert device.owner == bob and body["user_email"] == bob.email and body["token"].startswith("hvd_")
    assert Archive.objects.get(uuid=body["archive_id"]).device == device
    assert list(group.members.all()) == [bob]
    token.refresh_from_db()
    assert token.use_count == 1 and token.last_used_at is not None
    use = AuditEvent.objects.get(action="deployment_token.use")
    assert use.target_uuid == bob.uuid and use.detail["token"] == str(token.uuid) and use.detail["use"] == 1
    assert use.actor_label.startswith("deployment-token:hvt_")
    assert raw not in token.token_hash and len(token.token_hash) == 64 and raw.startswith(token.token_prefix)


def test_an_unknown_token_is_401_and_creates_nothing(api, bob):
    for raw in ("hvt_made-up-token", "not even the prefix"):
        response = _enroll(api, raw, bob.email)
        assert response.status_code == 401 and response.json()["code"] == "deployment_token_invalid"
    _nothing_created()


@pytest.mark.parametrize("state", ["expired", "exhausted", "revoked"])
def test_a_dead_token_is_refused_with_its_reason_and_creates_nothing(api, alice, org_a, state):
    verified_domains_change(organization=org_a, add=["a.example"], remove=[], actor_label="test")
    token, raw = deployment_token_create(organization=org_a, max_uses=1, create_users=True, actor=alice)
    if state == "expired":
        DeploymentToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif state == "exhausted":
        DeploymentToken.objects.filter(pk=token.pk).update(use_count=1)
    else:
        deployment_token_revoke(token=token, actor=alice)
    users = User.objects.count()
    response = _enroll(api, raw, "new.hire@a.example")
    assert response.status_code == 403
    assert response.json()["code"] == f"deployment_token_{state}", response.json()
    assert not User.objects.filter(email="new.hire@a.example").exists()
    assert not Device.objects.exists() and not DeviceToken.objects.exists() and User.objects.count() == users
    token.refresh_from_db()
    assert token.use_count == (1 if state == "exhausted" else 0)
    refusal = AuditEvent.objects.get(action="deployment_token.refused")
    assert refusal.target_uuid == token.uuid and refusal.detail["code"] == f"deployment_token_{state}"


def test_the_last_use_exhausts_the_token(api, alice, bob, org_a):
    token, raw = deployment_token_create(organization=org_a, max_uses=2, allow_existing_keys=True, actor=alice)
    assert _enroll(api, raw, bob.email, "one").status_code == 201
    assert _enroll(api, raw, alice.email, "two").status_code == 201
    third = _enroll(api, raw, bob.email, "three")
    assert third.status_code == 403 and third.json()["code"] == "deployment_token_exhausted"
    assert sorted(Device.objects.values_list("name", flat=True)) == ["one", "two"]
    token.refresh_from_db()
    assert token.use_count == 2 and token.state == "exhausted"


def test_users_are_created_only_when_allowed_and_only_in_verified_domains(api, alice, org_a):
    _, plain = deployment_token_create(organization=org_a, actor=alice)
    creating, raw = deployment_token_create(organization=org_a, create_users=True, actor=alice)
    users = User.objects.count()

    refused = _enroll(api, plain, "new.hire@a.example")
    assert refused.status_code == 403 and refused.json()["code"] == "user_unknown"
    unverified = _enroll(api, raw, "new.hire@a.example")
    assert unverified.status_code == 403 and unverified.json()["code"] == "domain_not_verified"
    _nothing_created(creating, users)

    verified_domains_change(organization=org_a, add=["a.example"], remove=[], actor_label="test")
    elsewhere = _enroll(api, raw, "someone@elsewhere.example")
    assert elsewhere.status_code == 403 and elsewhere.json()["code"] == "domain_not_verified"
    created = _enroll(api, raw, "new.hire@a.example")
    assert created.status_code == 201, created.json()
    user = User.objects.get(email="new.hire@a.example")
    assert user.organization == org_a and user.role == "user" and not user.has_usable_password()
    assert AuditEvent.objects.get(action="user.create", target_uuid=user.uuid).actor_label.startswith("deployment-token:")
    assert AuditEvent.objects.get(action="deployment_token.use").detail["user_created"] is True


def test_a_token_never_reaches_another_organizations_user(api, alice, mallory, org_a):
    verified_domains_change(organization=org_a, add=["a.example"], remove=[], actor_label="test")
    token, raw = deployment_token_create(organization=org_a, create_users=True, allow_existing_keys=True, actor=alice)
    response = _enroll(api, raw, mallory.email)
    assert response.status_code == 403 and response.json()["code"] == "user_unknown"
    _nothing_created(token)


def test_deactivated_users_are_refused(api, alice, bob, org_a):
    from accounts.services import user_deactivate

    token, raw = deployment_token_create(organization=org_a, actor=alice)
    user_deactivate(user=bob, actor_label="test")
    response = _enroll(api, raw, bob.email)
    assert response.status_code == 403 and response.json()["code"] == "user_inactive"
    _nothing_created(token)


def test_users_holding_a_key_are_refused_unless_the_token_allows_it(api, alice, bob, org_a):
    UserKey.objects.create(organization=org_a, user=bob, key_id="ab" * 16, state=UserKey.State.ESCROWED)
    group = Group.objects.create(organization=org_a, name="Laptops")
    default, raw = deployment_token_create(organization=org_a, group=group, actor=alice)
    response = _enroll(api, raw, bob.email)
    assert response.status_code == 403 and response.json()["code"] == "user_has_key"
    _nothing_created(default)
    assert not group.members.exists()  # the membership rolled back with the rest
    assert AuditEvent.objects.get(action="deployment_token.refused").detail["code"] == "user_has_key"

    _, allowing = deployment_token_create(organization=org_a, allow_existing_keys=True, actor=alice)
    assert _enroll(api, allowing, bob.email).status_code == 201


def test_a_deauthorized_device_is_not_brought_back_and_the_use_is_not_counted(api, alice, bob, org_a):
    from accounts.services import device_deauthorize

    token, raw = deployment_token_create(organization=org_a, max_uses=3, actor=alice)
    first = _enroll(api, raw, bob.email)
    device = Device.objects.get(uuid=first.json()["device_id"])
    device_deauthorize(device=device, actor=alice)
    again = _enroll(api, raw, bob.email, device_id=str(device.uuid))
    assert again.status_code == 403 and again.json()["code"] == "device_deauthorized"
    token.refresh_from_db()
    assert token.use_count == 1 and Device.objects.count() == 1 and DeviceToken.objects.count() == 1


def test_malformed_input_is_400_and_creates_nothing(api, alice, org_a):
    token, raw = deployment_token_create(organization=org_a, actor=alice)
    response = api.post("/api/v1/enroll/deployment", {"deployment_token": raw, "user_email": "not-an-email"},
                        format="json")
    assert response.status_code == 400 and set(response.json()["errors"]) >= {"user_email", "device_name"}
    _nothing_created(token)


def test_token_settings_are_checked(alice, org_a, org_b):
    from accounts.deployment import DeploymentTokenInvalid

    other_group = Group.objects.create(organization=org_b, name="Theirs")
    for bad in ({"days": 0}, {"days": 366}, {"max_uses": 0}, {"group": other_group}):
        with pytest.raises(DeploymentTokenInvalid):
            deployment_token_create(organization=org_a, actor=alice, **bad)
    assert not DeploymentToken.objects.exists()


def test_a_group_that_grants_a_role_is_no_deployment_group(api, alice, bob, org_a):
    """Joining a role-mapped group would make the token a way to hand out the role."""
    from accounts.deployment import DeploymentTokenInvalid

    admins = Group.objects.create(organization=org_a, name="Admins", role="org_admin")
    with pytest.raises(DeploymentTokenInvalid):
        deployment_token_create(organization=org_a, group=admins, actor=alice)
    laptops = Group.objects.create(organization=org_a, name="Laptops")
    token, raw = deployment_token_create(organization=org_a, group=laptops, actor=alice)
    Group.objects.filter(pk=laptops.pk).update(role="org_admin")  # mapped later
    response = _enroll(api, raw, bob.email)
    assert response.status_code == 403 and response.json()["code"] == "group_grants_role"
    _nothing_created(token)
    assert not laptops.members.exists()

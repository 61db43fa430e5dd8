"""POST /api/v1/enroll: devices, tokens, wrong passwords, throttling, deauthorized devices."""
from django.test import override_settings

from accounts.models import Device, DeviceToken
from archives.models import Archive
from tests.conftest import enroll


def test_it_enrolls_a_device_and_returns_a_token_once(api, alice):
    response = enroll(api, alice, "alice-laptop", os="Linux 6.1", agent_version="0.1.0")
    assert response.status_code == 201
    body = response.json()
    device = Device.objects.get(uuid=body["device_id"])
    assert device.owner == alice and device.name == "alice-laptop" and device.authorized
    assert Archive.objects.get(uuid=body["archive_id"]).device == device
    assert body["user_id"] == str(alice.uuid) and body["organization_id"] == str(alice.organization.uuid)
    stored = DeviceToken.objects.get(device=device)
    assert body["token"] not in stored.token_hash and len(stored.token_hash) == 64


def test_a_wrong_password_is_401_and_creates_nothing(api, alice):
    response = enroll(api, alice, password="wrong password!")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_credentials"
    assert not Device.objects.exists()


def test_an_unknown_email_gets_the_same_answer(api, db):
    response = api.post("/api/v1/enroll", {"email": "nobody@x.example", "password": "x", "device_name": "d"}, format="json")
    assert response.status_code == 401 and response.json()["code"] == "invalid_credentials"


def test_malformed_input_is_400_with_field_errors(api, db):
    response = api.post("/api/v1/enroll", {"email": "not-an-email"}, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]) >= {"email", "device_name"}


def test_an_email_without_password_or_code_is_400(api, alice):
    response = api.post("/api/v1/enroll", {"email": alice.email, "device_name": "d"}, format="json")
    assert response.status_code == 400
    assert "one-time code" in str(response.json()["errors"])
    assert not Device.objects.exists()


def test_a_one_time_code_enrolls_once(api, alice):
    from accounts.services import enrollment_code_issue

    code = enrollment_code_issue(user=alice)
    first = api.post("/api/v1/enroll", {"code": code.lower(), "device_name": "sso-laptop"}, format="json")
    assert first.status_code == 201 and first.json()["user_email"] == alice.email
    again = api.post("/api/v1/enroll", {"code": code, "device_name": "thief"}, format="json")
    assert again.status_code == 401 and "used or expired" in again.json()["detail"]
    assert list(Device.objects.values_list("name", flat=True)) == ["sso-laptop"]


def test_an_expired_or_made_up_code_is_refused(api, alice):
    from datetime import timedelta

    from django.utils import timezone

    from accounts.models import EnrollmentCode
    from accounts.services import enrollment_code_issue

    code = enrollment_code_issue(user=alice)
    EnrollmentCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    for attempt in (code, "AAAA-BBBB-CCCC"):
        response = api.post("/api/v1/enroll", {"code": attempt, "device_name": "d"}, format="json")
        assert response.status_code == 401 and response.json()["code"] == "invalid_credentials"
    assert not Device.objects.exists()


@override_settings(HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT=3)
def test_failures_per_account_are_throttled_even_with_the_right_password_after(api, alice):
    for _ in range(3):
        assert enroll(api, alice, password="wrong password!").status_code == 401
    response = enroll(api, alice)
    assert response.status_code == 429 and response.json()["code"] == "throttled"
    assert not Device.objects.exists()


@override_settings(HAVEN_AUTH_MAX_ATTEMPTS_PER_ADDRESS=4)
def test_attempts_per_address_are_throttled_across_accounts(api, alice, bob):
    for user in (alice, bob, alice, bob):
        enroll(api, user, password="wrong password!")
    assert enroll(api, bob).status_code == 429


def test_a_device_token_authenticates_the_device(enrolled, alice):
    client = enrolled(alice, "alice-laptop")
    response = client.get("/api/v1/device")
    assert response.status_code == 200
    assert response.json()["device_id"] == client.enrollment["device_id"]
    assert response.json()["archive_id"] == client.enrollment["archive_id"]


def test_no_or_a_bad_token_is_401(api, db):
    assert api.get("/api/v1/device").status_code == 401
    api.credentials(HTTP_AUTHORIZATION="Bearer hvd_forged")
    response = api.get("/api/v1/device")
    assert response.status_code == 401 and response.json()["code"] == "invalid_token"


def test_a_deauthorized_device_gets_401_device_deauthorized(enrolled, alice):
    from accounts.services import device_deauthorize

    client = enrolled(alice)
    device = Device.objects.get(uuid=client.enrollment["device_id"])
    device_deauthorize(device=device, actor=alice)
    response = client.get("/api/v1/device")
    assert response.status_code == 401
    assert response.json()["code"] == "device_deauthorized"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_the_owners_password_does_not_bring_a_deauthorized_device_back(api, enrolled, alice, bob):
    from accounts.services import device_deauthorize

    client = enrolled(bob)
    device = Device.objects.get(uuid=client.enrollment["device_id"])
    device_deauthorize(device=device, actor=alice)
    response = enroll(api, bob, device_id=str(device.uuid))
    assert response.status_code == 403 and response.json()["code"] == "device_deauthorized"
    device.refresh_from_db()
    assert not device.authorized
    assert not DeviceToken.objects.filter(device=device, revoked_at__isnull=True).exists()


def test_after_an_admin_reauthorizes_the_device_enrolls_again_with_a_new_token(api, enrolled, alice, bob):
    from accounts.services import device_deauthorize, device_reauthorize

    client = enrolled(bob)
    device = Device.objects.get(uuid=client.enrollment["device_id"])
    device_deauthorize(device=device, actor=alice)
    device_reauthorize(device=device, actor=alice)
    assert client.get("/api/v1/device").status_code == 401  # the old token stays revoked
    response = enroll(api, bob, device_id=str(device.uuid))
    assert response.status_code == 201 and response.json()["device_id"] == str(device.uuid)
    assert Device.objects.filter(owner=bob).count() == 1


def test_only_an_admin_of_the_org_may_deauthorize_or_reauthorize(enrolled, alice, bob, mallory):
    import pytest

    from accounts.services import PermissionRefused, device_deauthorize, device_reauthorize

    device = Device.objects.get(uuid=enrolled(alice).enrollment["device_id"])
    for actor in (bob, mallory):
        with pytest.raises(PermissionRefused):
            device_deauthorize(device=device, actor=actor)
    device_deauthorize(device=device, actor=alice)
    for actor in (bob, mallory):
        with pytest.raises(PermissionRefused):
            device_reauthorize(device=device, actor=actor)
    device.refresh_from_db()
    assert not device.authorized


def test_the_openapi_schema_is_published(api, db):
    response = api.get("/api/schema/")
    assert response.status_code == 200
    assert b"/api/v1/enroll" in response.content


def test_a_new_device_of_a_user_with_a_deauthorized_one_alerts_the_admins(api, enrolled, alice, bob):
    from django.core import mail

    from accounts.models import AuditEvent
    from accounts.services import device_deauthorize

    stolen = Device.objects.get(uuid=enrolled(bob, "stolen").enrollment["device_id"])
    assert AuditEvent.objects.filter(action="device.enroll", target_uuid=stolen.uuid).exists()
    assert not mail.outbox
    device_deauthorize(device=stolen, actor=alice)
    assert enroll(api, bob, "fresh-install").status_code == 201
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [alice.email]
    assert "bob@a.example" in mail.outbox[0].subject

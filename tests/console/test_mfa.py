"""TOTP two-factor sign-in: enrollment, the second step, wrong codes throttled and audited,
and organizations that require it of their administrators."""
import re
import time

import pytest
from django.core.management import call_command
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import AuditEvent
from tests.conftest import PASSWORD
from tests.console.totp import totp_code, wrong_code


@pytest.fixture
def with_totp():
    def _with(user):
        return TOTPDevice.objects.create(user=user, name="app", confirmed=True)
    return _with


def _password_step(client, user, password=PASSWORD, next_url=""):
    return client.post("/login/" + (f"?next={next_url}" if next_url else ""),
                       {"username": user.email, "password": password})


def test_it_enrolls_an_authenticator_app_from_the_account_page(alice):
    client = Client()
    assert client.login(username=alice.email, password=PASSWORD)
    assert client.post("/account/two-factor/", {"action": "begin"}).status_code == 302
    page = client.get("/account/two-factor/").content.decode()
    secret = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', page).group(1)
    assert "<svg" in page  # the QR code, drawn on the server
    device = TOTPDevice.objects.get(user=alice, confirmed=False)
    import base64
    assert base64.b32decode(secret) == device.bin_key
    assert client.post("/account/two-factor/", {"action": "confirm", "code": wrong_code(device)}).status_code == 400
    assert not TOTPDevice.objects.get(pk=device.pk).confirmed
    time.sleep(1.1)  # django-otp's back-off after one wrong code
    response = client.post("/account/two-factor/", {"action": "confirm", "code": totp_code(device)})
    assert response.status_code == 302
    assert TOTPDevice.objects.get(pk=device.pk).confirmed
    assert AuditEvent.objects.filter(action="mfa.enroll", target_uuid=alice.uuid, actor=alice).count() == 1
    assert AuditEvent.objects.filter(action="mfa.enroll_failure", target_uuid=alice.uuid).count() == 1
    assert client.get("/").status_code == 200  # the session that enrolled stays signed in


def test_a_password_alone_does_not_sign_in_someone_with_an_app(alice, with_totp):
    device = with_totp(alice)
    client = Client()
    response = _password_step(client, alice)
    assert response.status_code == 302 and response["Location"] == "/login/code/"
    assert client.get("/").status_code == 302  # not signed in yet
    response = client.post("/login/code/", {"code": totp_code(device)})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    success = AuditEvent.objects.get(action="login.success", target_uuid=alice.uuid)
    assert success.detail["method"] == "password+totp"


def test_the_second_step_keeps_the_next_url(alice, with_totp):
    device = with_totp(alice)
    client = Client()
    _password_step(client, alice, next_url="/users/")
    assert client.post("/login/code/", {"code": totp_code(device)})["Location"] == "/users/"


def test_a_wrong_code_is_refused_and_audited(alice, with_totp):
    device = with_totp(alice)
    client = Client()
    _password_step(client, alice)
    response = client.post("/login/code/", {"code": wrong_code(device)})
    assert response.status_code == 400 and b"not right" in response.content
    assert client.get("/").status_code == 302
    event = AuditEvent.objects.get(action="login.mfa_failure")
    assert event.target_uuid == alice.uuid and event.detail["via"] == "/login/code/"
    assert not AuditEvent.objects.filter(action="login.success").exists()


def test_a_code_is_accepted_only_once(alice, with_totp):
    device = with_totp(alice)
    code = totp_code(device)
    first, second = Client(), Client()
    _password_step(first, alice)
    _password_step(second, alice)
    assert first.post("/login/code/", {"code": code}).status_code == 302
    assert second.post("/login/code/", {"code": code}).status_code == 400


def test_wrong_codes_are_throttled_per_account(alice, with_totp, settings):
    settings.HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT_ADDRESS = 3
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # without django-otp's back-off: Haven's limit alone
    device = with_totp(alice)
    client = Client()
    _password_step(client, alice)
    for _ in range(3):
        assert client.post("/login/code/", {"code": wrong_code(device)}).status_code == 400
    # Past the limit even the right code is not tried.
    response = client.post("/login/code/", {"code": totp_code(device)})
    assert response.status_code == 429 and b"Too many wrong codes" in response.content
    assert client.get("/").status_code == 302
    assert AuditEvent.objects.filter(action="login.throttle", detail__limit="totp").count() == 1


def test_django_otp_backs_off_after_a_wrong_code(alice, with_totp):
    device = with_totp(alice)
    client = Client()
    _password_step(client, alice)
    assert client.post("/login/code/", {"code": wrong_code(device)}).status_code == 400
    # The device now waits a second before it checks another code: a right one at once is refused.
    assert client.post("/login/code/", {"code": totp_code(device)}).status_code == 429


def test_the_code_step_needs_the_password_step_first(alice, with_totp):
    device = with_totp(alice)
    client = Client()
    response = client.post("/login/code/", {"code": totp_code(device)})
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert client.get("/").status_code == 302


def test_a_wrong_password_never_reaches_the_code_step(alice, with_totp):
    with_totp(alice)
    client = Client()
    assert _password_step(client, alice, password="wrong password!").status_code == 200
    assert client.get("/login/code/")["Location"] == "/login/"


def test_a_session_signed_in_without_the_code_is_signed_out(alice, with_totp):
    """A password-only session of someone with an app (the test client, as /admin/'s form would)."""
    with_totp(alice)
    client = Client()
    assert client.login(username=alice.email, password=PASSWORD)
    response = client.get("/devices/")
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert client.get("/devices/").status_code == 302


def test_the_admin_login_form_sends_app_users_to_the_console(alice, with_totp):
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    with_totp(alice)
    client = Client()
    response = client.post("/admin/login/", {"username": alice.email, "password": PASSWORD})
    assert response.status_code == 200 and b"two-factor authentication" in response.content
    assert client.get("/admin/").status_code == 302


def test_disabling_needs_a_code_and_is_audited(alice, with_totp):
    device = with_totp(alice)
    client = Client()
    _password_step(client, alice)
    client.post("/login/code/", {"code": totp_code(device, -1)})
    assert client.post("/account/", {"action": "mfa-disable", "code": wrong_code(device)}).status_code == 400
    time.sleep(1.1)  # django-otp's back-off after one wrong code
    assert TOTPDevice.objects.filter(user=alice).exists()
    assert client.post("/account/", {"action": "mfa-disable", "code": totp_code(device, 0)}).status_code == 302
    assert not TOTPDevice.objects.filter(user=alice).exists()
    assert AuditEvent.objects.filter(action="mfa.disable", actor=alice).count() == 1
    assert client.get("/").status_code == 200


def test_a_required_admin_is_sent_to_enroll_before_anything_else(alice, org_a):
    org_a.require_admin_mfa = True
    org_a.save(update_fields=["require_admin_mfa"])
    client = Client()
    assert client.login(username=alice.email, password=PASSWORD)
    for path in ("/", "/devices/", "/users/", "/sso/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"] == "/account/", path
    assert client.get("/account/").status_code == 200
    client.post("/account/two-factor/", {"action": "begin"})
    device = TOTPDevice.objects.get(user=alice)
    client.post("/account/two-factor/", {"action": "confirm", "code": totp_code(device)})
    assert client.get("/devices/").status_code == 200


def test_a_required_admin_cannot_turn_the_app_off(alice, org_a, with_totp):
    device = with_totp(alice)
    org_a.require_admin_mfa = True
    org_a.save(update_fields=["require_admin_mfa"])
    client = Client()
    _password_step(client, alice)
    client.post("/login/code/", {"code": totp_code(device, 0)})
    response = client.post("/account/", {"action": "mfa-disable", "code": totp_code(device, 1)})
    assert response.status_code == 400 and b"requires two-factor" in response.content
    assert TOTPDevice.objects.filter(user=alice).exists()


def test_the_requirement_spares_plain_users_and_sso_sessions(alice, bob, org_a):
    org_a.require_admin_mfa = True
    org_a.save(update_fields=["require_admin_mfa"])
    client = Client()
    assert client.login(username=bob.email, password=PASSWORD)
    assert client.get("/devices/").status_code == 200
    sso = Client()
    sso.force_login(alice, backend="console.saml.backends.OrganizationSamlBackend")
    assert sso.get("/devices/").status_code == 200
    assert AuditEvent.objects.filter(action="login.success", target_uuid=alice.uuid, detail__method="sso").exists()


def test_an_admin_sets_the_requirement_in_the_console_audited(alice, bob, org_a):
    admin, user = Client(), Client()
    admin.login(username=alice.email, password=PASSWORD)
    user.login(username=bob.email, password=PASSWORD)
    assert user.post("/account/", {"action": "require-admin-mfa", "require_admin_mfa": "on"}).status_code == 403
    org_a.refresh_from_db()
    assert not org_a.require_admin_mfa
    assert admin.post("/account/", {"action": "require-admin-mfa", "require_admin_mfa": "on"}).status_code == 302
    org_a.refresh_from_db()
    assert org_a.require_admin_mfa
    assert AuditEvent.objects.get(action="org.require_admin_mfa").detail == {"required": True}


def test_the_orgsettings_command_sets_the_requirement(org_a, capsys):
    call_command("orgsettings", "--org", "Org A", "--require-admin-mfa", "on")
    org_a.refresh_from_db()
    assert org_a.require_admin_mfa
    assert "require-admin-mfa on" in capsys.readouterr().out
    call_command("orgsettings", "--org", org_a.slug, "--require-admin-mfa", "off")
    org_a.refresh_from_db()
    assert not org_a.require_admin_mfa
    assert AuditEvent.objects.filter(action="org.require_admin_mfa", actor_label="manage.py orgsettings").count() == 2


def test_the_orgsettings_command_refuses_an_unknown_org(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("orgsettings", "--org", "Nobody", "--require-admin-mfa", "on")


def test_an_admin_resets_a_lost_app_but_not_another_orgs(alice, bob, mallory, with_totp):
    with_totp(bob)
    outsider = Client()
    outsider.login(username=mallory.email, password=PASSWORD)
    assert outsider.post(f"/users/{bob.uuid}/mfa-reset").status_code == 404
    assert TOTPDevice.objects.filter(user=bob).exists()
    admin = Client()
    admin.login(username=alice.email, password=PASSWORD)
    assert admin.post(f"/users/{bob.uuid}/mfa-reset").status_code == 302
    assert not TOTPDevice.objects.filter(user=bob).exists()
    assert AuditEvent.objects.filter(action="mfa.reset", actor=alice, target_uuid=bob.uuid).count() == 1

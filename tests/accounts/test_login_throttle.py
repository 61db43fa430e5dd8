"""Password sign-in is rate-limited the same way on the console, /admin/ and enrollment, over HTTP.

Limits: failures per (account, address), failures per address, and a per-account ceiling that
one address cannot reach alone and that never blocks an address the account signed in from.
"""
from datetime import timedelta

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from accounts.models import AuditEvent, Device, User
from tests.conftest import PASSWORD

ATTACKER, OWNER, ELSEWHERE = "203.0.113.66", "198.51.100.7", "192.0.2.44"


def console_login(client, email, password, address):
    return client.post("/login/", {"username": email, "password": password}, REMOTE_ADDR=address)


def admin_login(client, email, password, address):
    return client.post("/admin/login/", {"username": email, "password": password, "next": "/admin/"},
                       REMOTE_ADDR=address)


def enroll(api, user, device_name="laptop", password=PASSWORD, **meta):
    return api.post("/api/v1/enroll", {"email": user.email, "password": password, "device_name": device_name},
                    format="json", **meta)


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


@pytest.fixture
def operator(db):
    return User.objects.create_superuser("operator@haven.example", PASSWORD)


def _end_short_windows():
    """Let the 15-minute windows pass (the day-long account counters stay)."""
    from accounts.models import LoginCounter

    LoginCounter.objects.exclude(key__startswith="account:").exclude(key__startswith="pair-day:").exclude(
        key__startswith="known:").update(expires_at=timezone.now() - timedelta(seconds=1))


@override_settings(HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT_ADDRESS=3)
def test_it_throttles_console_logins_per_account_and_address(alice):
    client = Client()
    for _ in range(3):
        response = console_login(client, alice.email, "wrong password!", ATTACKER)
        assert response.status_code == 200 and b"Please enter a correct" in response.content
    response = console_login(client, alice.email, PASSWORD, ATTACKER)
    assert response.status_code == 429 and b"Too many sign-in attempts" in response.content
    assert not signed_in(client)


@override_settings(HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT_ADDRESS=3)
def test_a_correct_password_from_another_address_still_signs_in_to_a_targeted_account(alice):
    for _ in range(5):
        console_login(Client(), alice.email, "wrong password!", ATTACKER)
    owner = Client()
    response = console_login(owner, alice.email, PASSWORD, OWNER)
    assert response.status_code == 302 and signed_in(owner)


@override_settings(HAVEN_AUTH_MAX_ATTEMPTS_PER_ADDRESS=4)
def test_it_throttles_console_logins_per_address_across_accounts(alice, bob):
    for email in (alice.email, bob.email, "nobody@a.example", "x@y.example"):
        console_login(Client(), email, "wrong password!", ATTACKER)
    client = Client()
    assert console_login(client, bob.email, PASSWORD, ATTACKER).status_code == 429
    assert not signed_in(client)
    assert console_login(client, bob.email, PASSWORD, OWNER).status_code == 302


@override_settings(HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT_ADDRESS=3)
def test_it_throttles_admin_logins_through_the_same_limits(operator):
    client = Client()
    for _ in range(3):
        assert admin_login(client, operator.email, "wrong password!", ATTACKER).status_code == 200
    response = admin_login(client, operator.email, PASSWORD, ATTACKER)
    assert b"Too many sign-in attempts" in response.content and not signed_in(client)
    owner = Client()
    response = admin_login(owner, operator.email, PASSWORD, OWNER)
    assert response.status_code == 302 and signed_in(owner)


@override_settings(HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT_ADDRESS=3)
def test_console_and_admin_failures_count_together(operator):
    for _ in range(2):
        console_login(Client(), operator.email, "wrong password!", ATTACKER)
    admin_login(Client(), operator.email, "wrong password!", ATTACKER)
    client = Client()
    assert b"Too many sign-in attempts" in admin_login(client, operator.email, PASSWORD, ATTACKER).content
    assert console_login(Client(), operator.email, PASSWORD, ATTACKER).status_code == 429


@override_settings(HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT_ADDRESS=3)
def test_enrollment_from_another_address_still_works_for_a_targeted_account(api, alice):
    for _ in range(5):
        enroll(api, alice, password="wrong password!", REMOTE_ADDR=ATTACKER)
    assert enroll(api, alice, REMOTE_ADDR=ATTACKER).status_code == 429
    response = enroll(api, alice, "alice-new-laptop", REMOTE_ADDR=OWNER)
    assert response.status_code == 201
    assert list(Device.objects.values_list("name", flat=True)) == ["alice-new-laptop"]


@override_settings(HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT_ADDRESS=3)
def test_enrollment_and_console_failures_share_one_count(api, alice):
    for _ in range(3):
        console_login(Client(), alice.email, "wrong password!", ATTACKER)
    assert enroll(api, alice, REMOTE_ADDR=ATTACKER).status_code == 429


@override_settings(HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT_ADDRESS=2, HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT=5)
def test_past_the_account_ceiling_only_known_addresses_get_in(api, alice):
    assert console_login(Client(), alice.email, PASSWORD, OWNER).status_code == 302  # OWNER is now known
    for attacker in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        for _ in range(2):
            enroll(api, alice, password="wrong password!", REMOTE_ADDR=attacker)
    assert enroll(api, alice, REMOTE_ADDR=ELSEWHERE).status_code == 429  # 6 failures > 5, unknown address
    assert console_login(Client(), alice.email, PASSWORD, ELSEWHERE).status_code == 429
    owner = Client()
    assert console_login(owner, alice.email, PASSWORD, OWNER).status_code == 302 and signed_in(owner)
    assert enroll(api, alice, REMOTE_ADDR=OWNER).status_code == 201
    ceiling_events = AuditEvent.objects.filter(action="login.throttle", detail__limit="account")
    assert ceiling_events.count() == 1 and ceiling_events.get().target_uuid == alice.uuid


@override_settings(HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT_ADDRESS=2, HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT=5)
def test_one_address_alone_cannot_reach_the_account_ceiling(api, alice):
    for _ in range(6):  # six short windows, each used to the limit from the same address
        for _ in range(2):
            assert enroll(api, alice, password="wrong password!", REMOTE_ADDR=ATTACKER).status_code == 401
        _end_short_windows()
    assert enroll(api, alice, REMOTE_ADDR=ELSEWHERE).status_code == 201


def test_failures_are_audited_against_the_account(api, alice):
    console_login(Client(), alice.email, "wrong password!", ATTACKER)
    admin_login(Client(), alice.email, "wrong password!", ATTACKER)
    enroll(api, alice, password="wrong password!", REMOTE_ADDR=ATTACKER)
    events = AuditEvent.objects.filter(action="login.failure", target_uuid=alice.uuid).order_by("id")
    assert [event.detail["via"] for event in events] == ["/login/", "/admin/login/", "api/v1/enroll"]
    assert all(event.detail["address"] == ATTACKER and event.organization == alice.organization for event in events)
    assert all(event.actor is None and ATTACKER in event.actor_label for event in events)


def test_a_successful_login_is_not_audited_as_a_failure(alice):
    assert console_login(Client(), alice.email, PASSWORD, OWNER).status_code == 302
    # Issue 9 audits successful sign-ins too: exactly that one row, no failure or throttle row.
    assert list(AuditEvent.objects.filter(action__startswith="login.").values_list("action", flat=True)) == [
        "login.success"]


@override_settings(HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT_ADDRESS=2)
def test_reaching_a_limit_is_audited_once(alice):
    for _ in range(6):
        console_login(Client(), alice.email, "wrong password!", ATTACKER)
    throttles = AuditEvent.objects.filter(action="login.throttle", target_uuid=alice.uuid)
    assert throttles.count() == 1 and throttles.get().detail["limit"] == "account+address"
    assert AuditEvent.objects.filter(action="login.failure").count() == 2


@override_settings(HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT_ADDRESS=3, HAVEN_TRUSTED_PROXIES=["10.0.0.0/8"])
def test_behind_a_trusted_proxy_the_forwarded_client_is_throttled_not_the_proxy(alice):
    for _ in range(3):
        client = Client()
        client.post("/login/", {"username": alice.email, "password": "wrong password!"},
                    REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=f"{ATTACKER}, 10.1.2.3")
    blocked = Client().post("/login/", {"username": alice.email, "password": PASSWORD},
                            REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=ATTACKER)
    assert blocked.status_code == 429
    owner = Client()
    response = owner.post("/login/", {"username": alice.email, "password": PASSWORD},
                          REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=OWNER)
    assert response.status_code == 302 and signed_in(owner)


@override_settings(HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT_ADDRESS=3, HAVEN_TRUSTED_PROXIES=["10.0.0.0/8"])
def test_a_forwarded_header_from_an_untrusted_peer_is_ignored(api, alice):
    for spoofed in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        enroll(api, alice, password="wrong password!", REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR=spoofed)
    assert enroll(api, alice, REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR="192.0.2.99").status_code == 429
    event = AuditEvent.objects.filter(action="login.failure").first()
    assert event.detail["address"] == ATTACKER

"""Alerts: deduplicated while unresolved, triaged only by administrators and analysts of their own
organization, every change in the history."""
import threading

import pytest
from django.db import connection
from django.http import Http404

from accounts.models import Role
from accounts.services import PermissionRefused, user_ensure
from activity.alerts import alert_assign, alert_note, alert_raise, alert_set_status, alerts_resolve_cleared
from activity.models import Alert, AlertEntry
from activity.selectors import alert_for_user, alerts_visible_to


def _raise(org, key="stale:1", **extra):
    return alert_raise(organization=org, kind="stale_device", dedup_key=key, title="Laptop has not backed up",
                       **extra)


def test_a_condition_seen_again_is_the_same_alert(org_a, mailoutbox, alice):
    first, created = _raise(org_a)
    again, created_again = _raise(org_a, detail={"days": 9})
    assert created and not created_again
    assert again.pk == first.pk and again.occurrences == 2 and again.detail == {"days": 9}
    assert Alert.objects.count() == 1


def test_a_resolved_condition_that_returns_opens_a_new_alert(org_a, alice):
    first, _ = _raise(org_a)
    alert_set_status(alert=first, actor=alice, status=Alert.Status.RESOLVED)
    second, created = _raise(org_a)
    assert created and second.pk != first.pk
    with pytest.raises(ValueError):
        alert_set_status(alert=first, actor=alice, status=Alert.Status.OPEN)


def test_same_key_in_two_organizations_is_two_alerts(org_a, org_b):
    assert _raise(org_a)[0].pk != _raise(org_b)[0].pk


def test_history_records_every_change(org_a, alice):
    analyst = user_ensure(organization=org_a, email="sam@a.example", role=Role.SECURITY_ANALYST, password=None).user
    alert, _ = _raise(org_a)
    alert_set_status(alert=alert, actor=analyst, status=Alert.Status.ACKNOWLEDGED, note="looking")
    alert_assign(alert=alert, actor=alice, assignee=analyst)
    alert_note(alert=alert, actor=analyst, text="called the user")
    alert_set_status(alert=alert, actor=analyst, status=Alert.Status.RESOLVED)
    actions = list(AlertEntry.objects.filter(alert=alert).values_list("action", "to_status"))
    assert actions == [("raised", "open"), ("status", "acknowledged"), ("assigned", ""), ("note", ""),
                       ("status", "resolved")]
    alert.refresh_from_db()
    assert alert.resolved_at is not None and alert.assignee == analyst


def test_plain_users_and_other_orgs_cannot_triage_or_see(org_a, alice, bob, mallory):
    alert, _ = _raise(org_a)
    for outsider in (bob, mallory):
        with pytest.raises(PermissionRefused):
            alert_set_status(alert=alert, actor=outsider, status=Alert.Status.RESOLVED)
        with pytest.raises(Http404):
            alert_for_user(outsider, alert.uuid)
        assert not alerts_visible_to(outsider).exists()
    with pytest.raises(PermissionRefused):
        alert_assign(alert=alert, actor=alice, assignee=bob)  # a plain user is no triager
    assert alert_for_user(alice, alert.uuid) == alert


def test_the_first_raise_emails_the_administrators_once(org_a, alice, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _raise(org_a)
        _raise(org_a)
    assert [m.to for m in mailoutbox] == [[alice.email]]


def test_cleared_conditions_resolve_as_the_system(org_a):
    kept, _ = _raise(org_a, key="stale:1")
    gone, _ = _raise(org_a, key="stale:2")
    assert alerts_resolve_cleared(organization=org_a, kind="stale_device", still_active_keys={"stale:1"}) == 1
    kept.refresh_from_db()
    gone.refresh_from_db()
    assert (kept.status, gone.status) == ("open", "resolved")
    assert gone.entries.last().actor_label == "system"


@pytest.mark.django_db(transaction=True)
def test_concurrent_raisers_open_one_alert(org_a):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serializes writers; the race needs PostgreSQL")
    barrier = threading.Barrier(4)
    results = []

    def raiser():
        barrier.wait()
        try:
            results.append(_raise(org_a, notify=False)[1])
        finally:
            connection.close()

    threads = [threading.Thread(target=raiser) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]
    assert Alert.objects.get().occurrences == 4

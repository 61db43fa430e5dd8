"""The console's alert pages: administrators and security analysts of the organization only, its
own alerts only, filters and pages, the facts and history of one alert, and triage that stores
nothing when it is refused."""
import re

import pytest
from django.test import Client

from accounts.models import AuditEvent, Role
from accounts.services import device_create
from activity.alerts import alert_raise, alert_set_status
from activity.models import Alert, AlertEntry
from tests.conftest import PASSWORD, _user


def _browser(user, **kwargs):
    client = Client(**kwargs)
    assert client.login(username=user.email, password=PASSWORD)
    return client


def _raise(org, key="stale:1", **extra):
    extra.setdefault("title", f"Alert {key}")
    return alert_raise(organization=org, kind=extra.pop("kind", "stale_device"), dedup_key=key, notify=False,
                       **extra)[0]


@pytest.fixture
def sam(org_a):
    return _user(org_a, "sam@a.example", Role.SECURITY_ANALYST)


@pytest.fixture
def laptop(bob):
    return device_create(owner=bob, name="bob-laptop", os_name="Linux 6.1", agent_version="1.0")


def test_administrators_and_analysts_see_the_page_and_its_link(alice, sam, org_a):
    _raise(org_a)
    for person in (alice, sam):
        browser = _browser(person)
        page = browser.get("/alerts/")
        assert page.status_code == 200 and b"Alert stale:1" in page.content
        nav = browser.get("/").content.decode()
        assert re.search(r'id="nav-alerts">Alerts <span class="nav-count"[^>]*>1</span>', nav)


def test_other_roles_get_404_and_no_link(org_a, bob):
    alert = _raise(org_a)
    operator = _user(org_a, "rita@a.example", Role.RESTORE_OPERATOR)
    for person in (bob, operator):
        browser = _browser(person)
        assert browser.get("/alerts/").status_code == 404
        assert browser.get(f"/alerts/{alert.uuid}/").status_code == 404
        assert browser.post(f"/alerts/{alert.uuid}/resolve").status_code == 404
        assert b"nav-alerts" not in browser.get("/").content
    alert.refresh_from_db()
    assert alert.status == Alert.Status.OPEN


def test_only_the_organizations_own_alerts_are_listed(alice, mallory, org_a, org_b):
    _raise(org_a, key="a:1")
    theirs = _raise(org_b, key="b:1")
    page = _browser(alice).get("/alerts/?status=any").content.decode()
    assert "Alert a:1" in page and "Alert b:1" not in page
    assert _browser(alice).get(f"/alerts/{theirs.uuid}/").status_code == 404


def test_filters_by_status_kind_severity_and_assignee(alice, sam, org_a):
    _raise(org_a, key="k1", kind="stale_device", severity="high")
    acked = _raise(org_a, key="k2", kind="verify_failed", severity="low")
    alert_set_status(alert=acked, actor=alice, status="acknowledged")
    done = _raise(org_a, key="k3", kind="verify_failed")
    alert_set_status(alert=done, actor=alice, status="resolved")
    Alert.objects.filter(pk=acked.pk).update(assignee=sam)
    browser = _browser(sam)

    def listed(query):
        return sorted(re.findall(r"Alert (k\d)", browser.get(f"/alerts/?{query}").content.decode()))

    assert listed("") == ["k1", "k2"]  # unresolved by default
    assert listed("status=resolved") == ["k3"]
    assert listed("status=any") == ["k1", "k2", "k3"]
    assert listed("status=any&kind=verify_failed") == ["k2", "k3"]
    assert listed("severity=high") == ["k1"]
    assert listed("assignee=me") == ["k2"]
    assert listed(f"assignee={sam.uuid}") == ["k2"]
    assert listed("assignee=none") == ["k1"]
    # htmx asks for the table alone
    partial = browser.get("/alerts/?severity=high", HTTP_HX_REQUEST="true").content.decode()
    assert "Alert k1" in partial and "<html" not in partial


@pytest.mark.parametrize("query", ["status=bogus", "severity=urgent", "assignee=not-a-person", "kind=Bad Kind!",
                                   "page=0"])
def test_a_bad_filter_is_a_clear_400(alice, query):
    response = _browser(alice).get(f"/alerts/?{query}")
    assert response.status_code == 400 and response.json()["code"] == "invalid"


def test_another_orgs_person_is_no_assignee_filter(alice, mallory):
    assert _browser(alice).get(f"/alerts/?assignee={mallory.uuid}").status_code == 400


def test_alerts_are_paged(alice, org_a):
    for n in range(55):
        _raise(org_a, key=f"p{n:02d}")
    browser = _browser(alice)
    first = browser.get("/alerts/").content.decode()
    second = browser.get("/alerts/?page=2").content.decode()
    assert first.count('class="alert-row"') == 50 and second.count('class="alert-row"') == 5
    assert "Page 1 of 2" in first and "page=2" in first


def test_the_detail_page_shows_facts_device_subject_and_history(alice, org_a, bob, laptop):
    alert = _raise(org_a, key="rm:1", kind="removable_media", severity="high", subject_user=bob, device=laptop,
                   title="Files copied to removable media",
                   detail={"vector": "removable_media", "files": ["/home/bob/a.docx", "/home/bob/b.xlsx"],
                           "total_bytes": 52428800, "rule": {"threshold_mb": 50, "window": "1h"}})
    page = _browser(alice).get(f"/alerts/{alert.uuid}/").content.decode()
    assert "Files copied to removable media" in page
    assert f'href="/devices/{laptop.uuid}/"' in page and "bob-laptop" in page
    assert f'href="/users/{bob.uuid}/"' in page
    assert "<li>/home/bob/a.docx</li>" in page and "52428800" in page
    assert "&quot;threshold_mb&quot;: 50" in page  # nested facts as indented JSON
    assert 'class="entry-raised"' in page


def test_triage_acknowledge_assign_note_resolve_reopen(alice, sam, org_a):
    alert = _raise(org_a)
    browser = _browser(alice)
    base = f"/alerts/{alert.uuid}/"
    assert browser.post(base + "acknowledge").status_code == 302
    assert browser.post(base + "assign", {"assignee": str(sam.uuid)}).status_code == 302
    assert browser.post(base + "note", {"text": "Called Bob: laptop was in a drawer."}).status_code == 302
    assert browser.post(base + "resolve", {"note": "back online"}).status_code == 302
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.assignee == sam and alert.resolved_at
    assert browser.post(base + "reopen").status_code == 302
    alert.refresh_from_db()
    assert alert.status == "open" and alert.resolved_at is None
    actions = list(alert.entries.values_list("action", "to_status", "text"))
    assert actions == [("raised", "open", "Alert stale:1"), ("status", "acknowledged", ""),
                       ("assigned", "", sam.email), ("note", "", "Called Bob: laptop was in a drawer."),
                       ("status", "resolved", "back online"), ("status", "open", "")]
    page = browser.get(base).content.decode()
    assert "Called Bob: laptop was in a drawer." in page and "acknowledged → resolved" in page
    audited = set(AuditEvent.objects.filter(target_uuid=alert.uuid).values_list("action", flat=True))
    assert audited == {"alert.acknowledged", "alert.assign", "alert.note", "alert.resolved", "alert.open"}
    assert browser.post(base + "assign", {"assignee": ""}).status_code == 302
    alert.refresh_from_db()
    assert alert.assignee is None


def test_refused_actions_are_shown_and_store_nothing(alice, bob, mallory, org_a):
    alert = _raise(org_a)
    browser = _browser(alice)
    base = f"/alerts/{alert.uuid}/"
    before = AlertEntry.objects.count()
    for data, action in (({"text": "   "}, "note"), ({"text": "x" * 10_001}, "note"),
                         ({"assignee": str(bob.uuid)}, "assign"), ({"assignee": str(mallory.uuid)}, "assign"),
                         ({"assignee": "nobody"}, "assign"), ({"note": "y" * 10_001}, "resolve")):
        response = browser.post(base + action, data)
        assert response.status_code == 400, (action, data)
        assert 'id="alert-error"' in response.content.decode()
    assert browser.post(base + "explode").status_code == 404
    assert AlertEntry.objects.count() == before
    alert.refresh_from_db()
    assert alert.status == "open" and alert.assignee is None


def test_reopening_when_a_newer_alert_is_open_says_why(alice, org_a):
    old = _raise(org_a)
    alert_set_status(alert=old, actor=alice, status="resolved")
    _raise(org_a)  # the condition came back: a new alert
    response = _browser(alice).post(f"/alerts/{old.uuid}/reopen")
    assert response.status_code == 400 and b"reopen that one instead" in response.content
    old.refresh_from_db()
    assert old.status == "resolved"


def test_actions_need_the_csrf_token(alice, org_a):
    alert = _raise(org_a)
    browser = _browser(alice, enforce_csrf_checks=True)
    assert browser.post(f"/alerts/{alert.uuid}/acknowledge").status_code == 403
    page = browser.get(f"/alerts/{alert.uuid}/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    assert browser.post(f"/alerts/{alert.uuid}/acknowledge", {"csrfmiddlewaretoken": token}).status_code == 302
    alert.refresh_from_db()
    assert alert.status == "acknowledged"


def test_the_dashboard_lists_open_alerts_for_triagers_only(alice, bob, org_a):
    _raise(org_a, key="d1", title="Laptop silent for 9 days")
    done = _raise(org_a, key="d2", title="Already handled")
    alert_set_status(alert=done, actor=alice, status="resolved")
    page = _browser(alice).get("/").content.decode()
    assert "Laptop silent for 9 days" in page and "Already handled" not in page
    assert "Open alerts <span class=\"muted\">(1)</span>" in page
    assert 'id="dashboard-alerts"' not in _browser(bob).get("/").content.decode()


def test_the_dashboard_empty_state(alice):
    page = _browser(alice).get("/").content.decode()
    assert 'id="dashboard-alerts"' in page and "No alerts." in page

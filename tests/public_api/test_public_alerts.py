"""Alerts through the public API: scoped to the key's organization and scopes, filters and cursor
pages, every console triage action, clear 4xx errors that store nothing, the history and audit
naming the client."""
import pytest

from accounts.models import AuditEvent, Role
from accounts.services import device_create
from activity.alerts import alert_raise, alert_set_status
from activity.models import Alert, AlertEntry
from tests.conftest import _user

BASE = "/api/v1/public/alerts"


def _raise(org, key="stale:1", **extra):
    extra.setdefault("title", f"Alert {key}")
    return alert_raise(organization=org, kind=extra.pop("kind", "stale_device"), dedup_key=key, notify=False,
                       **extra)[0]


def _error(response, status, field=None):
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert {"detail", "code"} <= set(body)
    if field:
        assert field in body["errors"], body
    return body


@pytest.fixture
def sam(org_a):
    return _user(org_a, "sam@a.example", Role.SECURITY_ANALYST)


@pytest.fixture
def soar(key_for, org_a, alice):
    return key_for(org_a, scopes=["alerts:read", "alerts:write"], created_by=alice, name="SOAR")


def test_reads_need_alerts_read_and_changes_alerts_write(key_for, org_a, alice):
    alert = _raise(org_a)
    _, devices_only = key_for(org_a, scopes=["devices:read"])
    _, reader = key_for(org_a, scopes=["alerts:read"])
    assert _error(devices_only.get(BASE), 403)["code"] == "insufficient_scope"
    assert reader.get(BASE).status_code == 200 and reader.get(f"{BASE}/{alert.uuid}").status_code == 200
    for suffix, body in (("status", {"status": "resolved"}), ("assign", {"assignee": None}),
                         ("notes", {"text": "hi"})):
        _error(reader.post(f"{BASE}/{alert.uuid}/{suffix}", body, format="json"), 403)
    alert.refresh_from_db()
    assert alert.status == "open" and alert.entries.count() == 1


def test_only_the_keys_organization(soar, org_a, org_b):
    ours = _raise(org_a, key="a")
    theirs = _raise(org_b, key="b")
    _, http = soar
    listed = [row["id"] for row in http.get(BASE).json()["results"]]
    assert listed == [str(ours.uuid)]
    _error(http.get(f"{BASE}/{theirs.uuid}"), 404)
    _error(http.post(f"{BASE}/{theirs.uuid}/status", {"status": "resolved"}, format="json"), 404)
    _error(http.post(f"{BASE}/{theirs.uuid}/notes", {"text": "x"}, format="json"), 404)
    _error(http.get(f"{BASE}/not-a-uuid"), 404)
    theirs.refresh_from_db()
    assert theirs.status == "open" and theirs.entries.count() == 1


def test_filters_and_cursor_pages(soar, org_a, alice, sam):
    for n in range(5):
        _raise(org_a, key=f"s{n}", severity="high" if n % 2 else "low")
    acked = _raise(org_a, key="v1", kind="verify_failed")
    alert_set_status(alert=acked, actor=alice, status="acknowledged")
    Alert.objects.filter(pk=acked.pk).update(assignee=sam)
    done = _raise(org_a, key="v2", kind="verify_failed")
    alert_set_status(alert=done, actor=alice, status="resolved")
    _, http = soar

    def titles(**params):
        return [row["title"] for row in http.get(BASE, params).json()["results"]]

    assert titles() == ["Alert v1", "Alert s4", "Alert s3", "Alert s2", "Alert s1", "Alert s0"]  # newest first
    assert titles(status="resolved") == ["Alert v2"]
    assert titles(status="any", kind="verify_failed") == ["Alert v2", "Alert v1"]
    assert titles(severity="high") == ["Alert s3", "Alert s1"]
    assert titles(assignee=sam.email) == titles(assignee=str(sam.uuid)) == ["Alert v1"]
    assert "Alert v1" not in titles(assignee="none")
    seen, cursor = [], None
    while True:
        body = http.get(BASE, {"status": "any", "limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen += [row["title"] for row in body["results"]]
        cursor = body["next"]
        if cursor is None:
            break
    assert seen == titles(status="any") and len(seen) == 7


@pytest.mark.parametrize("params,field", [({"status": "closed"}, "status"), ({"severity": "urgent"}, "severity"),
                                          ({"assignee": "nobody@a.example"}, "assignee"),
                                          ({"cursor": "!!!"}, "cursor"), ({"cursor": "ImEi"}, "cursor"),
                                          ({"limit": "0"}, "limit")])
def test_bad_list_parameters_are_400(soar, params, field):
    _error(soar[1].get(BASE, params), 400, field)


def test_an_alert_with_its_history(soar, org_a, bob):
    laptop = device_create(owner=bob, name="bob-laptop", os_name="Linux", agent_version="1.0")
    alert = _raise(org_a, key="rm", kind="removable_media", severity="high", subject_user=bob, device=laptop,
                   detail={"files": ["/home/bob/q3.xlsx"], "total_bytes": 52428800})
    body = soar[1].get(f"{BASE}/{alert.uuid}").json()
    assert body["id"] == str(alert.uuid) and body["subject_user"] == bob.email and body["device"] == str(laptop.uuid)
    assert body["detail"] == {"files": ["/home/bob/q3.xlsx"], "total_bytes": 52428800}
    assert body["assignee"] is None and body["status"] == "open"
    assert [(e["action"], e["actor"], e["to_status"]) for e in body["history"]] == [("raised", "system", "open")]


def test_a_soar_playbook_triages_an_alert(soar, org_a, sam):
    client, http = soar
    alert = _raise(org_a)
    url = f"{BASE}/{alert.uuid}"
    answer = http.post(f"{url}/status", {"status": "acknowledged"}, format="json")
    assert answer.status_code == 200 and answer.json()["status"] == "acknowledged"
    assert http.post(f"{url}/assign", {"assignee": sam.email}, format="json").json()["assignee"] == sam.email
    note = http.post(f"{url}/notes", {"text": "Ticket INC-4411"}, format="json")
    assert note.status_code == 201 and note.json()["text"] == "Ticket INC-4411" and note.json()["action"] == "note"
    done = http.post(f"{url}/status", {"status": "resolved", "note": "false positive"}, format="json").json()
    assert done["status"] == "resolved" and done["resolved_at"]
    assert http.post(f"{url}/assign", {"assignee": None}, format="json").json()["assignee"] is None
    history = done["history"]
    assert [(e["action"], e["actor"]) for e in history[1:]] == [
        ("status", client.label), ("assigned", client.label), ("note", client.label), ("status", client.label)]
    assert history[-1]["text"] == "false positive"
    audit = AuditEvent.objects.filter(target_uuid=alert.uuid).order_by("pk")
    assert [(a.action, a.actor_label, a.actor) for a in audit] == [
        ("alert.acknowledged", client.label, None), ("alert.assign", client.label, None),
        ("alert.note", client.label, None), ("alert.resolved", client.label, None),
        ("alert.assign", client.label, None)]
    reopened = http.post(f"{url}/status", {"status": "open"}, format="json").json()
    assert reopened["status"] == "open" and reopened["resolved_at"] is None


def test_bad_bodies_are_clear_400s_and_store_nothing(soar, org_a, bob, mallory):
    alert = _raise(org_a)
    _, http = soar
    url = f"{BASE}/{alert.uuid}"
    cases = [("status", {"status": "closed"}, "status"), ("status", {}, "status"),
             ("status", {"status": "resolved", "note": "x" * 10_001}, "note"),
             ("assign", {"assignee": bob.email}, "assignee"),  # a plain user
             ("assign", {"assignee": mallory.email}, "assignee"),  # another organization's
             ("assign", {"assignee": "not-a-uuid"}, "assignee"), ("assign", {}, "assignee"),
             ("notes", {"text": "   "}, "text"), ("notes", {"text": "x" * 10_001}, "text"), ("notes", {}, "text")]
    for suffix, body, field in cases:
        _error(http.post(f"{url}/{suffix}", body, format="json"), 400, field)
    _error(http.post(f"{url}/notes", "not json", content_type="application/json"), 400)
    assert _error(http.post(f"{url}/notes", {"text": "x" * 70_000}, format="json"), 413)
    alert.refresh_from_db()
    assert (alert.status, alert.assignee, alert.entries.count()) == ("open", None, 1)
    assert not AuditEvent.objects.filter(target_uuid=alert.uuid).exists()


def test_reopening_an_old_alert_when_the_condition_is_open_again_is_refused(soar, org_a, alice):
    old = _raise(org_a)
    alert_set_status(alert=old, actor=alice, status="resolved")
    _raise(org_a)
    body = _error(soar[1].post(f"{BASE}/{old.uuid}/status", {"status": "open"}, format="json"), 400, "status")
    assert "reopen that one instead" in body["errors"]["status"][0]
    assert AlertEntry.objects.filter(alert=old).count() == 2


def test_every_call_is_audited_with_its_operation(soar, org_a):
    alert = _raise(org_a)
    soar[1].get(f"{BASE}/{alert.uuid}")
    call = AuditEvent.objects.filter(action="api.call").latest("pk")
    assert call.detail["operation"] == "PublicAlertApi" and call.detail["status"] == 200

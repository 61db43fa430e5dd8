"""GET /api/v1/devices/me/policy (ETag, 304) and POST /api/v1/devices/me/status (commands,
each delivered once)."""
import pytest

from accounts.models import Device, User
from accounts.services import PermissionRefused, device_deauthorize
from archives.device_status import device_backup_now_request
from archives.models import DeviceStatus
from archives.policies import policy_set

POLICY = "/api/v1/devices/me/policy"
STATUS = "/api/v1/devices/me/status"


def _device(client) -> Device:
    return Device.objects.get(uuid=client.enrollment["device_id"])


def test_the_policy_comes_with_an_etag_and_304_when_unchanged(enrolled, alice):
    agent = enrolled(alice)
    first = agent.get(POLICY)
    assert first.status_code == 200 and first["ETag"].startswith('"')
    body = first.json()
    assert body["include"] == ["~"] and "node_modules" in body["exclude_effective"] and body["os_family"] == "linux"
    again = agent.get(POLICY, HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304 and again["ETag"] == first["ETag"] and again.content == b""
    assert agent.get(POLICY, HTTP_IF_NONE_MATCH='"stale", ' + first["ETag"]).status_code == 304
    assert agent.get(POLICY, HTTP_IF_NONE_MATCH='"stale"').status_code == 200


def test_a_policy_change_changes_the_etag(enrolled, alice, org_a):
    agent = enrolled(alice)
    etag = agent.get(POLICY)["ETag"]
    policy_set(organization=org_a, device=_device(agent), changes={"exclude": ["*.secret"]}, actor_label="test")
    changed = agent.get(POLICY, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    assert changed.json()["exclude"] == ["*.secret"] and "*.secret" in changed.json()["exclude_effective"]


def test_a_device_sees_only_its_own_override(enrolled, alice, bob, org_a):
    alices, bobs = enrolled(alice, "alice-laptop"), enrolled(bob, "bob-laptop")
    policy_set(organization=org_a, device=_device(alices), changes={"interval_seconds": 60}, actor_label="test")
    assert alices.get(POLICY).json()["interval_seconds"] == 60
    assert bobs.get(POLICY).json()["interval_seconds"] == 900


def test_a_status_report_is_recorded(enrolled, alice):
    agent = enrolled(alice)
    response = agent.post(STATUS, {
        "state": "running", "selection_files": 10, "selection_bytes": 1000, "pending_bytes": 500,
        "agent_version": "0.1.0", "last_result": {"status": "completed", "finished_at": "2026-12-01T09:00:00Z",
                                                   "files_changed": 3, "bytes_sent": 42}}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["commands"] == [] and response.json()["policy_etag"] == agent.get(POLICY)["ETag"]
    status = DeviceStatus.objects.get(device=_device(agent))
    assert (status.state, status.selection_files, status.selection_bytes, status.pending_bytes) == ("running", 10, 1000, 500)
    assert status.last_result["status"] == "completed" and status.last_result["files_changed"] == 3
    assert status.reported_at is not None


def test_back_up_now_is_delivered_once(enrolled, alice):
    agent = enrolled(alice)
    device_backup_now_request(device=_device(agent), actor=alice)
    first = agent.post(STATUS, {"state": "idle"}, format="json").json()
    assert first["commands"] == [{"command": "backup_now", "detail": {}}]
    assert agent.post(STATUS, {"state": "idle"}, format="json").json()["commands"] == []


def test_a_bad_status_report_is_a_400_in_json(enrolled, alice):
    agent = enrolled(alice)
    for body in ({"state": "dancing"}, {"state": "idle", "pending_bytes": -1}, {"state": "idle", "pending_bytes": 2 ** 63},
                 {"state": "idle", "last_result": {"status": "weird"}}):
        response = agent.post(STATUS, body, format="json")
        assert response.status_code == 400 and response.json()["code"] == "invalid", body


def test_a_deauthorized_device_gets_device_deauthorized(enrolled, alice):
    agent = enrolled(alice)
    device_deauthorize(device=_device(agent), actor=alice)
    for response in (agent.get(POLICY), agent.post(STATUS, {"state": "idle"}, format="json")):
        assert response.status_code == 401 and response.json()["code"] == "device_deauthorized"


def test_without_a_token_both_are_refused(api, db):
    assert api.get(POLICY).status_code == 401
    assert api.post(STATUS, {"state": "idle"}, format="json").status_code == 401


def test_an_unchanged_report_is_not_rewritten_every_time(enrolled, alice):
    agent = enrolled(alice)
    agent.post(STATUS, {"state": "idle", "agent_version": "0.2.0"}, format="json")
    first = DeviceStatus.objects.get(device=_device(agent)).reported_at
    agent.post(STATUS, {"state": "idle", "agent_version": "0.2.0"}, format="json")
    assert DeviceStatus.objects.get(device=_device(agent)).reported_at == first
    assert _device(agent).agent_version == "0.2.0"
    agent.post(STATUS, {"state": "running", "agent_version": "0.2.0"}, format="json")
    status = DeviceStatus.objects.get(device=_device(agent))
    assert status.state == "running" and status.reported_at > first


def test_only_an_admin_of_the_org_or_the_owner_may_ask_for_a_backup_now(enrolled, alice, bob, mallory):
    bobs = _device(enrolled(bob, "bob-laptop"))
    for outsider in (mallory, User.objects.create_user("carol@a.example", organization=alice.organization)):
        with pytest.raises(PermissionRefused):
            device_backup_now_request(device=bobs, actor=outsider)
    device_backup_now_request(device=bobs, actor=bob)
    device_backup_now_request(device=bobs, actor=alice)
    assert DeviceStatus.objects.get(device=bobs).backup_now_requested_at is not None

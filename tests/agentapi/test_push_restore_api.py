"""Push restores through the agent API and the request service (no keystore: the stream job and
the agents as processes are in tests/e2e/test_push_restore.py).

Alice is an administrator of Org A, Bob a plain user of Org A, Mallory an administrator of Org B.
"""
import base64

import pytest
from django.http import Http404

from accounts.models import AuditEvent, Device, Role
from archives.models import Archive, PushRestore, RestoreJob
from archives.push_restores import push_restore_request
from archives.restore_approval import restore_approval_set, restore_job_decide
from archives.restores import RestoreInvalid
from archives.tasks import push_stream_build_task, restore_job_run_task
from formats.push_stream import push_keypair_generate
from tests.conftest import _user

BASE = "/api/v1/devices/me/push-restores"


@pytest.fixture
def sent(monkeypatch):
    """Tasks the services enqueue (recorded, not run: the e2e test runs them on a real worker)."""
    calls = []
    monkeypatch.setattr(push_stream_build_task, "delay", lambda job_id: calls.append(("push", job_id)))
    monkeypatch.setattr(restore_job_run_task, "delay", lambda job_id: calls.append(("web", job_id)))
    return calls


@pytest.fixture
def fleet(alice, bob, mallory, enrolled):
    clients = {name: enrolled(user, name) for name, user in
               (("alice-laptop", alice), ("alice-desktop", alice), ("bob-laptop", bob), ("mallory-laptop", mallory))}
    devices = {name: Device.objects.get(name=name) for name in clients}
    return clients, devices, Archive.objects.get(device__name="alice-laptop")


def _request(actor, archive, device, **extra) -> RestoreJob:
    return push_restore_request(actor=actor, archive=archive, target_device=device, target_path="/restored", **extra)


def _key() -> str:
    return base64.b64encode(push_keypair_generate()[1]).decode()


def test_the_target_hears_of_the_job_in_its_status_report_and_lists_it(fleet, alice, django_capture_on_commit_callbacks):
    clients, devices, archive = fleet
    job = _request(alice, archive, devices["bob-laptop"], paths=["/home/alice/docs"])
    report = clients["bob-laptop"].post("/api/v1/devices/me/status", {"state": "idle"}, format="json").json()
    assert {"command": "push_restore", "detail": {"job": str(job.uuid)}} in report["commands"]
    other = clients["alice-desktop"].post("/api/v1/devices/me/status", {"state": "idle"}, format="json").json()
    assert not [c for c in other["commands"] if c["command"] == "push_restore"]
    [listed] = clients["bob-laptop"].get(BASE).json()["results"]
    assert listed["id"] == str(job.uuid) and listed["mode"] == "stream" and listed["status"] == "queued"
    assert listed["archive"] == str(archive.uuid) and listed["paths"] == ["/home/alice/docs"]
    assert listed["target_path"] == "/restored" and listed["stream"] == "pending"
    assert clients["alice-desktop"].get(BASE).json()["results"] == []


def test_accepting_a_stream_job_stores_the_key_once_and_starts_the_server_job(
        fleet, alice, sent, django_capture_on_commit_callbacks):
    clients, devices, archive = fleet
    job = _request(alice, archive, devices["bob-laptop"])
    bob = clients["bob-laptop"]
    with django_capture_on_commit_callbacks(execute=True):
        accepted = bob.post(f"{BASE}/{job.uuid}/accept", {"public_key": _key()}, format="json")
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["status"] == "running"
    assert sent == [("push", job.pk)]
    assert len(bytes(PushRestore.objects.get(job=job).agent_public_key)) == 32
    again = bob.post(f"{BASE}/{job.uuid}/accept", {"public_key": _key()}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "push_conflict"
    not_ready = bob.get(f"{BASE}/{job.uuid}/stream")
    assert not_ready.status_code == 409 and not_ready.json()["code"] == "stream_not_ready"
    # No command once accepted: the job is running.
    report = bob.post("/api/v1/devices/me/status", {"state": "idle"}, format="json").json()
    assert not [c for c in report["commands"] if c["command"] == "push_restore"]


@pytest.mark.parametrize("body,field", [
    ({}, "public_key"),
    ({"public_key": "not base64!"}, "public_key"),
    ({"public_key": base64.b64encode(b"short").decode()}, "public_key"),
])
def test_a_bad_public_key_is_refused_and_nothing_is_stored(fleet, alice, sent, body, field,
                                                           django_capture_on_commit_callbacks):
    clients, devices, archive = fleet
    job = _request(alice, archive, devices["bob-laptop"])
    with django_capture_on_commit_callbacks(execute=True):
        response = clients["bob-laptop"].post(f"{BASE}/{job.uuid}/accept", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid" and field in response.json()["errors"]
    job.refresh_from_db()
    assert job.status == "queued" and job.push.agent_public_key is None and sent == []


def test_a_wrong_or_foreign_device_cannot_see_accept_fetch_or_report_on_the_job(fleet, alice):
    clients, devices, archive = fleet
    job = _request(alice, archive, devices["bob-laptop"])
    for name in ("alice-laptop", "alice-desktop", "mallory-laptop"):
        client = clients[name]
        assert client.get(f"{BASE}/{job.uuid}").status_code == 404
        assert client.post(f"{BASE}/{job.uuid}/accept", {"public_key": _key()}, format="json").status_code == 404
        assert client.get(f"{BASE}/{job.uuid}/stream").status_code == 404
        assert client.post(f"{BASE}/{job.uuid}/progress", {"files_done": 1}, format="json").status_code == 404
        assert client.post(f"{BASE}/{job.uuid}/result", {"status": "done"}, format="json").status_code == 404
    job.refresh_from_db()
    assert job.status == "queued"


def test_an_own_key_job_runs_to_done_with_progress(fleet, alice, sent, django_capture_on_commit_callbacks):
    clients, devices, archive = fleet
    job = _request(alice, archive, devices["alice-desktop"])
    desk = clients["alice-desktop"]
    assert desk.post(f"{BASE}/{job.uuid}/accept", {"public_key": _key()}, format="json").status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        assert desk.post(f"{BASE}/{job.uuid}/accept", {}, format="json").status_code == 200
    assert sent == []  # the server reads no key for the device's own user
    assert desk.get(f"{BASE}/{job.uuid}/stream").json()["code"] == "no_stream"
    progress = desk.post(f"{BASE}/{job.uuid}/progress", {"files_done": 1, "bytes_done": 10, "files_total": 3,
                                                          "bytes_total": 30}, format="json")
    assert progress.status_code == 200 and progress.json()["files_total"] == 3
    assert desk.post(f"{BASE}/{job.uuid}/progress", {"files_done": -1}, format="json").status_code == 400
    done = desk.post(f"{BASE}/{job.uuid}/result", {"status": "done", "files_done": 3, "bytes_done": 30}, format="json")
    assert done.status_code == 200 and done.json()["status"] == "done"
    job.refresh_from_db()
    assert (job.status, job.files_done, job.bytes_done, job.error) == ("done", 3, 30, "")
    assert desk.post(f"{BASE}/{job.uuid}/result", {"status": "failed"}, format="json").status_code == 409
    assert set(AuditEvent.objects.filter(target_uuid=job.uuid).values_list("action", flat=True)) == {
        "restore.push_request", "restore.push_accept", "restore.push_done"}


def test_who_may_push_and_where(fleet, alice, bob, mallory, org_a):
    clients, devices, archive = fleet
    analyst = _user(org_a, "sam@a.example", Role.SECURITY_ANALYST)
    operator = _user(org_a, "olga@a.example", Role.RESTORE_OPERATOR)
    with pytest.raises(Http404):
        _request(analyst, archive, devices["bob-laptop"])  # no restores for analysts
    with pytest.raises(Http404):
        _request(bob, archive, devices["bob-laptop"])  # a plain user: only their own archives
    with pytest.raises(Http404):
        _request(alice, archive, devices["mallory-laptop"])  # another organization's device
    with pytest.raises(Http404):
        _request(mallory, archive, devices["mallory-laptop"])
    bob_archive = Archive.objects.get(device__name="bob-laptop")
    with pytest.raises(Http404):
        _request(bob, bob_archive, devices["alice-laptop"])  # a plain user pushes only to their own devices
    assert _request(bob, bob_archive, devices["bob-laptop"]).push.mode == "own_key"
    assert _request(operator, archive, devices["bob-laptop"]).push.mode == "stream"
    Device.objects.filter(name="bob-laptop").update(authorized=False)
    with pytest.raises(Http404):
        _request(alice, archive, Device.objects.get(name="bob-laptop"))
    with pytest.raises(RestoreInvalid, match="target_path"):
        push_restore_request(actor=alice, archive=archive, target_device=devices["alice-desktop"],
                             target_path="relative/dir")
    assert RestoreJob.objects.filter(kind="push").count() == 2


def test_approval_holds_the_job_from_the_agent_and_never_starts_a_web_restore(
        fleet, alice, org_a, sent, django_capture_on_commit_callbacks):
    clients, devices, _ = fleet
    second = _user(org_a, "ada@a.example", Role.ORG_ADMIN)
    restore_approval_set(organization=org_a, required=True, actor=alice)
    bob_archive = Archive.objects.get(device__name="bob-laptop")
    job = _request(alice, bob_archive, devices["alice-desktop"])
    assert job.status == "awaiting_approval"
    assert clients["alice-desktop"].get(BASE).json()["results"] == []
    with django_capture_on_commit_callbacks(execute=True):
        restore_job_decide(actor=second, job=job, approve=True)
    assert sent == []  # the agent picks it up; no zip is made
    assert [j["id"] for j in clients["alice-desktop"].get(BASE).json()["results"]] == [str(job.uuid)]

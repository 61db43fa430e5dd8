"""A push restore through the public API (brief rule: every console action is scriptable)."""
from accounts.models import AuditEvent
from archives.models import RestoreJob
from tests.public_api.conftest import device_with_archive


def test_an_integration_asks_for_a_push_restore_and_follows_it(full, alice, bob, mallory):
    _, http = full
    _, archive = device_with_archive(alice, "alice-laptop")
    target, _ = device_with_archive(bob, "bob-laptop")
    created = http.post("/api/v1/public/restores", {"archive": str(archive.uuid), "target_device": str(target.uuid),
                                                    "target_path": "/srv/restored"}, format="json")
    assert created.status_code == 201, created.content
    job = RestoreJob.objects.get(uuid=created.json()["id"])
    assert (job.kind, job.push.target_device, job.push.mode, job.requested_by) == ("push", target, "stream", alice)
    body = http.get(f"/api/v1/public/restores/{job.uuid}").json()
    assert (body["kind"], body["target_device"], body["target_path"], body["status"]) == (
        "push", str(target.uuid), "/srv/restored", "queued")
    assert AuditEvent.objects.filter(action="api.restore.push_request", target_uuid=job.uuid).exists()
    web = http.post("/api/v1/public/restores", {"archive": str(archive.uuid)}, format="json").json()
    assert http.get(f"/api/v1/public/restores/{web['id']}").json()["target_device"] is None


def test_bad_push_requests_are_refused_and_create_nothing(full, alice, bob, mallory):
    _, http = full
    _, archive = device_with_archive(alice, "alice-laptop")
    target, _ = device_with_archive(bob, "bob-laptop")
    foreign, _ = device_with_archive(mallory, "mallory-laptop")
    for body, status, field in (
            ({"target_device": str(target.uuid)}, 400, "target_path"),
            ({"target_path": "/srv"}, 400, "target_device"),
            ({"target_device": str(target.uuid), "target_path": "relative"}, 400, "target_path"),
            ({"target_device": str(foreign.uuid), "target_path": "/srv"}, 404, None)):
        response = http.post("/api/v1/public/restores", {"archive": str(archive.uuid), **body}, format="json")
        assert response.status_code == status, (body, response.content)
        if field:
            assert field in response.json()["errors"], response.json()
    assert not RestoreJob.objects.exists()

"""The console's push restore form and the job's live progress (archives/push_restores.py has
the rules; tests/agentapi/test_push_restore_api.py the agent's side)."""
from archives.models import RestoreJob
from archives.push_restores import push_restore_accept, push_restore_progress
from tests.public_api.conftest import device_with_archive


def _setup(alice, bob, mallory):
    _, archive = device_with_archive(alice, "alice-laptop")
    target, _ = device_with_archive(bob, "bob-laptop")
    foreign, _ = device_with_archive(mallory, "mallory-laptop")
    return archive, target, foreign


def test_an_admin_pushes_from_the_form_and_follows_the_progress(client, alice, bob, mallory):
    archive, target, foreign = _setup(alice, bob, mallory)
    client.force_login(alice)
    url = f"/restores/archives/{archive.uuid}/push"
    page = client.get(url).content.decode()
    assert "bob-laptop" in page and "mallory-laptop" not in page  # only the organization's devices
    prefilled = client.post(url, {"prefill": "1", "paths": ["/home/alice/docs", "/home/alice/a.txt"],
                                  "at": "2026-01-01T00:00:00"}).content.decode()
    assert "/home/alice/docs\n/home/alice/a.txt" in prefilled and not RestoreJob.objects.exists()
    response = client.post(url, {"paths": "/home/alice/docs\n\n", "target_device": str(target.uuid),
                                 "target_path": "/srv/restored"})
    job = RestoreJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/restores/{job.uuid}/"
    assert (job.kind, job.paths, job.push.target_device, job.push.target_path) == (
        "push", ["/home/alice/docs"], target, "/srv/restored")
    detail = client.get(f"/restores/{job.uuid}/").content.decode()
    assert "Waiting for bob-laptop to pick the job up" in detail and 'hx-trigger="every 1s"' in detail
    push_restore_accept(device=target, job=job, public_key=bytes(32))
    push_restore_progress(job=job, files_done=2, bytes_done=2048, files_total=5, bytes_total=4096)
    partial = client.get(f"/restores/{job.uuid}/", HTTP_HX_REQUEST="true").content.decode()
    assert "2 of 5 files" in partial and 'value="2048"' in partial and "<html" not in partial
    listing = client.get("/restores/").content.decode()
    assert "Push to bob-laptop" in listing


def test_bad_input_is_refused_and_creates_nothing(client, alice, bob, mallory):
    archive, target, foreign = _setup(alice, bob, mallory)
    client.force_login(alice)
    url = f"/restores/archives/{archive.uuid}/push"
    for body in ({"target_device": str(target.uuid), "target_path": "relative"},
                 {"target_device": str(foreign.uuid), "target_path": "/srv"},
                 {"target_device": str(target.uuid), "target_path": "/srv", "paths": "not/absolute"},
                 {"target_device": str(target.uuid)}):
        assert client.post(url, body).status_code == 400, body
    assert not RestoreJob.objects.exists()


def test_no_push_page_for_an_analyst_or_someone_elses_archive(client, alice, bob, mallory, org_a):
    from accounts.models import Role
    from tests.conftest import _user

    archive, target, _ = _setup(alice, bob, mallory)
    url = f"/restores/archives/{archive.uuid}/push"
    for person in (bob, mallory, _user(org_a, "sam@a.example", Role.SECURITY_ANALYST)):
        client.force_login(person)
        assert client.get(url).status_code == 404
        assert client.post(url, {"target_device": str(target.uuid), "target_path": "/srv"}).status_code == 404
    assert not RestoreJob.objects.exists()

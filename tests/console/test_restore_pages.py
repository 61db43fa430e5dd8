"""The web-restore pages (issue 9 items 4 and 7): who sees which archive and job, the form that
creates a job, progress, the download (asker and admins only, audited, 410 once expired), CSRF;
and, with a real agent's backup, browse → restore a folder → download the same bytes."""
import io
import os
import zipfile
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent
from archives.models import RestoreJob
from archives.tasks import restore_job_run_task
from keystore.models import KeyAccess
from tests.conftest import PASSWORD, _user
from tests.console.restore_fixtures import *  # noqa: F403 - the shared fixtures
from tests.e2e.conftest import enroll_agent, haven_env, live_server_haven, live_servers, run_agent  # noqa: F401

ZERO = "00000000-0000-0000-0000-000000000000"


def _restore_urls(archive, job) -> list[tuple[str, str]]:
    """(method, url) of every restore page, with real ids."""
    return [("get", reverse("console:restore-jobs")), ("get", reverse("console:restore-archives")),
            ("get", reverse("console:archive-browser", args=[archive.uuid])),
            ("get", reverse("console:file-versions", args=[archive.uuid]) + "?path=/x"),
            ("post", reverse("console:restore-create", args=[archive.uuid])),
            ("get", reverse("console:restore-job", args=[job.uuid])),
            ("get", reverse("console:restore-download", args=[job.uuid])),
            ("post", reverse("console:restore-decide", args=[job.uuid, "approve"])),
            ("post", reverse("console:restore-decide", args=[job.uuid, "reject"]))]


def test_a_security_analyst_has_no_restore_entry_point_and_gets_404_everywhere(
        browser_for, analyst, bob, alice, archives_of, finished_job):
    own, bobs = archives_of(analyst, "analyst-laptop"), archives_of(bob)
    job = finished_job(archive=bobs, requested_by=alice)
    client = browser_for(analyst)
    home = client.get("/").content.decode()
    assert "/restores/" not in home and "Restores" not in home
    for archive in (own, bobs):
        for method, url in _restore_urls(archive, job):
            response = getattr(client, method)(url, {"paths": ["/home"]} if method == "post" else None)
            assert response.status_code == 404, (method, url)
    assert not KeyAccess.objects.exists() and RestoreJob.objects.count() == 1


def test_another_organization_gets_404_for_every_restore_url(browser_for, mallory, bob, alice, archives_of,
                                                             finished_job):
    job = finished_job(archive=archives_of(bob), requested_by=alice)
    client = browser_for(mallory)
    for method, url in _restore_urls(job.archive, job)[2:]:
        response = getattr(client, method)(url, {"paths": ["/home"]} if method == "post" else None)
        assert response.status_code == 404, (method, url)
    for url in (reverse("console:archive-browser", args=[ZERO]), reverse("console:restore-job", args=["nope"])):
        assert client.get(url).status_code == 404
    assert not KeyAccess.objects.exists() and RestoreJob.objects.count() == 1


def test_a_user_sees_only_their_own_archives_and_jobs(browser_for, alice, bob, archives_of, finished_job):
    alices = archives_of(alice, "alice-box")
    archives_of(bob, "bob-box")
    alices_job = finished_job(archive=alices, requested_by=alice)
    page = browser_for(bob).get(reverse("console:restore-archives")).content.decode()
    assert "bob-box" in page and "alice-box" not in page
    client = browser_for(bob)
    assert client.get(reverse("console:archive-browser", args=[alices.uuid])).status_code == 404
    assert client.post(reverse("console:restore-create", args=[alices.uuid]), {"paths": ["/"]}).status_code == 404
    assert client.get(reverse("console:restore-job", args=[alices_job.uuid])).status_code == 404
    assert client.get(reverse("console:restore-download", args=[alices_job.uuid])).status_code == 404
    admin_page = browser_for(alice).get(reverse("console:restore-archives")).content.decode()
    assert "bob-box" in admin_page and "alice-box" in admin_page
    assert str(alices_job.uuid) not in client.get(reverse("console:restore-jobs")).content.decode()


def test_the_form_creates_a_job_and_enqueues_it_on_commit(browser_for, operator, bob, archives_of,
                                                         django_capture_on_commit_callbacks, queued):
    archive = archives_of(bob)
    with django_capture_on_commit_callbacks(execute=True):
        response = browser_for(operator).post(reverse("console:restore-create", args=[archive.uuid]),
                                              {"paths": ["/home/bob/docs/", "/home/bob/a.txt"],
                                               "at": "2026-01-31T12:00"})
    job = RestoreJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("console:restore-job", args=[job.uuid])
    assert queued == [job.pk]
    assert (job.requested_by, job.paths, job.at.isoformat()) == (
        operator, ["/home/bob/docs", "/home/bob/a.txt"], "2026-01-31T12:00:00+00:00")
    assert AuditEvent.objects.filter(action="restore.request", target_uuid=job.uuid, actor=operator).exists()
    assert [m.to for m in mail.outbox] == [[bob.email]] and operator.email in mail.outbox[0].body


@pytest.mark.parametrize("form, message", [
    ({"paths": ["relative/path"]}, "not absolute"),
    ({}, "Select files or folders"),
    ({"paths": ["/x"], "at": "yesterday"}, "valid date"),
])
def test_bad_input_answers_400_and_creates_nothing(browser_for, alice, archives_of, queued, form, message):
    response = browser_for(alice).post(reverse("console:restore-create", args=[archives_of(alice).uuid]), form)
    assert response.status_code == 400 and message in response.content.decode()
    assert not RestoreJob.objects.exists() and not queued


def test_a_bad_browse_path_answers_400_without_a_key_access(browser_for, alice, archives_of):
    response = browser_for(alice).get(reverse("console:archive-browser", args=[archives_of(alice).uuid]),
                                      {"path": "relative"})
    assert response.status_code == 400 and "absolute" in response.content.decode()
    assert not KeyAccess.objects.exists()


def test_forms_need_the_csrf_token(alice, archives_of, finished_job, second_admin, queued):
    archive = archives_of(alice)
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=alice.email, password=PASSWORD)
    assert client.post(reverse("console:restore-create", args=[archive.uuid]), {"paths": ["/"]}).status_code == 403
    assert not RestoreJob.objects.exists()
    job = finished_job(archive=archive, requested_by=second_admin)
    assert client.post(reverse("console:restore-decide", args=[job.uuid, "approve"])).status_code == 403
    assert client.post(reverse("console:restore-settings"), {"required": "on"}).status_code == 403


def test_the_zip_is_served_to_the_asker_and_admins_only_and_audited(browser_for, alice, bob, mallory, operator,
                                                                    org_a, archives_of, finished_job,
                                                                    django_capture_on_commit_callbacks):
    other_operator = _user(org_a, "otto@a.example", "restore_operator")
    content = b"PK-not-really-a-zip" * 100
    job = finished_job(archive=archives_of(bob), requested_by=operator, content=content)
    for person in (operator, alice):
        with django_capture_on_commit_callbacks(execute=True):
            response = browser_for(person).get(reverse("console:restore-download", args=[job.uuid]))
        assert response.status_code == 200 and b"".join(response.streaming_content) == content
        assert response["Content-Type"] == "application/zip"
        assert f"haven-restore-{job.uuid}.zip" in response["Content-Disposition"]
    for outsider in (bob, other_operator, mallory):
        assert browser_for(outsider).get(reverse("console:restore-download", args=[job.uuid])).status_code == 404
    downloads = AuditEvent.objects.filter(action="restore.download", target_uuid=job.uuid)
    assert sorted(downloads.values_list("actor__email", flat=True)) == sorted([operator.email, alice.email])
    assert [m.to for m in mail.outbox] == [[bob.email]] * 2  # the user whose data it is, each time
    assert "downloaded" in mail.outbox[0].subject


def test_no_email_when_a_user_downloads_their_own_restore(browser_for, bob, archives_of, finished_job,
                                                          django_capture_on_commit_callbacks):
    job = finished_job(archive=archives_of(bob), requested_by=bob)
    with django_capture_on_commit_callbacks(execute=True):
        assert browser_for(bob).get(reverse("console:restore-download", args=[job.uuid])).status_code == 200
    assert mail.outbox == []


def test_an_expired_download_answers_410(browser_for, alice, archives_of, finished_job):
    job = finished_job(archive=archives_of(alice), requested_by=alice)
    RestoreJob.objects.filter(pk=job.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = browser_for(alice).get(reverse("console:restore-download", args=[job.uuid]))
    assert response.status_code == 410 and "expired" in response.content.decode()
    assert not AuditEvent.objects.filter(action="restore.download").exists()
    page = browser_for(alice).get(reverse("console:restore-job", args=[job.uuid])).content.decode()
    assert "has expired" in page and reverse("console:restore-download", args=[job.uuid]) not in page


def test_a_queued_job_polls_its_progress_and_a_finished_one_stops(browser_for, alice, archives_of, finished_job,
                                                                  queued):
    archive = archives_of(alice)
    client = browser_for(alice)
    client.post(reverse("console:restore-create", args=[archive.uuid]), {"paths": ["/home"]})
    waiting = RestoreJob.objects.get()
    partial = client.get(reverse("console:restore-job", args=[waiting.uuid]), headers={"HX-Request": "true"})
    text = partial.content.decode()
    assert partial.status_code == 200 and "<html" not in text and 'hx-trigger="every 1s"' in text and "Queued" in text
    done = finished_job(archive=archive, requested_by=alice)
    text = client.get(reverse("console:restore-job", args=[done.uuid]), headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in text and reverse("console:restore-download", args=[done.uuid]) in text


def test_the_job_list_is_scoped_and_its_queries_do_not_grow(browser_for, alice, bob, operator, archives_of,
                                                            finished_job, django_assert_max_num_queries):
    archive = archives_of(bob)
    jobs = [finished_job(archive=archive, requested_by=operator if i % 2 else alice) for i in range(30)]
    client = browser_for(alice)
    with django_assert_max_num_queries(8):
        page = client.get(reverse("console:restore-jobs")).content.decode()
    assert all(str(j.uuid) in page for j in jobs)
    mine = browser_for(operator).get(reverse("console:restore-jobs")).content.decode()
    assert all((str(j.uuid) in mine) == (j.requested_by == operator) for j in jobs)


# --- with a real backup (an agent, a live server, OpenBao) --------------------------------------

def _write(path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.mark.slow
def test_browse_restore_a_folder_and_download_the_same_bytes(live_server_haven, browser_for, alice, bob, tmp_path,  # noqa: F811
                                                            data_dir, django_capture_on_commit_callbacks, queued):
    source = tmp_path / "home"
    _write(source / "docs" / "report.txt", b"QUARTERLY " * 5000)
    _write(source / "docs" / "deep" / "notes.md", os.urandom(70_000))
    _write(source / "other.txt", b"not restored")
    run_agent(enroll_agent(live_server_haven, tmp_path / "agent", bob, "bob-laptop"), "backup", str(source))
    archive = bob.archives.get()
    client = browser_for(alice)
    url = reverse("console:archive-browser", args=[archive.uuid])
    before = KeyAccess.objects.count()

    page = client.get(url, {"path": str(source)})
    text = page.content.decode()
    assert page.status_code == 200 and "docs" in text and "other.txt" in text and "<html" in text
    folder = client.get(url, {"path": str(source / "docs")}, headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in folder and "report.txt" in folder and "deep" in folder and "48.8\xa0KB" in folder
    versions = client.get(reverse("console:file-versions", args=[archive.uuid]),
                          {"path": str(source / "docs" / "report.txt")}).content.decode()
    assert "48.8\xa0KB" in versions
    assert KeyAccess.objects.count() - before == 6  # three browse jobs, started + succeeded each

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("console:restore-create", args=[archive.uuid]),
                               {"paths": [str(source / "docs")]})
    job = RestoreJob.objects.get()
    assert response.status_code == 302 and queued == [job.pk]
    assert restore_job_run_task(job.pk) == "done"  # in-process; tests/archives runs it on a real worker
    with django_capture_on_commit_callbacks(execute=True):
        download = client.get(reverse("console:restore-download", args=[job.uuid]))
    with zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))) as restored:
        got = {i.filename: restored.read(i) for i in restored.infolist()}
    assert got == {str(p).lstrip("/"): p.read_bytes() for p in (source / "docs").rglob("*") if p.is_file()}
    assert [m.to for m in mail.outbox] == [[bob.email], [bob.email]]  # restored, then downloaded, by an admin

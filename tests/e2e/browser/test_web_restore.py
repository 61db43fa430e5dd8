"""A web restore in a real browser (issue 9 "Must show"): a real agent backs a folder up to a live
Haven; an administrator signs in with chromium, browses the archive, selects a folder, restores it
on a real Celery worker on the `keys` queue, downloads the zip and it holds the very bytes; a
security analyst sees no restore button and gets 404 on the restore URLs."""
import os
import subprocess
import zipfile

import pytest
from django.utils import timezone

from accounts.models import Role
from archives.models import RestoreJob
from tests.conftest import _user
from tests.e2e.browser.conftest import screenshot, sign_in
from tests.e2e.conftest import enroll_agent, run_agent
from tests.support import REPO, VENV_BIN, stop_process


def _write(path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def keys_worker(haven_env):
    """The production shape: `celery worker -Q keys --max-tasks-per-child 1` on the suite's Redis."""
    worker = subprocess.Popen([str(VENV_BIN / "celery"), "-A", "config", "worker", "-Q", "keys", "--concurrency", "1",
                               "--max-tasks-per-child", "1", "--loglevel", "WARNING", "-n",
                               f"keys-browser-{os.getpid()}@%h"], cwd=REPO, env=haven_env)
    yield worker
    stop_process(worker)


@pytest.mark.slow
def test_an_admin_restores_a_folder_in_the_browser_and_downloads_the_same_bytes(
        live_server_haven, keys_worker, page, alice, bob, tmp_path):
    source = tmp_path / "home"
    _write(source / "Documents" / "plan.txt", b"the plan\n" * 3000)
    _write(source / "Documents" / "photos" / "cat.jpg", os.urandom(3 * 1024 * 1024))
    _write(source / "Documents" / "empty.txt", b"")
    _write(source / "Music" / "song.mp3", os.urandom(200_000))
    run_agent(enroll_agent(live_server_haven, tmp_path / "agent", bob, "bob-laptop"), "backup", str(source))
    archive = bob.archives.get()
    server = live_server_haven.url

    sign_in(page, live_server_haven, alice)
    page.wait_for_url(f"{server}/")
    page.click("nav >> text=Restores")
    page.click("text=New restore")
    page.click("tr:has-text('bob-laptop') >> text=Browse and restore")
    page.wait_for_url(f"{server}/restores/archives/{archive.uuid}/")
    # Down to the backed-up folder's parent by URL, then one level by clicking (an htmx swap).
    page.goto(f"{server}/restores/archives/{archive.uuid}/?path={source.parent}")
    page.click(f"#tree a.folder-link:has-text('{source.name}')")
    page.wait_for_selector("#tree a.folder-link:has-text('Documents')")
    assert "Music" in page.inner_text("#tree") and "/restores/archives/" in page.url  # hx-push-url
    page.click("#tree a.folder-link:has-text('Documents')")
    page.wait_for_selector("#tree td:has-text('plan.txt')")
    page.click("#tree tr:has-text('plan.txt') >> text=versions")
    page.wait_for_selector("#versions h2:has-text('Versions')")
    assert "26.4\xa0KB" in page.inner_text("#versions")
    screenshot(page, "archive-browser")

    page.click(f"#tree .crumbs a:has-text('{source.name}')")
    page.wait_for_selector("#tree a.folder-link:has-text('Music')")
    page.check("#tree input[aria-label='Select Documents']")
    page.click("#tree button:has-text('Restore selected')")
    page.wait_for_url(f"{server}/restores/*/")
    job = RestoreJob.objects.get()
    assert job.paths == [str(source / "Documents")] and job.requested_by == alice
    page.wait_for_selector("#download", timeout=120_000)  # the progress partial polls until done
    assert "Done" in page.inner_text("#progress")
    screenshot(page, "restore")
    with page.expect_download() as download:
        page.click("#download")
    zip_path = download.value.path()
    with zipfile.ZipFile(zip_path) as restored:
        got = {i.filename: restored.read(i) for i in restored.infolist()}
    expected = {str(p).lstrip("/"): p.read_bytes() for p in (source / "Documents").rglob("*") if p.is_file()}
    assert got == expected and len(expected) == 3


@pytest.mark.slow
def test_a_security_analyst_sees_no_restore_button_and_gets_404(live_server_haven, chromium, page, alice, bob,
                                                               tmp_path, org_a):
    analyst = _user(org_a, "sam@a.example", Role.SECURITY_ANALYST)
    _write(tmp_path / "home" / "a.txt", b"a")
    run_agent(enroll_agent(live_server_haven, tmp_path / "agent", bob, "bob-laptop"), "backup", str(tmp_path / "home"))
    archive = bob.archives.get()
    job = RestoreJob.objects.create(organization=archive.organization, archive=archive, requested_by=alice,
                                    at=timezone.now())
    server = live_server_haven.url
    sign_in(page, live_server_haven, analyst)
    page.wait_for_url(f"{server}/")
    assert "Restores" not in page.inner_text("nav") and page.locator("text=Browse and restore").count() == 0
    for url in ("/restores/", "/restores/archives/", f"/restores/archives/{archive.uuid}/",
                f"/restores/archives/{archive.uuid}/versions?path=/a", f"/restores/{job.uuid}/",
                f"/restores/{job.uuid}/download"):
        assert page.goto(server + url).status == 404, url

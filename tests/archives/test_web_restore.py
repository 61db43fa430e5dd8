"""Web restores (DESIGN §6, issue 9 item 4): a real agent backs up through a live server into the
test database; the restore task fetches the key from a real OpenBao, decrypts through formats/
and writes a zip that must hold exactly the files, byte for byte."""
import io
import os
import subprocess
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.http import Http404
from django.utils import timezone

from accounts.models import Role
from archives.models import Archive, Pack, RestoreJob
from archives.restore_selectors import RestoreResultUnavailable, restore_job_for_user, restore_result_for_user
from archives.restores import (
    RestoreInvalid,
    archive_browse,
    archive_file_versions,
    restore_job_claim,
    restore_job_request,
    restore_job_run,
    restore_results_dir,
)
from archives.storage import pack_storage
from archives.tasks import restore_job_run_task, restore_results_expire_task
from formats.keys import key_id_for
from keystore.models import KeyAccess, UserKey
from tests.conftest import _user
from tests.e2e.conftest import (  # noqa: F401 - the live server fixtures are used here
    enroll_agent,
    haven_env,
    live_server_haven,
    live_servers,
    run_agent,
)
from tests.support import REPO, VENV_BIN, child_pids, stop_process, wait_until

MiB = 1024 * 1024
LATIN1 = os.fsdecode(b"latin1-caf\xe9.txt")


@pytest.fixture
def escrowed():
    """Overrides tests/archives/conftest.py: here the agent escrows its own key in OpenBao."""
    yield


@pytest.fixture
def data_dir(settings, tmp_path):
    settings.DATA_DIR = tmp_path / "var"  # the live server's and the worker's HAVEN_DATA_DIR too
    return settings.DATA_DIR


@pytest.fixture
def queued(monkeypatch):
    """Jobs handed to Celery; the direct tests then run the task themselves."""
    sent = []
    monkeypatch.setattr(restore_job_run_task, "delay", lambda job_id: sent.append(job_id))
    return sent


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)


def _files(root: Path) -> dict[bytes, bytes]:
    """absolute path without the leading "/" (as bytes) -> content, for every regular file."""
    return {os.fsencode(str(p)).lstrip(b"/"): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def _zip(path) -> dict[bytes, bytes]:
    """The entries of a zip: a path, or a stored restore result's key (on the pack storage)."""
    if isinstance(path, str):
        path = io.BytesIO(pack_storage().read_all(path))
    with zipfile.ZipFile(path) as archive:
        return {(i.filename.encode("utf-8") if i.flag_bits & 0x800 else i.filename.encode("cp437")): archive.read(i)
                for i in archive.infolist()}


@dataclass
class Backup:
    source: Path
    archive: Archive
    first: dict[bytes, bytes]
    first_time: datetime
    latest: dict[bytes, bytes]


@pytest.fixture
def backed_up(live_server_haven, alice, tmp_path, data_dir) -> Backup:  # noqa: F811
    source = tmp_path / "home"
    _write(source / "docs" / "report.txt", b"QUARTERLY REPORT " * 6000)
    _write(source / "docs" / "sub" / "notes.md", b"# notes\n" * 50, mode=0o600)
    _write(source / "big.bin", os.urandom(9 * MiB))  # several blocks
    _write(source / "empty.txt", b"")
    _write(source / "naïve café ☕.txt", "ünïcödé".encode())
    _write(source / LATIN1, b"a name that is not UTF-8")
    _write(source / "scripts" / "run.sh", b"#!/bin/sh\necho hi\n", mode=0o755)
    os.symlink("docs/report.txt", source / "link")  # not backed up
    config = enroll_agent(live_server_haven, tmp_path / "agent", alice, "laptop")
    run_agent(config, "backup", str(source))
    first, first_time = _files(source), timezone.now()

    _write(source / "docs" / "report.txt", b"REVISED REPORT " * 7000)
    with open(source / "big.bin", "r+b") as handle:
        handle.seek(4 * MiB)
        handle.write(os.urandom(MiB))
    os.unlink(source / "empty.txt")
    _write(source / "new" / "added.txt", b"added later")
    run_agent(config, "backup", str(source))
    archive = Archive.objects.get(user=alice)
    return Backup(source=source, archive=archive, first=first, first_time=first_time, latest=_files(source))


def _run(actor, backup: Backup, queued, **request) -> RestoreJob:
    job = restore_job_request(actor=actor, archive=backup.archive, **request)
    assert queued == [job.pk]
    queued.clear()
    assert restore_job_run_task(job.pk) == "done"
    job.refresh_from_db()
    return job


@pytest.mark.slow
def test_the_zip_holds_every_file_byte_for_byte(backed_up, alice, queued):
    job = _run(alice, backed_up, queued)
    assert job.status == "done" and job.error == ""
    assert job.result_key == f"restore-results/{backed_up.archive.organization.uuid}/{job.uuid}.zip"
    assert _zip(job.result_key) == backed_up.latest
    zip_path = Path(settings.PACK_DIR) / job.result_key  # the local pack storage: plaintext, owner only
    assert oct(zip_path.stat().st_mode & 0o777) == "0o600"
    assert job.result_size == pack_storage().size(job.result_key) == zip_path.stat().st_size
    assert (job.files_done, job.bytes_done) == (job.files_total, job.bytes_total) == (
        len(backed_up.latest), sum(map(len, backed_up.latest.values())))
    assert job.expires_at == job.finished_at + timedelta(hours=24)
    with zipfile.ZipFile(io.BytesIO(pack_storage().read_all(job.result_key))) as archive:
        script = next(i for i in archive.infolist() if i.filename.endswith("scripts/run.sh"))
        assert script.external_attr >> 16 & 0o7777 == 0o755
        ut = script.extra.index(b"UT\x05\x00\x01")  # Info-ZIP extended timestamp: mtime in UTC seconds
        mtime = int.from_bytes(script.extra[ut + 5:ut + 9], "little", signed=True)
        assert mtime == int((backed_up.source / "scripts" / "run.sh").stat().st_mtime)
    assert not list(zip_path.parent.glob(".*.tmp")) and not list(restore_results_dir().rglob("*"))  # no scratch left
    assert job.result_key not in set(pack_storage().keys(""))  # neither the orphan sweep nor rebuild-index sees it


@pytest.mark.slow
def test_a_time_before_a_change_restores_the_old_content(backed_up, alice, queued):
    job = _run(alice, backed_up, queued, at=backed_up.first_time)
    assert _zip(job.result_key) == backed_up.first
    assert backed_up.first != backed_up.latest


@pytest.mark.slow
def test_only_the_chosen_folder_is_restored(backed_up, alice, queued):
    docs = backed_up.source / "docs"
    job = _run(alice, backed_up, queued, paths=[str(docs) + "/"])
    expected = {name: data for name, data in backed_up.latest.items()
                if name.startswith(os.fsencode(str(docs)).lstrip(b"/") + b"/")}
    assert len(expected) == 2
    assert _zip(job.result_key) == expected
    assert job.paths == [str(docs)]


@pytest.mark.slow
def test_one_audited_key_access_and_the_key_buffer_is_zeroed(backed_up, alice, queued):
    class WatchedBuffer(bytearray):
        """Records what is written into it, to prove the key passed through and was wiped."""

        def __setitem__(self, index, value):
            self.writes.append(bytes(value))
            super().__setitem__(index, value)

    buffer = WatchedBuffer(32)
    buffer.writes = []
    before = KeyAccess.objects.count()
    job = restore_job_request(actor=alice, archive=backed_up.archive)
    job = restore_job_run(job=restore_job_claim(job_id=job.pk), key_buffer=buffer)
    assert job.status == "done", job.error
    assert _zip(job.result_key) == backed_up.latest
    assert key_id_for(buffer.writes[0]) == UserKey.objects.get(user=alice).key_id  # the real key was in it
    assert bytes(buffer) == bytes(32)  # and is zeroed now
    accesses = list(KeyAccess.objects.filter(seq__gt=0).order_by("seq"))[before:]
    assert [(a.purpose, a.outcome, a.job, a.actor_id, a.subject_id) for a in accesses] == [
        ("web_restore", "started", str(job.uuid), alice.pk, alice.pk),
        ("web_restore", "succeeded", str(job.uuid), alice.pk, alice.pk)]


@pytest.mark.slow
def test_the_buffer_is_zeroed_when_the_restore_fails(backed_up, alice, queued):
    for pack in Pack.objects.filter(kind="blocks"):  # flip the last byte (a GCM tag) of every block pack
        path = Path(settings.PACK_DIR) / pack.storage_key
        data = bytearray(path.read_bytes())
        data[-1] ^= 1
        path.write_bytes(bytes(data))
    buffer = bytearray(32)
    job = restore_job_request(actor=alice, archive=backed_up.archive)
    job = restore_job_run(job=restore_job_claim(job_id=job.pk), key_buffer=buffer)
    assert job.status == "failed" and "verification" in job.error
    assert bytes(buffer) == bytes(32)
    assert not list((restore_results_dir()).rglob("*.zip")) and not list(restore_results_dir().rglob(".*.tmp"))
    assert not list(Path(settings.PACK_DIR).rglob("*.zip"))  # nothing stored either


@pytest.mark.slow
def test_the_archive_browser_lists_children_at_a_time(backed_up, alice, tmp_path):
    before = KeyAccess.objects.count()
    buffer = bytearray(32)
    entries = archive_browse(actor=alice, archive=backed_up.archive, prefix=str(backed_up.source), key_buffer=buffer)
    assert bytes(buffer) == bytes(32)
    names = [(e.name, e.is_dir) for e in entries]
    assert names == [("docs", True), ("new", True), ("scripts", True), ("big.bin", False),
                     (LATIN1, False), ("naïve café ☕.txt", False)]
    docs = next(e for e in entries if e.name == "docs")
    assert docs.size == len(b"REVISED REPORT " * 7000) + len(b"# notes\n" * 50)
    earlier = archive_browse(actor=alice, archive=backed_up.archive, at=backed_up.first_time,
                             prefix=str(backed_up.source))
    assert "empty.txt" in [e.name for e in earlier] and "new" not in [e.name for e in earlier]
    versions = archive_file_versions(actor=alice, archive=backed_up.archive,
                                     path=str(backed_up.source / "docs" / "report.txt"))
    assert [v.size for v in versions] == [len(b"QUARTERLY REPORT " * 6000), len(b"REVISED REPORT " * 7000)]
    accesses = list(KeyAccess.objects.order_by("seq"))[before:]
    assert [(a.purpose, a.outcome) for a in accesses] == [("web_restore", "started"), ("web_restore", "succeeded")] * 3
    assert all(a.job.startswith("browse-") for a in accesses) and len({a.job for a in accesses}) == 3


@pytest.mark.slow
def test_a_worker_on_the_keys_queue_runs_the_restore_and_its_process_exits(backed_up, alice, haven_env,  # noqa: F811
                                                                           data_dir):
    """The production shape: the task goes through Redis to a `-Q keys --max-tasks-per-child 1`
    worker, which writes the zip and then replaces the child process that held the key."""
    assert os.environ["CELERY_BROKER_URL"].startswith("redis://")
    worker = subprocess.Popen([str(VENV_BIN / "celery"), "-A", "config", "worker", "-Q", "keys", "--concurrency", "1",
                               "--max-tasks-per-child", "1", "--loglevel", "WARNING", "-n", f"keys-test-{os.getpid()}@%h"],
                              cwd=REPO, env=haven_env)
    try:
        children = wait_until(lambda: child_pids(worker.pid), timeout=60, what="the worker's child process")
        job = restore_job_request(actor=alice, archive=backed_up.archive,
                                  paths=[str(backed_up.source / "docs"), str(backed_up.source / "big.bin")])
        wait_until(lambda: RestoreJob.objects.filter(pk=job.pk, status__in=["done", "failed"]).exists(),
                   timeout=120, what="the worker to run the restore")
        job.refresh_from_db()
        assert job.status == "done", job.error
        expected = {n: d for n, d in backed_up.latest.items() if b"/docs/" in n or n.endswith(b"/big.bin")}
        assert _zip(Path(haven_env["HAVEN_PACK_DIR"]) / job.result_key) == expected  # on the worker's pack storage
        wait_until(lambda: child_pids(worker.pid) and not set(children) & set(child_pids(worker.pid)), timeout=30,
                   what="the child that ran the restore to exit")
        assert not any(Path(f"/proc/{pid}").exists() for pid in children)
    finally:
        stop_process(worker)


# --- who may restore, and bad input (no backup needed) -----------------------------------------

@pytest.fixture
def archives_of(db):
    from archives.services import device_enroll

    def _archive(user, name="laptop"):
        return device_enroll(user=user, device_name=name, os_name="Linux", agent_version="1")[1]

    return _archive


def test_who_may_ask_for_a_restore(alice, bob, mallory, org_a, archives_of, data_dir,
                                   django_capture_on_commit_callbacks):
    analyst = _user(org_a, "sam@a.example", Role.SECURITY_ANALYST)
    operator = _user(org_a, "olga@a.example", Role.RESTORE_OPERATOR)
    bobs, analysts, alices = archives_of(bob), archives_of(analyst, "analyst-laptop"), archives_of(alice)
    with django_capture_on_commit_callbacks() as enqueued:
        assert restore_job_request(actor=alice, archive=bobs).status == "queued"  # org admin
        assert restore_job_request(actor=operator, archive=bobs).requested_by == operator
        assert restore_job_request(actor=bob, archive=bobs).requested_by == bob  # one's own archive
        for actor, archive in ((analyst, bobs), (analyst, analysts), (mallory, bobs), (bob, alices)):
            with pytest.raises(Http404):
                restore_job_request(actor=actor, archive=archive)
            with pytest.raises(Http404):
                archive_browse(actor=actor, archive=archive)
    assert RestoreJob.objects.count() == 3 and len(enqueued) == 3
    assert not KeyAccess.objects.exists()  # refused before any key access


def test_a_job_and_its_zip_are_only_for_the_asker_and_admins(alice, bob, mallory, org_a, archives_of, queued,
                                                             data_dir):
    analyst = _user(org_a, "sam@a.example", Role.SECURITY_ANALYST)
    operator = _user(org_a, "olga@a.example", Role.RESTORE_OPERATOR)
    other_operator = _user(org_a, "otto@a.example", Role.RESTORE_OPERATOR)
    job = restore_job_request(actor=operator, archive=archives_of(bob))
    for outsider in (analyst, mallory, bob, other_operator):
        for job_id in (job.uuid, "00000000-0000-0000-0000-000000000000"):
            with pytest.raises(Http404) as refused:
                restore_job_for_user(outsider, job_id)
            assert str(refused.value) == "No such restore"  # the same answer as for a job that does not exist
        with pytest.raises(Http404):
            restore_job_for_user(outsider, "not-a-uuid")
    assert restore_job_for_user(operator, job.uuid) == restore_job_for_user(alice, job.uuid) == job
    with pytest.raises(RestoreResultUnavailable, match="queued"):
        restore_result_for_user(operator, job.uuid)
    pack_storage().put("restore-results/r.zip", [b"PK"])
    RestoreJob.objects.filter(pk=job.pk).update(status="done", result_key="restore-results/r.zip",
                                                expires_at=timezone.now() + timedelta(hours=1))
    with restore_result_for_user(alice, job.uuid)[1] as result:
        assert (result.key, result.read()) == ("restore-results/r.zip", b"PK")
    with pytest.raises(Http404):
        restore_result_for_user(mallory, job.uuid)
    RestoreJob.objects.filter(pk=job.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(RestoreResultUnavailable, match="expired"):
        restore_result_for_user(operator, job.uuid)


@pytest.mark.parametrize("request_args, message", [
    ({"paths": ["home/alice"]}, "not absolute"),
    ({"paths": ["/ok", "./rel"]}, "not absolute"),
    ({"paths": "/home/alice"}, "list of absolute paths"),
    ({"paths": [7]}, "list of absolute paths"),
    ({"at": "2026-01-31T12:00:00"}, "time zone"),
    ({"at": datetime(2026, 1, 31, 12, 0)}, "time zone"),
    ({"at": "yesterday"}, "ISO 8601"),
])
def test_bad_input_is_refused_clearly(alice, archives_of, request_args, message, django_capture_on_commit_callbacks):
    archive = archives_of(alice)
    with django_capture_on_commit_callbacks() as enqueued, pytest.raises(RestoreInvalid, match=message):
        restore_job_request(actor=alice, archive=archive, **request_args)
    assert not RestoreJob.objects.exists() and not enqueued


def test_an_archive_of_another_organization_is_not_found(alice, mallory, archives_of, queued):
    with pytest.raises(Http404):
        restore_job_request(actor=alice, archive=archives_of(mallory))
    assert not RestoreJob.objects.exists()


def test_a_future_time_is_the_time_of_the_request(alice, archives_of, queued):
    job = restore_job_request(actor=alice, archive=archives_of(alice), at=timezone.now() + timedelta(days=3))
    assert job.at <= timezone.now()


def test_a_job_runs_once_even_if_its_message_comes_twice(alice, archives_of, queued, monkeypatch):
    job = restore_job_request(actor=alice, archive=archives_of(alice))
    RestoreJob.objects.filter(pk=job.pk).update(status="running")
    assert restore_job_run_task(job.pk) == "skipped"
    assert not KeyAccess.objects.exists()


def test_a_requester_who_lost_the_role_gets_no_key(alice, bob, org_a, archives_of, queued, data_dir):
    operator = _user(org_a, "olga@a.example", Role.RESTORE_OPERATOR)
    job = restore_job_request(actor=operator, archive=archives_of(bob))
    type(operator).objects.filter(pk=operator.pk).update(role=Role.SECURITY_ANALYST)
    assert restore_job_run_task(job.pk) == "failed"
    assert not KeyAccess.objects.exists()


def test_expired_results_are_deleted_and_only_those(alice, archives_of, queued, data_dir):
    archive = archives_of(alice)
    now = timezone.now()
    storage = pack_storage()
    jobs = {}
    for name, expires in (("old", now - timedelta(minutes=1)), ("fresh", now + timedelta(hours=23))):
        storage.put(f"restore-results/{name}.zip", [b"zip"])
        jobs[name] = RestoreJob.objects.create(organization=archive.organization, archive=archive,
                                               requested_by=alice, at=now, status="done",
                                               result_key=f"restore-results/{name}.zip",
                                               finished_at=expires - timedelta(hours=24), expires_at=expires)
    stuck = RestoreJob.objects.create(organization=archive.organization, archive=archive, requested_by=alice, at=now,
                                      status="running")
    RestoreJob.objects.filter(pk=stuck.pk).update(started_at=now - timedelta(days=1))
    fresh_running = RestoreJob.objects.create(organization=archive.organization, archive=archive, requested_by=alice,
                                              at=now, status="running", started_at=now)
    assert restore_results_expire_task() == {"deleted": 1, "stale_failed": 1}
    assert not storage.exists("restore-results/old.zip")
    assert storage.read_all("restore-results/fresh.zip") == b"zip"
    jobs["old"].refresh_from_db()
    jobs["fresh"].refresh_from_db()
    assert jobs["old"].result_key == "" and jobs["fresh"].result_key == "restore-results/fresh.zip"
    assert RestoreJob.objects.get(pk=stuck.pk).status == "failed"
    assert RestoreJob.objects.get(pk=fresh_running.pk).status == "running"
    assert restore_results_expire_task() == {"deleted": 0, "stale_failed": 0}


def test_an_unreachable_keystore_requeues_the_job_then_fails_it_clearly(alice, archives_of, queued, settings,
                                                                        data_dir):
    from keystore.vault import KeystoreUnavailable, vault_client_reset
    from tests.support import free_port

    settings.VAULT_ADDR, settings.VAULT_TOKEN = f"http://127.0.0.1:{free_port()}", "nothing-listens-there"
    vault_client_reset()
    archive = archives_of(alice)
    UserKey.objects.create(organization=alice.organization, user=alice, key_id="0" * 32, state="escrowed")
    job = restore_job_request(actor=alice, archive=archive)
    buffer = bytearray(b"\xff" * 32)
    with pytest.raises(KeystoreUnavailable):
        restore_job_run(job=restore_job_claim(job_id=job.pk), key_buffer=buffer, retry=True)
    assert RestoreJob.objects.get(pk=job.pk).status == "queued"  # the task retries it later
    job = restore_job_run(job=restore_job_claim(job_id=job.pk), key_buffer=buffer, retry=False)
    assert job.status == "failed" and "keystore is unavailable" in job.error
    assert bytes(buffer) == bytes(32)
    assert [a.outcome for a in KeyAccess.objects.order_by("seq")] == ["started", "failed"] * 2
    vault_client_reset()

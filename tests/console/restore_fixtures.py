"""Fixtures shared by the restore and audit page tests: the named people of org A (and Mallory of
org B), a logged-in client for each, archives without backups, and a finished job with a zip."""
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Role
from archives.models import RestoreJob
from archives.restore_results import result_key_for
from archives.storage import pack_storage
from tests.conftest import PASSWORD, _user

__all__ = ["analyst", "archives_of", "browser_for", "data_dir", "finished_job", "operator", "queued",
           "second_admin"]


@pytest.fixture
def data_dir(settings, tmp_path):
    settings.DATA_DIR = tmp_path / "var"
    settings.PACK_DIR = tmp_path / "packs"  # the live server's HAVEN_PACK_DIR (tests/e2e/conftest.py)
    return settings.DATA_DIR


@pytest.fixture
def analyst(org_a):
    return _user(org_a, "sam@a.example", Role.SECURITY_ANALYST)


@pytest.fixture
def operator(org_a):
    return _user(org_a, "olga@a.example", Role.RESTORE_OPERATOR)


@pytest.fixture
def second_admin(org_a):
    return _user(org_a, "ada@a.example", Role.ORG_ADMIN)


@pytest.fixture
def browser_for():
    def _browser(user, **kwargs):
        client = Client(**kwargs)
        assert client.login(username=user.email, password=PASSWORD)
        return client

    return _browser


@pytest.fixture
def archives_of(db):
    from archives.services import device_enroll

    def _archive(user, name="laptop"):
        return device_enroll(user=user, device_name=name, os_name="Linux", agent_version="1")[1]

    return _archive


@pytest.fixture
def queued(monkeypatch):
    """Jobs handed to Celery (the task is not run unless a test runs it)."""
    from archives.tasks import restore_job_run_task

    sent = []
    monkeypatch.setattr(restore_job_run_task, "delay", lambda job_id: sent.append(job_id))
    return sent


@pytest.fixture
def finished_job(data_dir):
    """A done job whose zip exists, as restore_job_run leaves it (without needing a backup)."""
    def _job(*, archive, requested_by, content: bytes = b"PK\x05\x06" + bytes(18)) -> RestoreJob:
        now = timezone.now()
        job = RestoreJob.objects.create(organization=archive.organization, archive=archive, requested_by=requested_by,
                                        at=now, status=RestoreJob.Status.DONE, finished_at=now,
                                        expires_at=now + timedelta(hours=24), files_total=1, files_done=1)
        key = result_key_for(organization_uuid=archive.organization.uuid, job_uuid=job.uuid, suffix="zip")
        pack_storage().put(key, [content])
        RestoreJob.objects.filter(pk=job.pk).update(result_key=key, result_size=len(content))
        job.refresh_from_db()
        return job

    return _job

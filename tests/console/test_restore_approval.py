"""Optional per organization: a second administrator approves a restore of another user's files;
the user is emailed when someone else restores or downloads their data (issue 9 item 4)."""
import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent
from archives.models import RestoreApproval, RestoreJob
from archives.restore_approval import restore_approval_required, restore_approval_set
from archives.tasks import restore_job_run_task
from tests.console.restore_fixtures import *  # noqa: F403 - the shared fixtures


@pytest.fixture
def approval_on(org_a):
    restore_approval_set(organization=org_a, required=True, actor=None, actor_label="test")


def _ask(client, archive, capture):
    with capture(execute=True):
        response = client.post(reverse("console:restore-create", args=[archive.uuid]), {"paths": ["/home/bob"]})
    assert response.status_code == 302
    return RestoreJob.objects.latest("created_at")


def test_a_restore_of_another_users_files_waits_for_a_second_admin(
        approval_on, browser_for, operator, alice, bob, archives_of, queued, django_capture_on_commit_callbacks):
    job = _ask(browser_for(operator), archives_of(bob), django_capture_on_commit_callbacks)
    assert job.status == "awaiting_approval" and queued == [] and mail.outbox == []
    assert restore_job_run_task(job.pk) == "skipped"  # a stray message cannot run it
    page = browser_for(operator).get(reverse("console:restore-job", args=[job.uuid])).content.decode()
    assert "Awaiting approval" in page and "Approve</button>" not in page  # the asker cannot approve
    admin_page = browser_for(alice).get(reverse("console:restore-job", args=[job.uuid])).content.decode()
    assert "Approve</button>" in admin_page
    with django_capture_on_commit_callbacks(execute=True):
        response = browser_for(alice).post(reverse("console:restore-decide", args=[job.uuid, "approve"]))
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == "queued" and queued == [job.pk]
    assert RestoreApproval.objects.get(job=job).decided_by == alice
    assert AuditEvent.objects.filter(action="restore.approved", actor=alice, target_uuid=job.uuid).exists()
    assert [m.to for m in mail.outbox] == [[bob.email]] and operator.email in mail.outbox[0].body


def test_the_admin_who_asked_cannot_approve_their_own_restore(
        approval_on, browser_for, alice, second_admin, bob, archives_of, queued, django_capture_on_commit_callbacks):
    job = _ask(browser_for(alice), archives_of(bob), django_capture_on_commit_callbacks)
    response = browser_for(alice).post(reverse("console:restore-decide", args=[job.uuid, "approve"]))
    assert response.status_code == 403 and "Another administrator" in response.content.decode()
    assert RestoreJob.objects.get(pk=job.pk).status == "awaiting_approval" and queued == []
    with django_capture_on_commit_callbacks(execute=True):
        assert browser_for(second_admin).post(reverse("console:restore-decide", args=[job.uuid, "approve"])
                                              ).status_code == 302
    assert RestoreJob.objects.get(pk=job.pk).status == "queued" and queued == [job.pk]
    again = browser_for(second_admin).post(reverse("console:restore-decide", args=[job.uuid, "reject"]))
    assert again.status_code == 403 and "no longer waiting" in again.content.decode()


def test_a_rejected_restore_never_runs(approval_on, browser_for, operator, alice, bob, archives_of, queued,
                                       django_capture_on_commit_callbacks):
    job = _ask(browser_for(operator), archives_of(bob), django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        assert browser_for(alice).post(reverse("console:restore-decide", args=[job.uuid, "reject"])).status_code == 302
    job.refresh_from_db()
    assert job.status == "rejected" and alice.email in job.error and queued == [] and mail.outbox == []
    assert restore_job_run_task(job.pk) == "skipped"
    page = browser_for(operator).get(reverse("console:restore-job", args=[job.uuid]), headers={"HX-Request": "true"})
    assert "Rejected" in page.content.decode() and "hx-trigger" not in page.content.decode()


def test_others_cannot_decide(approval_on, browser_for, operator, bob, mallory, archives_of, queued,
                              django_capture_on_commit_callbacks):
    job = _ask(browser_for(operator), archives_of(bob), django_capture_on_commit_callbacks)
    assert browser_for(mallory).post(reverse("console:restore-decide", args=[job.uuid, "approve"])).status_code == 404
    assert browser_for(bob).post(reverse("console:restore-decide", args=[job.uuid, "approve"])).status_code == 404
    assert browser_for(operator).post(reverse("console:restore-decide", args=[job.uuid, "approve"])).status_code == 403
    assert RestoreJob.objects.get(pk=job.pk).status == "awaiting_approval" and not RestoreApproval.objects.exists()


def test_own_files_and_organizations_without_the_setting_need_no_approval(
        browser_for, alice, bob, archives_of, queued, django_capture_on_commit_callbacks, org_a):
    assert _ask(browser_for(alice), archives_of(bob), django_capture_on_commit_callbacks).status == "queued"
    restore_approval_set(organization=org_a, required=True, actor=alice)
    assert _ask(browser_for(bob), archives_of(bob, "desk"), django_capture_on_commit_callbacks).status == "queued"
    assert len(queued) == 2


def test_the_setting_in_the_console_is_for_admins_and_audited(browser_for, alice, operator, org_a):
    assert browser_for(operator).get(reverse("console:restore-settings")).status_code == 403
    assert browser_for(operator).post(reverse("console:restore-settings"), {"required": "on"}).status_code == 403
    assert not restore_approval_required(org_a.pk)
    client = browser_for(alice)
    assert client.get(reverse("console:restore-settings")).status_code == 200
    assert client.post(reverse("console:restore-settings"), {"required": "on"}).status_code == 302
    assert restore_approval_required(org_a.pk)
    assert client.post(reverse("console:restore-settings"), {}).status_code == 302
    assert not restore_approval_required(org_a.pk)
    assert list(AuditEvent.objects.filter(action="restore.approval_setting").order_by("id").values_list(
        "detail__required", flat=True)) == [True, False]


def test_the_restoreapproval_command(org_a, org_b, capsys):
    call_command("restoreapproval", "--org", "Org A", "on")
    assert restore_approval_required(org_a.pk) and not restore_approval_required(org_b.pk)
    assert "need a second administrator" in capsys.readouterr().out
    call_command("restoreapproval", "--org", "Org A")
    assert "need a second administrator" in capsys.readouterr().out
    call_command("restoreapproval", "--org", "Org A", "off")
    assert not restore_approval_required(org_a.pk) and "need no approval" in capsys.readouterr().out
    assert AuditEvent.objects.filter(action="restore.approval_setting", actor_label="manage.py restoreapproval"
                                     ).count() == 2
    with pytest.raises(CommandError, match="no organization"):
        call_command("restoreapproval", "--org", "Nobody", "on")


def test_the_database_refuses_an_unknown_status(alice, archives_of):
    archive = archives_of(alice)
    with pytest.raises(IntegrityError), transaction.atomic():
        RestoreJob.objects.create(organization=archive.organization, archive=archive, requested_by=alice,
                                  at=timezone.now(), status="approved")

"""A second administrator approves a restore of another user's files (optional per organization),
and the user whose data it is hears about it (issue 9 item 4: "the user is emailed when an
administrator restores or downloads their data", rows Code42 keeps for legal).

A job that needs approval is created `awaiting_approval`; the task is enqueued only when another
`org_admin` approves it (restore_job_claim only ever claims `queued` jobs, so a message sent by
mistake would find nothing to run). A rejection ends the job.
"""
import logging
from collections.abc import Callable

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.http import Http404
from django.utils import timezone

from accounts.models import Organization, Role, User
from accounts.services import audit_record
from archives.models import RestoreApproval, RestoreApprovalSetting, RestoreJob

logger = logging.getLogger(__name__)


class ApprovalRefused(Exception):
    """The job is not waiting for approval, or this person may not decide on it; the message says why."""


def restore_approval_required(organization_id) -> bool:
    return RestoreApprovalSetting.objects.filter(organization_id=organization_id, required=True).exists()


def restore_needs_approval(*, actor: User, archive) -> bool:
    """Someone else's files, in an organization that asks for a second administrator."""
    return archive.user_id != actor.pk and restore_approval_required(archive.organization_id)


@transaction.atomic
def restore_approval_set(*, organization: Organization, required: bool, actor: User | None,
                         actor_label: str | None = None) -> RestoreApprovalSetting:
    setting, _ = RestoreApprovalSetting.objects.select_for_update().get_or_create(organization=organization)
    if setting.required != required:
        setting.required = required
        setting.save(update_fields=["required", "updated_at"])
        audit_record(organization=organization, actor=actor, actor_label=actor_label,
                     action="restore.approval_setting", target_type="organization", target_uuid=organization.uuid,
                     detail={"required": required})
    return setting


def restore_may_decide(*, actor: User, job: RestoreJob) -> bool:
    """Another administrator of the job's organization: never the person who asked."""
    return (actor.is_active and actor.role == Role.ORG_ADMIN and actor.organization_id == job.organization_id
            and actor.pk != job.requested_by_id)


@transaction.atomic
def restore_job_decide(*, actor: User, job: RestoreJob, approve: bool) -> RestoreJob:
    if actor.organization_id != job.organization_id:
        raise Http404("No such restore")
    if not restore_may_decide(actor=actor, job=job):
        raise ApprovalRefused("Another administrator of the organization must decide on this restore.")
    decided = RestoreJob.objects.filter(pk=job.pk, status=RestoreJob.Status.AWAITING_APPROVAL).update(
        status=RestoreJob.Status.QUEUED if approve else RestoreJob.Status.REJECTED)
    if decided != 1:  # someone else decided first
        raise ApprovalRefused("This restore is no longer waiting for approval.")
    decision = RestoreApproval.Decision.APPROVED if approve else RestoreApproval.Decision.REJECTED
    RestoreApproval.objects.create(job=job, decided_by=actor, decision=decision)
    job.refresh_from_db()
    if not approve:
        job.error, job.finished_at = f"rejected by {actor.email}", timezone.now()
        job.save(update_fields=["error", "finished_at"])
    audit_record(organization=job.organization, actor=actor, action=f"restore.{decision}", target_type="restore_job",
                 target_uuid=job.uuid, detail={"archive": str(job.archive.uuid), "requested_by": job.requested_by.email})
    if approve:
        from archives.tasks import restore_job_run_task  # the task module imports archives.restores

        if job.kind == RestoreJob.Kind.WEB:  # a push restore waits for its target agent instead
            transaction.on_commit(lambda: restore_job_run_task.delay(job.pk))
        restore_owner_notify(job=job, actor=job.requested_by, what="restore")
    return job


def restore_owner_notify(*, job: RestoreJob, actor: User, what: str) -> None:
    """Email the archive's user when someone else restores ("restore") or downloads ("download")
    their data, after the transaction commits; a mail failure never fails the restore."""
    notice = restore_owner_notice(job=job, actor=actor, what=what)
    if notice is not None:
        transaction.on_commit(notice)


def restore_owner_notice(*, job: RestoreJob, actor: User, what: str) -> Callable[[], None] | None:
    """The email to send (a callable), or None when the user acts on their own data."""
    owner = job.archive.user
    if owner.pk == actor.pk or not owner.email:
        return None
    verb = "restored files from" if what == "restore" else "downloaded the files restored from"
    subject = f"Haven: an administrator {verb} your backup"
    body = (f"{actor.email} {verb} the backup of your device \"{job.archive.device.name}\" "
            f"(point in time {job.at:%Y-%m-%d %H:%M} UTC, restore {job.uuid}).\n\n"
            "This message is sent whenever an administrator restores or downloads your data. "
            "If you did not expect it, contact your IT security team.\n")

    def send() -> None:
        try:
            send_mail(subject=subject, message=body, from_email=settings.DEFAULT_FROM_EMAIL,
                      recipient_list=[owner.email])
        except Exception:  # noqa: BLE001 - the notice is best-effort; the audit log has the row
            logger.exception("could not email %s about restore %s", owner.email, job.uuid)

    return send

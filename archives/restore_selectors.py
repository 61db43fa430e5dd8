"""Reads of restore jobs and their results, scoped like everything else: a job and its zip are
visible to the person who asked for it and to the administrators of its organization; anyone
else gets the same 404 as for a job that does not exist."""

from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from accounts.models import Role, User
from accounts.selectors import parse_uuid_or_404
from archives.models import RestoreJob
from archives.restore_results import StoredResult, result_open


class RestoreResultUnavailable(Exception):
    """The job is visible but has no zip to serve (not finished, failed, expired or deleted)."""


def restore_jobs_visible_to(actor: User) -> QuerySet[RestoreJob]:
    if not actor.is_active:
        return RestoreJob.objects.none()
    jobs = RestoreJob.objects.filter(organization_id=actor.organization_id).select_related(
        "archive__device", "archive__user", "requested_by", "push__target_device__owner")
    if actor.role == Role.ORG_ADMIN:
        return jobs
    return jobs.filter(requested_by=actor)


def restore_job_for_user(actor: User, job_uuid) -> RestoreJob:
    found = restore_jobs_visible_to(actor).filter(uuid=parse_uuid_or_404(job_uuid)).first()
    if found is None:
        raise Http404("No such restore")
    return found


def restore_result_for_user(actor: User, job_uuid) -> tuple[RestoreJob, StoredResult]:
    """The zip of a finished job, for someone allowed to have it, until it expires."""
    job = restore_job_for_user(actor, job_uuid)
    if job.status != RestoreJob.Status.DONE:
        raise RestoreResultUnavailable(f"the restore is {job.get_status_display().lower()}")
    if not job.result_key or job.expires_at is None or job.expires_at <= timezone.now():
        raise RestoreResultUnavailable("the download has expired; ask for the restore again")
    try:
        return job, result_open(job.result_key)  # on the pack storage, whichever process wrote it
    except FileNotFoundError:
        raise RestoreResultUnavailable("the download has been deleted; ask for the restore again") from None

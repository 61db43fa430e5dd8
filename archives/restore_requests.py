"""Restores asked for through the public API (DESIGN §12) by an API client, not a person.

The job is the same web restore as the console's (archives/restores.py runs it unchanged); what
differs is who asked. `RestoreJob.requested_by` is the person the client acts for — the
administrator who created it, checked again when the task runs — and the client is linked to the
job (ApiClientRestore), so the job and its zip are visible to that client's key and no other key.
The audit rows name the client (actor_label), the key-access rows the person it acts for.
"""
from datetime import datetime

from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from accounts.models import ApiClient, ApiClientRestore
from accounts.selectors import parse_uuid_or_404
from accounts.services import audit_record
from archives.models import Archive, RestoreJob
from archives.restore_results import StoredResult, result_open
from archives.restore_selectors import RestoreResultUnavailable
from archives.restores import restore_job_request


class RestoreNotAllowed(Exception):
    """The client may not restore this archive (its creator lost the right, or there is none)."""


def archive_for_client(client: ApiClient, archive_uuid) -> Archive:
    """An archive of the client's organization; any other is the same 404 as an absent one."""
    found = (Archive.objects.filter(organization_id=client.organization_id, uuid=parse_uuid_or_404(archive_uuid))
             .select_related("user", "organization").first())
    if found is None:
        raise Http404("No such archive")
    return found


@transaction.atomic
def restore_request_by_client(*, client: ApiClient, archive: Archive, at: datetime | str | None = None,
                              paths: list[str] | None = None) -> RestoreJob:
    """Queue a web restore for an API client (RestoreInvalid for a bad time or paths)."""
    if archive.organization_id != client.organization_id:
        raise Http404("No such archive")
    actor = client.created_by
    if actor is None:
        raise RestoreNotAllowed("this API client has no administrator to act for; create one in the console")
    try:
        job = restore_job_request(actor=actor, archive=archive, at=at, paths=paths)
    except Http404:
        raise RestoreNotAllowed(f"{actor.email}, who created this API client, may no longer restore this archive") \
            from None
    ApiClientRestore.objects.create(client=client, job=job)
    audit_record(organization=client.organization, actor=None, actor_label=client.label, action="api.restore.request",
                 target_type="restore_job", target_uuid=job.uuid,
                 detail={"archive": str(archive.uuid), "user": str(archive.user.uuid), "api_client": str(client.uuid),
                         "on_behalf_of": actor.email, "at": job.at.isoformat(), "paths": len(job.paths)})
    return job


def restore_jobs_of_client(client: ApiClient) -> QuerySet[RestoreJob]:
    return RestoreJob.objects.filter(organization_id=client.organization_id, api_request__client=client)


def restore_job_for_client(client: ApiClient, job_uuid) -> RestoreJob:
    """A job this client asked for; another client's, a person's or another org's is a 404."""
    found = restore_jobs_of_client(client).filter(uuid=parse_uuid_or_404(job_uuid)).select_related(
        "archive", "organization").first()
    if found is None:
        raise Http404("No such restore")
    return found


def restore_result_available(job: RestoreJob) -> bool:
    return (job.status == RestoreJob.Status.DONE and bool(job.result_key) and job.expires_at is not None
            and job.expires_at > timezone.now())


def restore_result_for_client(client: ApiClient, job_uuid) -> tuple[RestoreJob, StoredResult]:
    """The zip of a finished job for the client that asked, under the console's expiry rules
    (archives/restore_selectors.py: done, not expired, still on disk)."""
    job = restore_job_for_client(client, job_uuid)
    if job.status != RestoreJob.Status.DONE:
        raise RestoreResultUnavailable(f"the restore is {job.get_status_display().lower()}")
    if not restore_result_available(job):
        raise RestoreResultUnavailable("the download has expired; ask for the restore again")
    try:
        return job, result_open(job.result_key)  # on the pack storage, whichever process wrote it
    except FileNotFoundError:
        raise RestoreResultUnavailable("the download has been deleted; ask for the restore again") from None


def restore_result_downloaded_by_client(*, client: ApiClient, job: RestoreJob) -> None:
    audit_record(organization=job.organization, actor=None, actor_label=client.label, action="restore.download",
                 target_type="restore_job", target_uuid=job.uuid,
                 detail={"archive": str(job.archive.uuid), "size": job.result_size, "api_client": str(client.uuid)})


@transaction.atomic
def push_request_by_client(*, client: ApiClient, archive: Archive, target_device_uuid, target_path: str,
                           at: datetime | str | None = None, paths: list[str] | None = None) -> RestoreJob:
    """A push restore for an API client, on behalf of its creator, as in the console
    (archives/push_restores.py); the target is an authorized device of the client's organization."""
    from archives.push_restores import push_restore_request, push_target_for

    if archive.organization_id != client.organization_id:
        raise Http404("No such archive")
    actor = client.created_by
    if actor is None:
        raise RestoreNotAllowed("this API client has no administrator to act for; create one in the console")
    target = push_target_for(actor, target_device_uuid)
    try:
        job = push_restore_request(actor=actor, archive=archive, target_device=target, target_path=target_path,
                                   at=at, paths=paths)
    except Http404:
        raise RestoreNotAllowed(f"{actor.email}, who created this API client, may no longer restore this archive") \
            from None
    ApiClientRestore.objects.create(client=client, job=job)
    audit_record(organization=client.organization, actor=None, actor_label=client.label,
                 action="api.restore.push_request", target_type="restore_job", target_uuid=job.uuid,
                 detail={"archive": str(archive.uuid), "api_client": str(client.uuid), "on_behalf_of": actor.email,
                         "target_device": str(target.uuid), "target_path": job.push.target_path})
    return job

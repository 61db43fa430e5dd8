"""Push restores (DESIGN §6): an authorized person sends files of an archive to a device of the
organization; the target agent picks the job up in `run` mode, restores into a folder, reports
progress and the result.

- Same user on the target: the agent reads the archive with its own key (a device reads every
  archive of its own user, docs/protocol.md); the server never touches a key.
- Another user's archive: the agent accepts with a one-time X25519 public key; a task on the
  `keys` queue fetches the source user's key once (audited, purpose push_restore), decrypts and
  re-encrypts the selection to that key (docs/formats.md §10, archives/push_stream_build.py); the
  agent downloads the stream.

Who may ask is the web restore's rule (archives/restores.py) and the same second-administrator
approval applies. A job is `queued` until its agent accepts it, `running` until the agent reports
the end. The target device is the only caller that sees a job through the agent API: any other
device gets the same 404 as for a job that does not exist.
"""
from datetime import datetime

from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from accounts.models import Device, User
from accounts.selectors import devices_visible_to, parse_uuid_or_404
from accounts.services import audit_record
from archives.models import Archive, PushRestore, RestoreJob
from archives.restore_approval import restore_needs_approval, restore_owner_notice
from archives.restore_results import result_delete, result_open
from archives.restores import (
    MAX_PATH_LENGTH,
    RestoreInvalid,
    restore_access_check,
    restore_paths_parse,
    restore_time_parse,
)
from formats.push_stream import PUBLIC_KEY_SIZE
from formats.reassembly import path_prefix_normalize

COMMAND_PUSH_RESTORE = "push_restore"
_OPEN = (RestoreJob.Status.QUEUED, RestoreJob.Status.RUNNING)


class PushRefused(Exception):
    """The job is not in a state for this step (accepted already, not ready, finished)."""

    def __init__(self, message: str, code: str = "push_conflict"):
        super().__init__(message)
        self.code = code


def push_target_parse(value) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_PATH_LENGTH:
        raise RestoreInvalid("target_path: give the absolute folder on the target device")
    try:
        return path_prefix_normalize(value)
    except ValueError:
        raise RestoreInvalid(f"target_path: {value[:200]!r} is not absolute (start it with /)") from None


def push_target_for(actor: User, device_uuid) -> Device:
    """A device the actor may see (same organization), still authorized; 404 otherwise."""
    device = devices_visible_to(actor).filter(uuid=parse_uuid_or_404(device_uuid, "device"), authorized=True).first()
    if device is None:
        raise Http404("No such device")
    return device


@transaction.atomic
def push_restore_request(*, actor: User, archive: Archive, target_device: Device, target_path: str,
                         at: datetime | str | None = None, paths: list[str] | None = None) -> RestoreJob:
    """Create the job; the target agent hears of it at its next status report."""
    restore_access_check(actor=actor, archive=archive)
    if target_device.organization_id != archive.organization_id or not target_device.authorized \
            or not devices_visible_to(actor).filter(pk=target_device.pk).exists():
        raise Http404("No such device")
    target = push_target_parse(target_path)
    waits = restore_needs_approval(actor=actor, archive=archive)
    job = RestoreJob(organization_id=archive.organization_id, archive=archive, requested_by=actor,
                     kind=RestoreJob.Kind.PUSH, at=restore_time_parse(at), paths=restore_paths_parse(paths),
                     status=RestoreJob.Status.AWAITING_APPROVAL if waits else RestoreJob.Status.QUEUED)
    job.full_clean()
    job.save()
    own = target_device.owner_id == archive.user_id
    push = PushRestore(job=job, target_device=target_device, target_path=target,
                       mode=PushRestore.Mode.OWN_KEY if own else PushRestore.Mode.STREAM,
                       stream=PushRestore.Stream.NONE if own else PushRestore.Stream.PENDING)
    push.full_clean()
    push.save()
    audit_record(organization=archive.organization, actor=actor, action="restore.push_request",
                 target_type="restore_job", target_uuid=job.uuid,
                 detail={"archive": str(archive.uuid), "user": str(archive.user.uuid), "at": job.at.isoformat(),
                         "paths": len(job.paths), "target_device": str(target_device.uuid), "target_path": target,
                         "mode": push.mode, "awaiting_approval": waits})
    if not waits:
        notice = restore_owner_notice(job=job, actor=actor, what="restore")
        if notice is not None:
            transaction.on_commit(notice)
    return job


# --- the target device's side -----------------------------------------------------------------

def push_jobs_for_device(device: Device) -> QuerySet[RestoreJob]:
    """The device's open push jobs, oldest first (what it must still run or finish)."""
    return RestoreJob.objects.filter(kind=RestoreJob.Kind.PUSH, push__target_device=device,
                                     status__in=_OPEN).select_related("push", "archive").order_by("created_at")


def push_job_for_device(device: Device, job_uuid) -> RestoreJob:
    """Any push job targeted at this device (open or not); 404 for every other job."""
    found = RestoreJob.objects.filter(kind=RestoreJob.Kind.PUSH, push__target_device=device,
                                      uuid=parse_uuid_or_404(job_uuid, "restore")).select_related(
        "push", "archive", "organization").first()
    if found is None:
        raise Http404("No such restore")
    return found


def push_commands_for_device(device: Device) -> list[str]:
    """Jobs waiting for the device to accept them: named in every status report until it does
    (accepting is a claim, so hearing of a job twice cannot run it twice)."""
    return [str(u) for u in push_jobs_for_device(device).filter(status=RestoreJob.Status.QUEUED)
            .values_list("uuid", flat=True)]


@transaction.atomic
def push_restore_accept(*, device: Device, job: RestoreJob, public_key: bytes | None) -> RestoreJob:
    """queued → running, once. A stream job needs the agent's one-time public key and starts the
    server's re-encryption job; an own-key job must not send one."""
    from archives.tasks import push_stream_build_task  # the task module imports this one

    push = job.push
    if push.mode == PushRestore.Mode.STREAM:
        if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
            raise RestoreInvalid("public_key: this job needs the agent's one-time X25519 public key (32 bytes)")
    elif public_key is not None:
        raise RestoreInvalid("public_key: this job is restored with the device's own key; send none")
    now = timezone.now()
    claimed = RestoreJob.objects.filter(pk=job.pk, status=RestoreJob.Status.QUEUED).update(
        status=RestoreJob.Status.RUNNING, started_at=now)
    if claimed != 1:
        raise PushRefused("this restore was already accepted, or is not waiting for the device")
    push.accepted_at, push.agent_public_key = now, public_key
    push.save(update_fields=["accepted_at", "agent_public_key"])
    audit_record(organization=job.organization, actor=None, actor_label=f"device {device.uuid}",
                 action="restore.push_accept", target_type="restore_job", target_uuid=job.uuid,
                 detail={"mode": push.mode})
    if push.mode == PushRestore.Mode.STREAM:
        transaction.on_commit(lambda: push_stream_build_task.delay(job.pk))
    job.refresh_from_db()
    return job


def push_stream_file(*, job: RestoreJob):
    """The stream, open for reading, once the server's job wrote it; PushRefused before (or after),
    FileNotFoundError if it was deleted meanwhile."""
    if job.push.mode != PushRestore.Mode.STREAM:
        raise PushRefused("this restore has no stream: read the archive with the device's key", "no_stream")
    if job.status != RestoreJob.Status.RUNNING or job.push.stream != PushRestore.Stream.READY or not job.result_key:
        raise PushRefused(f"the stream is not ready ({job.push.get_stream_display().lower()})", "stream_not_ready")
    return result_open(job.result_key)


def push_restore_progress(*, job: RestoreJob, files_done: int, bytes_done: int, files_total: int | None = None,
                          bytes_total: int | None = None) -> RestoreJob:
    if job.status != RestoreJob.Status.RUNNING:
        raise PushRefused(f"the restore is {job.get_status_display().lower()}")
    fields = {"files_done": files_done, "bytes_done": bytes_done}
    if files_total is not None:
        fields["files_total"] = files_total
    if bytes_total is not None:
        fields["bytes_total"] = bytes_total
    RestoreJob.objects.filter(pk=job.pk, status=RestoreJob.Status.RUNNING).update(**fields)
    PushRestore.objects.filter(pk=job.push.pk).update(progress_at=timezone.now())
    job.refresh_from_db()
    return job


@transaction.atomic
def push_restore_finish(*, device: Device, job: RestoreJob, ok: bool, error: str = "", files_done: int = 0,
                        bytes_done: int = 0) -> RestoreJob:
    """running → done or failed, as the agent reports; the stream (if any) is deleted."""
    status = RestoreJob.Status.DONE if ok else RestoreJob.Status.FAILED
    finished = timezone.now()
    ended = RestoreJob.objects.filter(pk=job.pk, status=RestoreJob.Status.RUNNING).update(
        status=status, finished_at=finished, files_done=files_done, bytes_done=bytes_done,
        error="" if ok else (error or "the device reported a failure")[:500])
    if ended != 1:
        raise PushRefused(f"the restore is {job.get_status_display().lower()}, not running")
    push_stream_discard(job=job)
    audit_record(organization=job.organization, actor=None, actor_label=f"device {device.uuid}",
                 action="restore.push_done" if ok else "restore.push_failed", target_type="restore_job",
                 target_uuid=job.uuid, detail={"files": files_done, "bytes": bytes_done, "error": error[:200]})
    job.refresh_from_db()
    return job


def push_stream_discard(*, job: RestoreJob) -> None:
    """Delete the stream: it is of no use once the job ended."""
    if job.result_key:
        result_delete(job.result_key)
        RestoreJob.objects.filter(pk=job.pk).update(result_key="")
    if job.push.stream != PushRestore.Stream.NONE:
        PushRestore.objects.filter(pk=job.push.pk).update(stream=PushRestore.Stream.GONE)

"""Web restores (DESIGN §6): an authorized person asks for an archive, a point in time and paths; a
task on the one-task-per-child `keys` queue fetches the user's key (one audited access), decrypts
manifests and blocks through formats/ (the agent's own code), writes a zip, and zeroes the key.

Who may restore an archive: its organization's `org_admin` and `restore_operator`, and the
archive's own user — never a `security_analyst` (no restores, no file names). Anyone else gets
the same "not found" as for an archive that does not exist.
"""
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.db import transaction
from django.http import Http404
from django.utils import timezone

from accounts.models import Role, User
from accounts.services import audit_record
from archives.models import Archive, RestoreJob
from archives.restore_approval import restore_needs_approval, restore_owner_notice, restore_owner_notify
from archives.restore_results import restore_scratch_dir, result_delete, result_key_for, result_spool
from archives.restore_zip import zip_entry_write, zip_writer
from archives.selectors import blocks_read, manifests_read, versions_at_pages, versions_of_path
from formats.errors import FormatError
from formats.keys import KeySet, derive_keys
from formats.manifests import Manifest, manifest_decrypt, path_id_for
from formats.reassembly import FETCH_BYTES, file_write, path_prefix_normalize, path_within, restore_selection
from keystore.models import KeyAccess
from keystore.services import key_retrieve
from keystore.vault import KeystoreUnavailable

logger = logging.getLogger(__name__)

RESULT_LIFETIME = timedelta(hours=24)
MAX_PATHS = 1000
MAX_PATH_LENGTH = 4096
RESTORE_SOFT_TIME_LIMIT = 6 * 3600
RESTORE_TIME_LIMIT = RESTORE_SOFT_TIME_LIMIT + 300
_PROGRESS_EVERY = 2.0  # seconds between progress writes


class RestoreInvalid(ValueError):
    """The request is malformed (paths, time); the message says what to send instead."""


def restore_results_dir() -> Path:
    """The key worker's scratch folder; finished results live on the pack storage (archives/restore_results.py)."""
    return restore_scratch_dir()


def _may_restore(actor: User, archive: Archive) -> bool:
    if not actor.is_active or actor.organization_id != archive.organization_id:
        return False
    if actor.role in (Role.ORG_ADMIN, Role.RESTORE_OPERATOR):
        return True
    return actor.role != Role.SECURITY_ANALYST and archive.user_id == actor.pk


def restore_access_check(*, actor: User, archive: Archive) -> None:
    """Http404 unless `actor` may restore (or browse the names in) `archive`."""
    if not _may_restore(actor, archive):
        raise Http404("No such archive")


def restore_time_parse(value: datetime | str | None) -> datetime:
    """A point in time with a zone (server time); none means now, a future one is now."""
    now = timezone.now()
    if value is None or value == "":
        return now
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise RestoreInvalid(f"at: {value!r} is not an ISO 8601 time, e.g. 2026-01-31T12:00:00+00:00") from None
    if not isinstance(value, datetime):
        raise RestoreInvalid("at: give an ISO 8601 time with a zone")
    if timezone.is_naive(value):
        raise RestoreInvalid("at: give a time zone, e.g. 2026-01-31T12:00:00+00:00")
    # Fixing a future time to the request's moment keeps the job's content independent of when it runs.
    return min(value, now)


def restore_paths_parse(paths) -> list[str]:
    """Absolute path prefixes, normalized and deduplicated; empty means everything."""
    if paths is None:
        return []
    if not isinstance(paths, (list, tuple)) or not all(isinstance(p, str) for p in paths):
        raise RestoreInvalid("paths: give a list of absolute paths")
    if len(paths) > MAX_PATHS:
        raise RestoreInvalid(f"paths: at most {MAX_PATHS}")
    normalized = []
    for path in paths:
        if len(path) > MAX_PATH_LENGTH:
            raise RestoreInvalid(f"paths: a path is longer than {MAX_PATH_LENGTH} characters")
        try:
            normalized.append(path_prefix_normalize(path))
        except ValueError:
            raise RestoreInvalid(f"paths: {path[:200]!r} is not absolute (start it with /)") from None
    return list(dict.fromkeys(normalized))


# --- requesting and claiming ------------------------------------------------------------------

@transaction.atomic
def restore_job_request(*, actor: User, archive: Archive, at: datetime | str | None = None,
                        paths: list[str] | None = None) -> RestoreJob:
    """Queue a web restore; the task starts once this transaction commits."""
    from archives.tasks import restore_job_run_task  # the task module imports this one

    restore_access_check(actor=actor, archive=archive)
    waits = restore_needs_approval(actor=actor, archive=archive)
    job = RestoreJob(organization_id=archive.organization_id, archive=archive, requested_by=actor,
                     kind=RestoreJob.Kind.WEB, at=restore_time_parse(at), paths=restore_paths_parse(paths),
                     status=RestoreJob.Status.AWAITING_APPROVAL if waits else RestoreJob.Status.QUEUED)
    job.full_clean()
    job.save()
    audit_record(organization=archive.organization, actor=actor, action="restore.request", target_type="restore_job",
                 target_uuid=job.uuid, detail={"archive": str(archive.uuid), "user": str(archive.user.uuid),
                                               "at": job.at.isoformat(), "paths": len(job.paths),
                                               "awaiting_approval": waits})
    if not waits:  # otherwise restore_job_decide enqueues it and tells the user
        notice = restore_owner_notice(job=job, actor=actor, what="restore")

        def enqueue() -> None:
            restore_job_run_task.delay(job.pk)
            if notice is not None:
                notice()

        transaction.on_commit(enqueue)
    return job


def restore_job_claim(*, job_id: int) -> RestoreJob | None:
    """queued → running, at most once: a redelivered or duplicated message finds nothing to do."""
    claimed = RestoreJob.objects.filter(pk=job_id, kind=RestoreJob.Kind.WEB, status=RestoreJob.Status.QUEUED).update(
        status=RestoreJob.Status.RUNNING, started_at=timezone.now())
    if claimed != 1:
        return None
    return RestoreJob.objects.select_related("organization", "archive__user__organization",
                                             "requested_by").get(pk=job_id)


# --- reading an archive with its key ----------------------------------------------------------

def _key_into(buffer: bytearray, *, archive: Archive, actor: User, job: str,
              purpose: str = KeyAccess.Purpose.WEB_RESTORE, label: str = "web restore") -> KeySet:
    """One audited key access (purpose web_restore, or push_restore); the key is copied into `buffer`, which the
    caller zeroes. Python cannot zero the immutable copies made on the way (the keystore's answer,
    the sub-keys); they die with the `keys` worker process (--max-tasks-per-child=1)."""
    if len(buffer) != 32:
        raise ValueError("the key buffer must be a bytearray of 32 bytes")
    key = key_retrieve(user=archive.user, purpose=purpose, actor=actor, actor_label=f"{actor.email} ({label})",
                       job=job)
    buffer[:] = key
    del key
    return derive_keys(buffer)


def _zero(buffer: bytearray) -> None:
    buffer[:] = bytes(len(buffer))


def manifests_at(archive: Archive, keys: KeySet, at: datetime) -> Iterator[Manifest]:
    """Every path's newest manifest at `at`, decrypted and verified, a page at a time."""
    for versions in versions_at_pages(archive, at=at):
        blobs = manifests_read(versions)
        for version in versions:
            yield manifest_decrypt(keys, blobs[version.pk], archive_id=archive.uuid, path_id=version.path_id,
                                   version_id=version.uuid)


def _fetcher(archive: Archive) -> Callable[[list[bytes]], list[bytes]]:
    def fetch(block_ids: list[bytes]) -> list[bytes]:
        return blocks_read(archive, block_ids, max_bytes=2 * FETCH_BYTES + 64 * 1024 * 1024)
    return fetch


# --- running a job ----------------------------------------------------------------------------

def restore_job_run(*, job: RestoreJob, key_buffer: bytearray | None = None, retry: bool = False) -> RestoreJob:
    """Run a claimed job to `done` or `failed`. The key lives in `key_buffer` (a fresh one if none
    is given) and the buffer is zeroed whatever happens; passing one lets a test check that.

    With `retry`, an unavailable keystore puts the job back in the queue and re-raises, so the
    task can try again later; without, the job fails with a message saying so.
    """
    buffer = key_buffer if key_buffer is not None else bytearray(32)
    keys = None
    key = result_key_for(organization_uuid=job.organization.uuid, job_uuid=job.uuid, suffix="zip")
    try:
        if not _may_restore(job.requested_by, job.archive):  # the role may have changed since the request
            _failed(job, "the person who asked may no longer restore this archive")
            return job
        keys = _key_into(buffer, archive=job.archive, actor=job.requested_by, job=str(job.uuid))
        chosen = restore_selection(manifests_at(job.archive, keys, job.at), job.paths)
        job.files_total, job.bytes_total = len(chosen), sum(m.size for m in chosen)
        job.save(update_fields=["files_total", "bytes_total"])
        fetch, progress = _fetcher(job.archive), _Progress(job)
        with result_spool(key) as spool:  # written here, then put once on the pack storage
            with zip_writer(spool) as archive:
                for manifest in chosen:
                    written = zip_entry_write(archive, manifest, lambda write, manifest=manifest: file_write(
                        keys, manifest, fetch=fetch, write=write, archive_id=job.archive.uuid))
                    progress.file_done(written)
            size = spool.stat().st_size
        finished = timezone.now()
        job.status, job.finished_at, job.expires_at = RestoreJob.Status.DONE, finished, finished + RESULT_LIFETIME
        job.files_done, job.bytes_done = progress.files, progress.bytes
        job.result_key, job.result_size = key, size
        job.save(update_fields=["status", "finished_at", "expires_at", "files_done", "bytes_done", "result_key",
                                "result_size"])
    except KeystoreUnavailable as error:
        if retry:
            RestoreJob.objects.filter(pk=job.pk).update(status=RestoreJob.Status.QUEUED, started_at=None)
            raise
        _failed(job, f"the keystore is unavailable ({error.reason}); ask for the restore again later")
    except FormatError as error:  # IntegrityError, ReassemblyError: damaged or tampered data
        _failed(job, f"the archive failed verification: {error}")
    except Exception as error:  # noqa: BLE001 - the job must end failed, with a reason, not stay running
        logger.exception("restore job %s failed", job.uuid)
        _failed(job, f"{type(error).__name__}: {error}")
    finally:
        _zero(buffer)
        keys = None  # noqa: F841 - drop the sub-keys with the buffer
    return job


class _Progress:
    def __init__(self, job: RestoreJob):
        self.job, self.files, self.bytes = job, 0, 0
        self._written_at = 0.0

    def file_done(self, nbytes: int) -> None:
        self.files += 1
        self.bytes += nbytes
        if time.monotonic() - self._written_at >= _PROGRESS_EVERY:
            RestoreJob.objects.filter(pk=self.job.pk).update(files_done=self.files, bytes_done=self.bytes)
            self._written_at = time.monotonic()


def _failed(job: RestoreJob, message: str) -> None:
    job.status, job.error, job.finished_at = RestoreJob.Status.FAILED, message[:500], timezone.now()
    job.save(update_fields=["status", "error", "finished_at"])


def restore_result_downloaded(*, actor: User, job: RestoreJob) -> None:
    """Audit a download of a restore's zip (the console or API view calls this as it serves it)."""
    audit_record(organization=job.organization, actor=actor, action="restore.download", target_type="restore_job",
                 target_uuid=job.uuid, detail={"archive": str(job.archive.uuid), "size": job.result_size})
    restore_owner_notify(job=job, actor=actor, what="download")


# --- expiry -----------------------------------------------------------------------------------

@dataclass
class ExpirySweep:
    deleted: list[str]
    stale_failed: int


def restore_results_expire(*, now: datetime | None = None) -> ExpirySweep:
    """Delete zips past their expiry from the pack storage (the row stays, without a result); fail
    jobs whose worker died mid-run (running longer than the task's hard limit); remove scratch
    files left by crashes on the machine the sweep runs on."""
    now = now or timezone.now()
    root = restore_scratch_dir()
    deleted = []
    for job in RestoreJob.objects.filter(status=RestoreJob.Status.DONE, expires_at__lte=now).exclude(result_key=""):
        result_delete(job.result_key)
        if RestoreJob.objects.filter(pk=job.pk, result_key=job.result_key).update(result_key="") == 1:
            deleted.append(str(job.uuid))
    stale = RestoreJob.objects.filter(status=RestoreJob.Status.RUNNING,
                                      started_at__lt=now - timedelta(seconds=RESTORE_TIME_LIMIT + 600)).update(
        status=RestoreJob.Status.FAILED, finished_at=now, error="the restore worker stopped; ask for the restore again")
    if root.exists():
        for tmp in root.rglob(".*.tmp"):
            if tmp.stat().st_mtime < (now - timedelta(seconds=RESTORE_TIME_LIMIT + 600)).timestamp():
                tmp.unlink(missing_ok=True)
    return ExpirySweep(deleted=deleted, stale_failed=stale)


# --- the archive browser ----------------------------------------------------------------------

@dataclass(frozen=True)
class BrowseEntry:
    name: str
    path: str
    is_dir: bool
    size: int  # a folder: the bytes of every file under it
    mtime: datetime  # a folder: its newest file's


def _browse_job() -> str:
    return f"browse-{uuid.uuid4()}"


def _with_keys(actor: User, archive: Archive, key_buffer: bytearray | None, use: Callable[[KeySet], object]):
    restore_access_check(actor=actor, archive=archive)
    buffer = key_buffer if key_buffer is not None else bytearray(32)
    keys = None
    try:
        keys = _key_into(buffer, archive=archive, actor=actor, job=_browse_job())
        return use(keys)
    finally:
        _zero(buffer)
        keys = None  # noqa: F841 - drop the sub-keys with the buffer


def _mtime(mtime_ns: int) -> datetime:
    return datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.get_fixed_timezone(0))


def archive_browse(*, actor: User, archive: Archive, at: datetime | str | None = None, prefix: str = "/",
                   key_buffer: bytearray | None = None) -> list[BrowseEntry]:
    """The direct children of `prefix` at `at` (folders first, then by name): a short browse job
    with the same audited key access as a restore (purpose web_restore)."""
    moment, folder = restore_time_parse(at), restore_paths_parse([prefix or "/"])[0]

    def children(keys: KeySet) -> list[BrowseEntry]:
        found: dict[str, list] = {}
        base = folder.rstrip("/") + "/"
        for manifest in manifests_at(archive, keys, moment):
            if manifest.deleted or manifest.path == folder or not path_within(manifest.path, folder):
                continue
            name, _, rest = manifest.path[len(base):].partition("/")
            entry = found.setdefault(name, [bool(rest), 0, 0])
            entry[0] = entry[0] or bool(rest) or manifest.is_listing  # a root's directory listing (formats §9)
            if not manifest.is_listing:
                entry[1] += manifest.size
                entry[2] = max(entry[2], manifest.mtime_ns)
        entries = [BrowseEntry(name=name, path=base + name, is_dir=is_dir, size=size, mtime=_mtime(mtime))
                   for name, (is_dir, size, mtime) in found.items()]
        return sorted(entries, key=lambda e: (not e.is_dir, e.name))

    return _with_keys(actor, archive, key_buffer, children)


@dataclass(frozen=True)
class FileVersionEntry:
    version: uuid.UUID
    committed_at: datetime
    deleted: bool
    size: int
    mtime: datetime | None


def archive_file_versions(*, actor: User, archive: Archive, path: str,
                          key_buffer: bytearray | None = None) -> list[FileVersionEntry]:
    """Every stored version of one file, oldest first (same audited key access as browsing)."""
    wanted = restore_paths_parse([path])[0]

    def versions(keys: KeySet) -> list[FileVersionEntry]:
        rows = versions_of_path(archive, path_id=path_id_for(keys, wanted))
        blobs = manifests_read(rows)
        out = []
        for row in rows:
            manifest = manifest_decrypt(keys, blobs[row.pk], archive_id=archive.uuid, path_id=row.path_id,
                                        version_id=row.uuid)
            out.append(FileVersionEntry(version=row.uuid, committed_at=row.committed_at, deleted=manifest.deleted,
                                        size=manifest.size, mtime=None if manifest.deleted else _mtime(manifest.mtime_ns)))
        return out

    return _with_keys(actor, archive, key_buffer, versions)


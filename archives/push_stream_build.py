"""The server's part of a push restore of another user's archive: on the `keys` queue (one task
per child process), fetch the source user's key once (audited, purpose push_restore), decrypt
the selection through formats/ and write it re-encrypted to the target agent's one-time key
(docs/formats.md §10). The key lives in a buffer zeroed when the job ends; the stream (on the
pack storage until the job ends) is readable only with the agent's private key, which never left the agent's memory.
"""
import logging
import os

from django.utils import timezone

from archives.models import PushRestore, RestoreJob
from archives.push_restores import push_stream_discard
from archives.restore_results import result_key_for, result_spool
from archives.restores import (
    _fetcher,
    _key_into,
    _may_restore,
    _zero,
    manifests_at,
)
from formats.errors import FormatError
from formats.push_stream import PushFile, PushStreamWriter
from formats.reassembly import file_write, restore_selection
from keystore.models import KeyAccess
from keystore.vault import KeystoreUnavailable

logger = logging.getLogger(__name__)


def push_stream_claim(*, job_id: int) -> RestoreJob | None:
    """pending → preparing, at most once (a redelivered message finds nothing to do)."""
    claimed = PushRestore.objects.filter(job_id=job_id, stream=PushRestore.Stream.PENDING,
                                         job__status=RestoreJob.Status.RUNNING).update(
        stream=PushRestore.Stream.PREPARING)
    if claimed != 1:
        return None
    return RestoreJob.objects.select_related("organization", "archive__user__organization", "requested_by",
                                             "push").get(pk=job_id)


def push_stream_build(*, job: RestoreJob, key_buffer: bytearray | None = None, retry: bool = False) -> RestoreJob:
    """Write the job's stream, then mark it ready; on any failure the job fails with the reason.
    With `retry`, an unavailable keystore puts the stream back to pending and re-raises."""
    buffer = key_buffer if key_buffer is not None else bytearray(32)
    keys = None
    key = result_key_for(organization_uuid=job.organization.uuid, job_uuid=job.uuid, suffix="push")
    try:
        if not _may_restore(job.requested_by, job.archive):  # the role may have changed since the request
            return _failed(job, "the person who asked may no longer restore this archive")
        keys = _key_into(buffer, archive=job.archive, actor=job.requested_by, job=str(job.uuid),
                         purpose=KeyAccess.Purpose.PUSH_RESTORE, label="push restore")
        chosen = restore_selection(manifests_at(job.archive, keys, job.at), job.paths)
        job.files_total, job.bytes_total = len(chosen), sum(m.size for m in chosen)
        job.save(update_fields=["files_total", "bytes_total"])
        fetch = _fetcher(job.archive)
        with result_spool(key) as spool:  # written here, then put once on the pack storage for the web to serve
            with open(os.open(spool, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
                writer = PushStreamWriter(handle.write, job_id=job.uuid,
                                          agent_public=bytes(job.push.agent_public_key))
                for manifest in chosen:
                    writer.file_begin(PushFile(path=manifest.path, size=manifest.size, mode=manifest.mode,
                                               mtime_ns=manifest.mtime_ns))
                    file_write(keys, manifest, fetch=fetch, write=writer.file_data, archive_id=job.archive.uuid)
                writer.close()
                handle.flush()
            size = spool.stat().st_size
        job.result_key, job.result_size = key, size
        job.save(update_fields=["result_key", "result_size"])
        PushRestore.objects.filter(pk=job.push.pk).update(stream=PushRestore.Stream.READY)
        job.push.refresh_from_db()
    except KeystoreUnavailable as error:
        if retry:
            PushRestore.objects.filter(pk=job.push.pk).update(stream=PushRestore.Stream.PENDING)
            raise
        _failed(job, f"the keystore is unavailable ({error.reason}); ask for the restore again later")
    except FormatError as error:
        _failed(job, f"the archive failed verification: {error}")
    except Exception as error:  # noqa: BLE001 - the job must end failed, with a reason
        logger.exception("push restore %s failed", job.uuid)
        _failed(job, f"{type(error).__name__}: {error}")
    finally:
        _zero(buffer)
        keys = None  # noqa: F841 - drop the sub-keys with the buffer
    return job


def _failed(job: RestoreJob, message: str) -> RestoreJob:
    RestoreJob.objects.filter(pk=job.pk, status=RestoreJob.Status.RUNNING).update(
        status=RestoreJob.Status.FAILED, error=message[:500], finished_at=timezone.now())
    push_stream_discard(job=job)
    job.refresh_from_db()
    return job

"""Writes of the archives app: enrollment and backup runs here; block ingestion and version
commits in archives/ingest.py, whose names this module re-exports (rebuilding the index is
archives/rebuild.py, orphan-pack collection archives/gc.py).
"""
from django.db import transaction
from django.utils import timezone

from accounts.deployment import (
    DeploymentTokenRefused,
    deployment_attempt_count,
    deployment_attempt_forgive,
    deployment_refusal_record,
    deployment_token_redeem,
)
from accounts.models import Device, User
from accounts.services import device_create, device_enrolled_notify, device_token_issue, device_touch
from archives.freeze import run_mass_change_check
from archives.healing import heal_progress
from archives.ingest import (  # noqa: F401 - the names callers import from here
    TOUCH_SLACK,
    BatchInvalid,
    BlocksBeforeEscrow,
    CommitResult,
    IngestResult,
    MissingBlocks,
    VersionIn,
    VersionsInvalid,
    _pack_key,
    block_id_parse,
    blocks_ingest,
    blocks_missing,
    blocks_present,
    blocks_touch,
    versions_commit,
)
from archives.models import Archive, BackupRun
from keystore.models import UserKey


class DeviceDeauthorized(Exception):
    """The device was deauthorized; only an administrator can bring it back."""


# --- enrollment -----------------------------------------------------------------------------

def archive_for_device_ensure(*, device: Device) -> Archive:
    archive, _ = Archive.objects.get_or_create(
        user=device.owner, device=device, defaults={"organization": device.organization}
    )
    return archive


@transaction.atomic
def device_enroll(*, user: User, device_name: str, os_name: str, agent_version: str,
                  device_uuid=None) -> tuple[Device, Archive, str]:
    """Enroll a device of `user` (or re-enroll one of theirs) and issue it a token.

    Re-enrolling a deauthorized device is refused: a stolen laptop with its owner's password must
    not come back; an administrator reauthorizes it first.
    """
    device = None
    if device_uuid is not None:
        device = Device.objects.select_for_update().filter(uuid=device_uuid, owner=user).first()
    if device is not None and not device.authorized:
        raise DeviceDeauthorized("This device was deauthorized; ask an administrator to reauthorize it")
    if device is None:
        device = device_create(owner=user, name=device_name, os_name=os_name, agent_version=agent_version)
        device_enrolled_notify(device=device)
    else:
        device_touch(device=device, agent_version=agent_version)
    archive = archive_for_device_ensure(device=device)
    return device, archive, device_token_issue(device=device)


def device_enroll_by_token(*, raw_token: str, email: str, device_name: str, os_name: str, agent_version: str,
                           address: str, device_uuid=None) -> tuple[User, Device, Archive, str]:
    """Enroll a device of `email` with a deployment token (accounts/deployment.py): all or nothing.

    The token's use, a user it creates, the group it joins and the device are one transaction, so
    a refusal at any step (expired, exhausted, unknown user, deauthorized device) leaves none of
    them. Unless the token allows it, a user who already has a key is refused: the new device
    would receive that key, and a token is not the user's own proof of identity.
    """
    deployment_attempt_count(address=address)
    try:
        with transaction.atomic():
            redeemed = deployment_token_redeem(raw=raw_token, email=email)
            if not redeemed.token.allow_existing_keys and UserKey.objects.filter(user=redeemed.user).exists():
                raise DeploymentTokenRefused(
                    "user_has_key", "This user already has a key; enroll with their password or a one-time code, "
                                    "or use a token that allows existing keys", redeemed.token, redeemed.user.email)
            device, archive, token = device_enroll(user=redeemed.user, device_name=device_name, os_name=os_name,
                                                   agent_version=agent_version, device_uuid=device_uuid)
    except DeploymentTokenRefused as refused:
        deployment_refusal_record(refused=refused, address=address)
        raise
    deployment_attempt_forgive(address=address)
    return redeemed.user, device, archive, token


# --- backup runs ----------------------------------------------------------------------------

def backup_run_start(*, archive: Archive) -> BackupRun:
    return BackupRun.objects.create(archive=archive)


RUN_COUNTERS = ("files_scanned", "bytes_scanned", "files_changed", "bytes_sent")


def backup_run_finish(*, run: BackupRun, status: str, counters: dict[str, int], errors: list[str]) -> BackupRun:
    if status not in {BackupRun.Status.COMPLETED, BackupRun.Status.FAILED, BackupRun.Status.INTERRUPTED}:
        raise ValueError(f"unknown final status {status!r}")
    updated = BackupRun.objects.filter(pk=run.pk, status=BackupRun.Status.RUNNING).update(
        status=status, finished_at=timezone.now(), errors=[str(e)[:1000] for e in errors[:100]],
        **{name: max(0, int(counters.get(name, 0))) for name in RUN_COUNTERS},
    )
    if not updated:
        raise ValueError("this backup run has already finished")
    run.refresh_from_db()
    _run_finished(run)
    return run


def _run_finished(run: BackupRun) -> None:
    """Self-healing progress and the mass-change (ransomware) check (archives/healing.py, freeze.py)."""
    heal_progress(archive=run.archive)
    run_mass_change_check(run=run)

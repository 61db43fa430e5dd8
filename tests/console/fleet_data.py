"""Devices with archives, packs, runs and versions, written straight through the ORM (the agent
protocol is tested elsewhere; these tests are about what the console shows of them)."""
import os
import uuid
from datetime import datetime, timedelta

from django.utils import timezone

from accounts.models import Device, User
from archives.models import Archive, BackupRun, FileVersion, Pack


def device_with_backups(owner: User, name: str, *, last_backup_ago: timedelta | None, stored: int = 1000,
                        files: int = 2, os_name: str = "Linux", extra_runs: tuple[str, ...] = (),
                        now: datetime | None = None) -> Device:
    """A device of `owner` whose last completed backup finished `last_backup_ago` ago (None: never)."""
    now = now or timezone.now()
    device = Device.objects.create(organization=owner.organization, owner=owner, name=name, os=os_name,
                                   agent_version="0.9.0", last_seen_at=now)
    archive = Archive.objects.create(organization=owner.organization, user=owner, device=device)
    pack = Pack.objects.create(uuid=uuid.uuid4(), archive=archive, kind=Pack.Kind.BLOCKS,
                               storage_key=f"test/{uuid.uuid4()}", size=stored, frame_count=1)
    for status in extra_runs:
        BackupRun.objects.create(archive=archive, status=status, files_scanned=3,
                                 finished_at=None if status == BackupRun.Status.RUNNING else now,
                                 errors=["/home/secret-name.txt: Permission denied"] if status != "running" else [])
    if last_backup_ago is not None:
        run = BackupRun.objects.create(archive=archive, status=BackupRun.Status.COMPLETED,
                                       finished_at=now - last_backup_ago, files_scanned=files, bytes_received=stored)
        for index in range(files):
            FileVersion.objects.create(uuid=uuid.uuid4(), archive=archive, path_id=f"{index:064x}",
                                       committed_at=now - last_backup_ago, block_ids=os.urandom(32),
                                       stored_size=100, manifest_pack=pack, manifest_offset=0,
                                       manifest_frame_size=10, run=run)
    return device

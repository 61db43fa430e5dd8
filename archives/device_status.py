"""What agents report of themselves, and the commands the server has for them.

Commands are delivered in the answer to the agent's status report, each at most once: a
"back up now" flag is claimed with a conditional UPDATE, so two overlapping reports cannot both
receive it. New command kinds (push restore) join the list `device_status_report` returns.
"""
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from accounts.models import Device, User
from accounts.services import audit_record
from archives.policy_models import DeviceStatus

COMMAND_BACKUP_NOW = "backup_now"


@dataclass(frozen=True)
class DeviceCommand:
    command: str
    detail: dict


@transaction.atomic
def device_status_report(*, device: Device, state: str, last_result: dict, selection_files: int,
                         selection_bytes: int, pending_bytes: int, agent_version: str,
                         policy_etag: str = "") -> list[DeviceCommand]:
    status, _ = DeviceStatus.objects.get_or_create(device=device)
    status.state = state
    status.last_result = last_result
    status.selection_files, status.selection_bytes, status.pending_bytes = selection_files, selection_bytes, pending_bytes
    status.agent_version = agent_version
    status.policy_etag = policy_etag
    status.reported_at = timezone.now()
    status.save(update_fields=["state", "last_result", "selection_files", "selection_bytes", "pending_bytes",
                               "agent_version", "policy_etag", "reported_at"])
    commands = []
    claimed = DeviceStatus.objects.filter(pk=status.pk, backup_now_requested_at__isnull=False).update(
        backup_now_requested_at=None)
    if claimed:
        commands.append(DeviceCommand(COMMAND_BACKUP_NOW, {}))
    return commands


@transaction.atomic
def device_backup_now_request(*, device: Device, actor: User | None, actor_label: str | None = None) -> DeviceStatus:
    """Ask the device's agent to back up at its next status report (within a minute)."""
    status, _ = DeviceStatus.objects.select_for_update().get_or_create(device=device)
    status.backup_now_requested_at = timezone.now()
    status.save(update_fields=["backup_now_requested_at"])
    audit_record(organization=device.organization, actor=actor, actor_label=actor_label, action="device.backup_now",
                 target_type="device", target_uuid=device.uuid)
    return status

"""What agents report of themselves, and the commands the server has for them.

Commands are delivered in the answer to the agent's status report, each at most once: a
"back up now" flag is claimed with a conditional UPDATE, so two overlapping reports cannot both
receive it. New command kinds (push restore) join the list `device_status_report` returns.
"""
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from accounts.models import Device, User
from accounts.services import PermissionRefused, audit_record, device_touch
from archives.policy_models import DeviceStatus

COMMAND_BACKUP_NOW = "backup_now"


@dataclass(frozen=True)
class DeviceCommand:
    command: str
    detail: dict


# A fleet reports every 30 s; an unchanged report is written at most this often (reported_at
# then says "still alive" to within this much).
UNCHANGED_WRITE_SECONDS = 300
_REPORTED = ("state", "last_result", "selection_files", "selection_bytes", "pending_bytes", "agent_version",
             "policy_etag")


@transaction.atomic
def device_status_report(*, device: Device, state: str, last_result: dict, selection_files: int,
                         selection_bytes: int, pending_bytes: int, agent_version: str,
                         policy_etag: str = "") -> list[DeviceCommand]:
    status, created = DeviceStatus.objects.get_or_create(device=device)
    report = {"state": state, "last_result": last_result, "selection_files": selection_files,
              "selection_bytes": selection_bytes, "pending_bytes": pending_bytes, "agent_version": agent_version,
              "policy_etag": policy_etag}
    now = timezone.now()
    unchanged = all(getattr(status, name) == report[name] for name in _REPORTED)
    if created or not unchanged or status.reported_at is None or \
            (now - status.reported_at).total_seconds() >= UNCHANGED_WRITE_SECONDS:
        for name, value in report.items():
            setattr(status, name, value)
        status.reported_at = now
        status.save(update_fields=[*_REPORTED, "reported_at"])
    if agent_version and agent_version != device.agent_version:
        device_touch(device=device, agent_version=agent_version)
    commands = []
    claimed = DeviceStatus.objects.filter(pk=status.pk, backup_now_requested_at__isnull=False).update(
        backup_now_requested_at=None)
    if claimed:
        commands.append(DeviceCommand(COMMAND_BACKUP_NOW, {}))
    from archives.push_restores import COMMAND_PUSH_RESTORE, push_commands_for_device  # imports archives.restores

    commands += [DeviceCommand(COMMAND_PUSH_RESTORE, {"job": job}) for job in push_commands_for_device(device)]
    return commands


@transaction.atomic
def device_backup_now_request(*, device: Device, actor: User | None, actor_label: str | None = None) -> DeviceStatus:
    """Ask the device's agent to back up at its next status report (within a minute).

    An administrator of the device's organization or the device's own user may ask; `actor=None`
    is the system (a script, a scheduled job)."""
    if actor is not None and not (actor.organization_id == device.organization_id
                                  and (actor.is_org_admin or actor.pk == device.owner_id)):
        raise PermissionRefused("only an administrator of the organization or the device's user may do this")
    status, _ = DeviceStatus.objects.select_for_update().get_or_create(device=device)
    status.backup_now_requested_at = timezone.now()
    status.save(update_fields=["backup_now_requested_at"])
    audit_record(organization=device.organization, actor=actor, actor_label=actor_label, action="device.backup_now",
                 target_type="device", target_uuid=device.uuid)
    return status

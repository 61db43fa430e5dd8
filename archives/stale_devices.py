"""Stale devices (DESIGN §7): a device that has not completed a backup within its policy's
`stale_days` raises one `stale_device` alert to the organization's administrators (emailed once,
deduplicated while unresolved); the alert resolves itself once the device completes a backup
again. Deauthorized devices are not stale (nobody expects backups from them), and an alert
raised before a device was deauthorized resolves too. A device that never completed a backup
counts from its enrollment. `stale_days` 0 turns the check off for that scope.
"""
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Max
from django.utils import timezone

from accounts.models import Device, Organization
from activity.alerts import alert_raise, alerts_resolve_cleared
from activity.models import Alert
from archives.models import BackupRun
from archives.policies import policies_effective_for_devices

KIND = "stale_device"


def stale_dedup_key(device: Device) -> str:
    return f"{KIND}:{device.uuid}"


@dataclass
class StaleSweep:
    stale: list[str] = field(default_factory=list)  # device UUIDs with an open alert after the sweep
    raised: int = 0
    resolved: int = 0


def stale_devices_check_org(*, organization: Organization, now: datetime | None = None) -> StaleSweep:
    now = now or timezone.now()
    devices = list(Device.objects.filter(organization=organization, authorized=True).select_related("owner"))
    last_backup = dict(BackupRun.objects.filter(archive__organization=organization, status=BackupRun.Status.COMPLETED)
                       .values("archive__device_id").annotate(last=Max("finished_at"))
                       .values_list("archive__device_id", "last"))
    policies = policies_effective_for_devices(organization=organization, devices=devices)
    sweep, active = StaleSweep(), set()
    for device in devices:
        days = policies[device.pk]["stale_days"]
        if not days:
            continue
        since = last_backup.get(device.pk) or device.enrolled_at
        if now - since < timedelta(days=days):
            continue
        key = stale_dedup_key(device)
        active.add(key)
        never = device.pk not in last_backup
        title = (f"{device.name} ({device.owner.email}) has "
                 + ("never completed a backup" if never else "not completed a backup")
                 + f" in {(now - since).days} days")
        _, created = alert_raise(
            organization=organization, kind=KIND, dedup_key=key, title=title, severity=Alert.Severity.MEDIUM,
            subject_user=device.owner, device=device,
            detail={"device": str(device.uuid), "device_name": device.name, "user": device.owner.email,
                    "last_completed_backup": None if never else since.isoformat(),
                    "enrolled_at": device.enrolled_at.isoformat(), "stale_days": days})
        sweep.raised += created
        sweep.stale.append(str(device.uuid))
    sweep.resolved = alerts_resolve_cleared(organization=organization, kind=KIND, still_active_keys=active)
    return sweep


def stale_devices_check(*, now: datetime | None = None) -> StaleSweep:
    """Every organization; what the beat task runs."""
    total = StaleSweep()
    for organization in Organization.objects.order_by("pk"):
        sweep = stale_devices_check_org(organization=organization, now=now)
        total.stale += sweep.stale
        total.raised += sweep.raised
        total.resolved += sweep.resolved
    return total

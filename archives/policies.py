"""Backup policies: built-in defaults, the effective-policy resolver and the service that sets a
policy or an override.

Resolution is field by field: a device's override wins, then its user's groups (by group name,
the first group that sets the field), then the organization's policy, then Haven's defaults. A
field left NULL in a row inherits. The agent receives the resolved policy, never the rows.
"""
import hashlib
import json
import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import Device, Group, Organization
from accounts.services import audit_record
from archives.policy_models import BackupPolicy

GiB = 1024 ** 3

# The fields a policy row may set, in the order they are shown.
POLICY_FIELDS = (
    "include", "exclude", "default_excludes", "vm_image_max_bytes", "interval_seconds", "allowed_hours",
    "allowed_days", "bandwidth_active", "bandwidth_away", "cpu_threads", "nice", "version_interval_seconds",
    "stale_days",
)

# What nobody wants in a backup: caches, temporary files, package trees that a lock file
# rebuilds. A pattern without "/" matches a file or directory name anywhere; one with "/" a
# whole path (`~` is the user's home). An excluded directory is not even walked.
COMMON_EXCLUDES = [
    ".cache", "__pycache__", "node_modules", ".venv", ".tox", ".Trash", ".Trash-*", "*.tmp", "*.temp", "*.swp",
    "*~", ".DS_Store", "Thumbs.db", "*.part", "*.crdownload",
]
OS_EXCLUDES = {
    "linux": ["~/.cache", "~/.local/share/Trash", "/tmp", "/var/tmp"],
    "macos": ["~/Library/Caches", "~/Library/Logs", "~/.Trash", "/private/tmp", "/private/var/folders"],
    "windows": ["~/AppData/Local/Temp", "~/AppData/Local/Microsoft/Windows/INetCache", "$Recycle.Bin"],
}
# A VM image above vm_image_max_bytes is excluded: it changes wholesale and dwarfs everything else.
VM_IMAGE_PATTERNS = ["*.vmdk", "*.vdi", "*.vhd", "*.vhdx", "*.qcow2", "*.vmem", "*.vmsn", "*.hdd", "*.hds"]

DEFAULTS = {
    "include": ["~"],
    "exclude": [],
    "default_excludes": True,
    "vm_image_max_bytes": 1 * GiB,
    "interval_seconds": 15 * 60,
    "allowed_hours": [],
    "allowed_days": [],
    "bandwidth_active": 0,
    "bandwidth_away": 0,
    "cpu_threads": 2,
    "nice": 10,
    "version_interval_seconds": 0,
    # CrashPlan warns after about a week without a completed backup; so does Haven by default.
    "stale_days": 7,
}


def os_family(os_name: str) -> str:
    """The agent reports `platform.system() release`: Linux, Darwin or Windows."""
    lowered = (os_name or "").lower()
    if lowered.startswith("darwin") or "mac" in lowered:
        return "macos"
    if lowered.startswith("windows"):
        return "windows"
    return "linux"


def _device_groups(device: Device) -> list[Group]:
    return list(device.owner.haven_groups.filter(organization=device.organization).order_by("name"))


def _resolve(rows: list[BackupPolicy], family: str) -> dict:
    """`rows` from most to least specific; the first that sets a field gives it."""
    effective = {}
    for name in POLICY_FIELDS:
        value = next((getattr(row, name) for row in rows if getattr(row, name) is not None), None)
        effective[name] = DEFAULTS[name] if value is None else value
    effective["os_family"] = family
    builtin = (COMMON_EXCLUDES + OS_EXCLUDES[family]) if effective["default_excludes"] else []
    effective["exclude_effective"] = builtin + [p for p in effective["exclude"] if p not in builtin]
    effective["vm_image_patterns"] = VM_IMAGE_PATTERNS
    return effective


def policy_effective(*, device: Device) -> dict:
    rows = list(BackupPolicy.objects.filter(device=device))
    groups = _device_groups(device)
    by_group = {row.group_id: row for row in BackupPolicy.objects.filter(group__in=groups)}
    rows += [by_group[group.pk] for group in groups if group.pk in by_group]
    rows += list(BackupPolicy.objects.filter(organization=device.organization, group=None, device=None))
    return _resolve(rows, os_family(device.os))


def policy_effective_for_scope(*, organization: Organization, group: Group | None = None,
                               family: str = "linux") -> dict:
    """What a device with no override of its own (in `group`, if given) would follow."""
    rows = list(BackupPolicy.objects.filter(group=group)) if group else []
    rows += list(BackupPolicy.objects.filter(organization=organization, group=None, device=None))
    return _resolve(rows, family)


def policy_etag(effective: dict) -> str:
    """A strong HTTP entity tag: the hash of the policy's canonical JSON."""
    canonical = json.dumps(effective, sort_keys=True, separators=(",", ":")).encode()
    return '"' + hashlib.sha256(canonical).hexdigest()[:32] + '"'


def policy_overrides(policy: BackupPolicy) -> dict:
    return {name: getattr(policy, name) for name in POLICY_FIELDS if getattr(policy, name) is not None}


def _check_list(name: str, value, *, item_type, low=None, high=None) -> None:
    if not isinstance(value, list) or not all(isinstance(v, item_type) for v in value):
        raise ValidationError({name: f"{name} must be a list of {item_type.__name__}"})
    if low is not None and any(not low <= v <= high for v in value):
        raise ValidationError({name: f"every value of {name} is between {low} and {high}"})


def _validate(changes: dict) -> None:
    unknown = set(changes) - set(POLICY_FIELDS)
    if unknown:
        raise ValidationError(f"unknown policy fields: {', '.join(sorted(unknown))}")
    for name, value in changes.items():
        if value is None:
            continue  # back to inheriting
        if name in ("include", "exclude"):
            _check_list(name, value, item_type=str)
            if any(not v.strip() or "\x00" in v or len(v) > 4096 for v in value):
                raise ValidationError({name: f"empty, over-long or NUL-containing entry in {name}"})
            if name == "include" and not all(re.match(r"(~($|/)|/|[A-Za-z]:[\\/])", v) for v in value):
                raise ValidationError({name: "each path starts with /, ~ (the user's home) or a drive letter"})
        elif name == "allowed_hours":
            _check_list(name, value, item_type=int, low=0, high=23)
        elif name == "allowed_days":
            _check_list(name, value, item_type=int, low=0, high=6)
        elif name == "default_excludes":
            if not isinstance(value, bool):
                raise ValidationError({name: "true or false"})
        elif not isinstance(value, int) or isinstance(value, bool):
            raise ValidationError({name: "an integer"})
        elif name == "interval_seconds" and not 1 <= value <= 7 * 86400:
            raise ValidationError({name: "between 1 second and 7 days"})
        elif name == "cpu_threads" and not 1 <= value <= 64:
            raise ValidationError({name: "between 1 and 64"})
        elif name == "nice" and not 0 <= value <= 19:
            raise ValidationError({name: "between 0 and 19"})
        elif name == "stale_days" and not 0 <= value <= 365:
            raise ValidationError({name: "between 0 (never) and 365 days"})
        elif value < 0:
            raise ValidationError({name: "not negative"})


@dataclass
class PolicySet:
    policy: BackupPolicy
    created: bool


@transaction.atomic
def policy_set(*, organization: Organization, changes: dict, group: Group | None = None, device: Device | None = None,
               actor_label: str, actor=None) -> PolicySet:
    """Create or update the org's policy or one override; only the fields in `changes` change
    (None sets a field back to inheriting)."""
    if group is not None and device is not None:
        raise ValidationError("a policy overrides either a group or a device, not both")
    if (group and group.organization_id != organization.pk) or (device and device.organization_id != organization.pk):
        raise ValidationError("that group or device belongs to another organization")
    _validate(changes)
    policy, created = BackupPolicy.objects.select_for_update().get_or_create(
        organization=organization, group=group, device=device)
    for name, value in changes.items():
        setattr(policy, name, value)
    policy.full_clean()
    policy.save()
    scope = "device" if device else "group" if group else "organization"
    audit_record(organization=organization, actor=actor, actor_label=actor_label, action="policy.set",
                 target_type=scope, target_uuid=(device or group or organization).uuid,
                 detail={"changes": changes})
    return PolicySet(policy=policy, created=created)


@transaction.atomic
def policy_reset(*, organization: Organization, group: Group | None = None, device: Device | None = None,
                 actor_label: str, actor=None) -> bool:
    """Drop an override (or the org's policy): the scope inherits everything again."""
    deleted, _ = BackupPolicy.objects.filter(organization=organization, group=group, device=device).delete()
    if deleted:
        audit_record(organization=organization, actor=actor, actor_label=actor_label, action="policy.reset",
                     target_type="device" if device else "group" if group else "organization",
                     target_uuid=(device or group or organization).uuid)
    return bool(deleted)


def policies_effective_for_devices(*, organization: Organization, devices: list[Device]) -> dict[int, dict]:
    """`policy_effective` of many devices of one organization (device pk → policy), from one
    query per table rather than several per device: for fleet-wide checks such as stale devices."""
    org_rows = list(BackupPolicy.objects.filter(organization=organization, group=None, device=None))
    by_device = {row.device_id: row for row in BackupPolicy.objects.filter(organization=organization,
                                                                           device__in=devices)}
    by_group = {row.group_id: row for row in BackupPolicy.objects.filter(organization=organization,
                                                                         group__isnull=False)}
    groups_of: dict[int, list[int]] = {}
    memberships = (Group.members.through.objects
                   .filter(user_id__in={device.owner_id for device in devices}, group__organization=organization)
                   .order_by("group__name").values_list("user_id", "group_id"))
    for user_id, group_id in memberships:
        groups_of.setdefault(user_id, []).append(group_id)
    effective = {}
    for device in devices:
        rows = [by_device[device.pk]] if device.pk in by_device else []
        rows += [by_group[group_id] for group_id in groups_of.get(device.owner_id, []) if group_id in by_group]
        effective[device.pk] = _resolve(rows + org_rows, os_family(device.os))
    return effective

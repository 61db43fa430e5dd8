"""Where each field of an effective backup policy comes from, for the console's policy pages.

The same resolution as archives/policies.py (device > the user's groups by name > organization >
Haven's defaults, field by field), but keeping the scope that gave each value, so an administrator
sees why a device follows what it follows.
"""
from dataclasses import dataclass

from accounts.models import Device, Group, Organization
from archives.policies import DEFAULTS, POLICY_FIELDS, _device_groups, policy_effective, policy_effective_for_scope
from archives.policy_models import BackupPolicy


@dataclass(frozen=True)
class FieldSource:
    name: str
    value: object  # the effective value
    source: str  # "device", "group", "organization" or "default"
    source_label: str  # e.g. "group engineering"
    own: object  # this scope's own override of the field, None when it inherits
    inherited: object  # what the field would be if this scope did not set it


def _rows(organization: Organization, group: Group | None, device: Device | None) -> list[tuple[BackupPolicy, str, str]]:
    rows = []
    if device is not None:
        rows += [(row, "device", "this device") for row in BackupPolicy.objects.filter(device=device)]
        groups = _device_groups(device)
        by_group = {row.group_id: row for row in BackupPolicy.objects.filter(group__in=groups)}
        rows += [(by_group[g.pk], "group", f"group {g.name}") for g in groups if g.pk in by_group]
    elif group is not None:
        rows += [(row, "group", "this group") for row in BackupPolicy.objects.filter(group=group)]
    rows += [(row, "organization", "organization") for row in BackupPolicy.objects.filter(
        organization=organization, group=None, device=None)]
    return rows


def policy_sources(*, organization: Organization, group: Group | None = None,
                   device: Device | None = None) -> list[FieldSource]:
    """One FieldSource per policy field, in POLICY_FIELDS order, for the given scope."""
    rows = _rows(organization, group, device)
    scope = "device" if device else "group" if group else "organization"
    own_row = rows[0][0] if rows and rows[0][1] == scope else None
    result = []
    for name in POLICY_FIELDS:
        setters = [(getattr(row, name), kind, label) for row, kind, label in rows if getattr(row, name) is not None]
        value, kind, label = setters[0] if setters else (DEFAULTS[name], "default", "Haven's default")
        parents = [getattr(row, name) for row, _, _ in rows if row is not own_row and getattr(row, name) is not None]
        result.append(FieldSource(name=name, value=value, source=kind, source_label=label,
                                  own=getattr(own_row, name) if own_row is not None else None,
                                  inherited=parents[0] if parents else DEFAULTS[name]))
    return result


def policy_resolved(*, organization: Organization, group: Group | None = None, device: Device | None = None) -> dict:
    """The resolved policy as the agent gets it (the defaults' exclusions folded in); for a group or
    the organization, as a Linux device without an override of its own would get it."""
    if device is not None:
        return policy_effective(device=device)
    return policy_effective_for_scope(organization=organization, group=group, family="linux")

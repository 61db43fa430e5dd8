"""Backup policies: the field-by-field resolver (device > group > org > defaults), validation,
and `manage.py policy` (its name and flags are a contract for scripts)."""
import json
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from accounts.models import AuditEvent, Group
from accounts.services import device_create
from archives.policies import DEFAULTS, policy_effective, policy_etag, policy_set


@pytest.fixture
def laptop(bob):
    return device_create(owner=bob, name="bob-laptop", os_name="Linux 6.1", agent_version="0.1.0")


def _set(org, label="test", **kwargs):
    changes = kwargs.pop("changes")
    return policy_set(organization=org, changes=changes, actor_label=label, **kwargs).policy


def test_a_device_with_no_policy_gets_the_builtin_defaults(laptop):
    effective = policy_effective(device=laptop)
    assert effective["include"] == ["~"] and effective["interval_seconds"] == 15 * 60
    for pattern in ("node_modules", ".cache", "*.tmp", "~/.cache"):
        assert pattern in effective["exclude_effective"]
    assert "*.vmdk" in effective["vm_image_patterns"] and effective["vm_image_max_bytes"] == DEFAULTS["vm_image_max_bytes"]


def test_the_defaults_follow_the_operating_system(bob):
    mac = device_create(owner=bob, name="mac", os_name="Darwin 24.1", agent_version="0.1.0")
    effective = policy_effective(device=mac)
    assert effective["os_family"] == "macos"
    assert "~/Library/Caches" in effective["exclude_effective"] and "~/.cache" not in effective["exclude_effective"]


def test_device_beats_group_beats_org_field_by_field(org_a, bob, laptop):
    engineering = Group.objects.create(organization=org_a, name="engineering")
    engineering.members.add(bob)
    _set(org_a, changes={"include": ["/srv"], "interval_seconds": 3600, "nice": 5, "exclude": ["*.iso"]})
    _set(org_a, group=engineering, changes={"interval_seconds": 600, "cpu_threads": 4})
    _set(org_a, device=laptop, changes={"cpu_threads": 1})
    effective = policy_effective(device=laptop)
    assert effective["include"] == ["/srv"]  # org
    assert effective["interval_seconds"] == 600  # group
    assert effective["cpu_threads"] == 1  # device
    assert effective["nice"] == 5  # org
    assert effective["bandwidth_active"] == DEFAULTS["bandwidth_active"]  # nobody set it
    assert "*.iso" in effective["exclude_effective"] and "node_modules" in effective["exclude_effective"]


def test_of_two_groups_the_first_by_name_that_sets_a_field_wins(org_a, bob, laptop):
    b_group, a_group = (Group.objects.create(organization=org_a, name=n) for n in ("b-team", "a-team"))
    for group in (a_group, b_group):
        group.members.add(bob)
    _set(org_a, group=b_group, changes={"interval_seconds": 200, "nice": 3})
    _set(org_a, group=a_group, changes={"interval_seconds": 100})
    effective = policy_effective(device=laptop)
    assert effective["interval_seconds"] == 100 and effective["nice"] == 3


def test_an_override_set_back_to_none_inherits_again(org_a, laptop):
    _set(org_a, changes={"interval_seconds": 3600})
    _set(org_a, device=laptop, changes={"interval_seconds": 60})
    assert policy_effective(device=laptop)["interval_seconds"] == 60
    _set(org_a, device=laptop, changes={"interval_seconds": None})
    assert policy_effective(device=laptop)["interval_seconds"] == 3600


def test_without_default_excludes_only_the_administrators_patterns_apply(org_a, laptop):
    _set(org_a, changes={"default_excludes": False, "exclude": ["*.iso"]})
    assert policy_effective(device=laptop)["exclude_effective"] == ["*.iso"]


def test_the_etag_changes_with_the_policy_and_only_then(org_a, laptop):
    before = policy_etag(policy_effective(device=laptop))
    assert policy_etag(policy_effective(device=laptop)) == before
    _set(org_a, changes={"exclude": ["*.iso"]})
    assert policy_etag(policy_effective(device=laptop)) != before


@pytest.mark.parametrize("changes", [
    {"interval_seconds": 0}, {"interval_seconds": "soon"}, {"allowed_hours": [24]}, {"allowed_days": [7]},
    {"include": "/home"}, {"exclude": [""]}, {"nice": 20}, {"bandwidth_active": -1}, {"cpu_threads": 0},
    {"default_excludes": "yes"}, {"colour": "blue"}, {"include": ["relative/path"]}, {"include": ["~alice"]},
])
def test_bad_values_are_refused(org_a, changes):
    with pytest.raises(ValidationError):
        _set(org_a, changes=changes)


def test_another_orgs_device_cannot_be_overridden(org_b, laptop):
    with pytest.raises(ValidationError):
        _set(org_b, device=laptop, changes={"nice": 1})


def test_setting_a_policy_is_audited(org_a):
    _set(org_a, label="manage.py policy", changes={"interval_seconds": 60})
    event = AuditEvent.objects.get(action="policy.set")
    assert event.actor_label == "manage.py policy" and event.detail == {"changes": {"interval_seconds": 60}}


def _policy_command(*args) -> dict:
    out = StringIO()
    call_command("policy", *args, stdout=out)
    return json.loads(out.getvalue())


def test_manage_policy_sets_the_org_policy(org_a):
    result = _policy_command("--org", "Org A", "--include", "~/Documents", "--include", "/data",
                             "--exclude", "*.iso", "--interval", "300")
    assert result["override"] == {"include": ["~/Documents", "/data"], "exclude": ["*.iso"], "interval_seconds": 300}
    assert result["effective"]["interval_seconds"] == 300 and "*.iso" in result["effective"]["exclude_effective"]


def test_manage_policy_overrides_a_group_and_a_device(org_a, bob, laptop):
    Group.objects.create(organization=org_a, name="engineering").members.add(bob)
    _policy_command("--org", "org-a", "--interval", "3600")
    group = _policy_command("--org", "Org A", "--group", "engineering", "--exclude", "*.vmdk")
    assert group["override"] == {"exclude": ["*.vmdk"]} and group["effective"]["interval_seconds"] == 3600
    device = _policy_command("--org", "Org A", "--device", str(laptop.uuid), "--interval", "60", "--hours", "8-18",
                             "--days", "mon-fri", "--bandwidth-active", "5M", "--bandwidth-away", "0",
                             "--cpu-threads", "1", "--nice", "15", "--version-interval", "900")
    effective = device["effective"]
    assert effective["interval_seconds"] == 60 and effective["exclude"] == ["*.vmdk"]
    assert effective["allowed_hours"] == list(range(8, 19)) and effective["allowed_days"] == [0, 1, 2, 3, 4]
    assert (effective["bandwidth_active"], effective["bandwidth_away"]) == (5_000_000, 0)
    assert (effective["cpu_threads"], effective["nice"], effective["version_interval_seconds"]) == (1, 15, 900)
    assert policy_effective(device=laptop) == effective


def test_manage_policy_reset_drops_an_override(org_a, laptop):
    _policy_command("--org", "Org A", "--device", str(laptop.uuid), "--interval", "60")
    result = _policy_command("--org", "Org A", "--device", str(laptop.uuid), "--reset")
    assert result["override"] == {} and result["effective"]["interval_seconds"] == DEFAULTS["interval_seconds"]


@pytest.mark.parametrize("args", [
    ["--org", "No Such Org"], ["--org", "Org A", "--group", "nobody"], ["--org", "Org A", "--device", "not-a-uuid"],
    ["--org", "Org A", "--interval", "0"], ["--org", "Org A", "--hours", "25"], ["--org", "Org A", "--days", "someday"],
    ["--org", "Org A", "--bandwidth-active", "fast"],
])
def test_manage_policy_refuses_bad_arguments_clearly(org_a, args):
    with pytest.raises(CommandError):
        _policy_command(*args)


def test_manage_policy_takes_a_group_or_a_device_not_both(org_a, laptop):
    with pytest.raises(CommandError):
        _policy_command("--org", "Org A", "--group", "g", "--device", str(laptop.uuid))


def test_manage_policy_cannot_reach_another_orgs_device(org_a, org_b, laptop):
    with pytest.raises(CommandError):
        _policy_command("--org", "Org B", "--device", str(laptop.uuid), "--interval", "60")


def test_home_absolute_and_drive_paths_are_accepted(org_a):
    policy = _set(org_a, changes={"include": ["~", "~/Documents", "/srv", "C:\\Data", "D:/Projects"]})
    assert policy.include == ["~", "~/Documents", "/srv", "C:\\Data", "D:/Projects"]

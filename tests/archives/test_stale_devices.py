"""Stale devices: one `stale_device` alert per device without a completed backup in its policy's
stale_days (emailed to the org's administrators once), resolved when it backs up again; never for
deauthorized devices. Real rows, real times: runs finished days ago, checked against now."""
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone

from accounts.models import Device, Group
from accounts.services import device_deauthorize
from activity.models import Alert
from archives.models import BackupRun
from archives.policies import DEFAULTS, policies_effective_for_devices, policy_effective, policy_set
from archives.services import device_enroll
from archives.stale_devices import stale_devices_check
from archives.tasks import stale_devices_check_task

DAY = timedelta(days=1)


def _device(user, name, *, enrolled_days_ago=30, backups=()):
    """An enrolled device with completed (or other) runs that finished `days` ago: [(days, status)]."""
    device, archive, _ = device_enroll(user=user, device_name=name, os_name="Linux 6.1", agent_version="t")
    now = timezone.now()
    Device.objects.filter(pk=device.pk).update(enrolled_at=now - enrolled_days_ago * DAY)
    for days, status in backups:
        run = BackupRun.objects.create(archive=archive, status=status)
        BackupRun.objects.filter(pk=run.pk).update(started_at=now - days * DAY - timedelta(minutes=5),
                                                   finished_at=now - days * DAY)
    device.refresh_from_db()
    return device


def _open(device=None):
    alerts = Alert.objects.filter(kind="stale_device").exclude(status=Alert.Status.RESOLVED)
    return list(alerts.filter(device=device) if device else alerts)


@pytest.fixture
def sweep(django_capture_on_commit_callbacks):
    """Run the check as beat would, with the alert emails (sent on commit) actually sent."""
    def _sweep():
        with django_capture_on_commit_callbacks(execute=True):
            return stale_devices_check()
    return _sweep


def test_a_device_a_week_without_a_completed_backup_raises_one_alert_emailed_to_admins(alice, bob, sweep):
    old = _device(bob, "old-laptop", backups=[(8, BackupRun.Status.COMPLETED), (1, BackupRun.Status.FAILED)])
    fresh = _device(bob, "fresh-laptop", backups=[(9, BackupRun.Status.COMPLETED), (2, BackupRun.Status.COMPLETED)])
    result = sweep()
    assert result.raised == 1 and result.stale == [str(old.uuid)]
    (alert,) = _open()
    assert (alert.device, alert.subject_user, alert.organization) == (old, bob, bob.organization)
    assert alert.dedup_key == f"stale_device:{old.uuid}" and "old-laptop" in alert.title and "8 days" in alert.title
    assert alert.detail["stale_days"] == 7 and alert.detail["last_completed_backup"] is not None
    assert _open(fresh) == []
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [alice.email] and "old-laptop" in mail.outbox[0].subject

    again = sweep()  # deduplicated: the same alert, seen again, not emailed again
    assert again.raised == 0 and len(_open()) == 1 and len(mail.outbox) == 1
    alert.refresh_from_db()
    assert alert.occurrences == 2


def test_the_alert_resolves_when_the_device_completes_a_backup_again(bob, sweep):
    device = _device(bob, "laptop", backups=[(10, BackupRun.Status.COMPLETED)])
    sweep()
    (alert,) = _open(device)
    BackupRun.objects.create(archive=device.archives.get(), status=BackupRun.Status.RUNNING)
    assert sweep().resolved == 0  # a backup in progress is not a completed one
    run = BackupRun.objects.filter(archive__device=device, status=BackupRun.Status.RUNNING).get()
    BackupRun.objects.filter(pk=run.pk).update(status=BackupRun.Status.COMPLETED, finished_at=timezone.now())
    assert sweep().resolved == 1
    alert.refresh_from_db()
    assert alert.status == Alert.Status.RESOLVED and alert.resolved_at is not None
    assert _open() == []


def test_a_device_that_never_backed_up_counts_from_its_enrollment(bob, sweep):
    never = _device(bob, "never", enrolled_days_ago=8)
    _device(bob, "new", enrolled_days_ago=1)
    sweep()
    (alert,) = _open()
    assert alert.device == never and "never completed a backup" in alert.title
    assert alert.detail["last_completed_backup"] is None


def test_deauthorized_devices_are_not_stale_and_their_alert_resolves(alice, bob, sweep):
    device = _device(bob, "stolen", backups=[(20, BackupRun.Status.COMPLETED)])
    sweep()
    assert len(_open(device)) == 1
    device_deauthorize(device=device, actor=alice)
    assert sweep().resolved == 1 and _open() == []
    assert sweep().raised == 0


def test_the_policy_sets_the_days_per_org_group_and_device(alice, bob, org_a, sweep):
    group = Group.objects.create(organization=org_a, name="Travellers")
    _device(alice, "traveller", backups=[(8, BackupRun.Status.COMPLETED)])
    group.members.add(alice)
    quiet = _device(bob, "quiet", backups=[(8, BackupRun.Status.COMPLETED)])
    strict = _device(bob, "strict", backups=[(4, BackupRun.Status.COMPLETED)])
    policy_set(organization=org_a, changes={"stale_days": 3}, actor_label="test")
    policy_set(organization=org_a, group=group, changes={"stale_days": 30}, actor_label="test")
    policy_set(organization=org_a, device=quiet, changes={"stale_days": 0}, actor_label="test")  # never
    sweep()
    assert [alert.device for alert in _open()] == [strict]
    assert _open(strict)[0].detail["stale_days"] == 3


def test_the_fleet_resolver_agrees_with_each_devices_effective_policy(alice, bob, org_a):
    first, second = Group.objects.create(organization=org_a, name="A"), Group.objects.create(organization=org_a, name="B")
    first.members.add(bob)
    second.members.add(bob, alice)
    devices = [_device(bob, "one"), _device(bob, "two"), _device(alice, "three")]
    policy_set(organization=org_a, changes={"stale_days": 3, "interval_seconds": 60}, actor_label="test")
    policy_set(organization=org_a, group=second, changes={"stale_days": 10}, actor_label="test")
    policy_set(organization=org_a, group=first, changes={"stale_days": 5, "nice": 3}, actor_label="test")
    policy_set(organization=org_a, device=devices[1], changes={"stale_days": 2}, actor_label="test")
    fleet = policies_effective_for_devices(organization=org_a, devices=devices)
    for device in devices:
        assert fleet[device.pk] == policy_effective(device=device)
    assert [fleet[d.pk]["stale_days"] for d in devices] == [5, 2, 10]


def test_other_organizations_get_their_own_alerts(bob, mallory, sweep):
    _device(bob, "bob-laptop", backups=[(9, BackupRun.Status.COMPLETED)])
    _device(mallory, "mallory-laptop", backups=[(9, BackupRun.Status.COMPLETED)])
    sweep()
    assert sorted((a.organization.name, a.device.name) for a in _open()) == [
        ("Org A", "bob-laptop"), ("Org B", "mallory-laptop")]
    assert sorted(tuple(m.to) for m in mail.outbox) == [(mallory.email,)]  # Org A's admin is Alice: not created


def test_stale_days_is_validated_and_set_by_manage_py_policy(org_a):
    assert DEFAULTS["stale_days"] == 7
    for bad in (-1, 366, "7", True):
        with pytest.raises(ValidationError):
            policy_set(organization=org_a, changes={"stale_days": bad}, actor_label="test")
    out = StringIO()
    call_command("policy", "--org", "Org A", "--stale-days", "14", stdout=out)
    printed = json.loads(out.getvalue())
    assert printed["override"]["stale_days"] == 14 and printed["effective"]["stale_days"] == 14


def test_the_beat_task_runs_the_check_hourly(bob):
    _device(bob, "laptop", backups=[(8, BackupRun.Status.COMPLETED)])
    assert stale_devices_check_task() == {"stale": 1, "raised": 1, "resolved": 0}
    schedule = settings.CELERY_BEAT_SCHEDULE["stale-devices-check"]
    assert schedule["task"] == stale_devices_check_task.name == "haven.archives.stale_devices_check"
    assert schedule["schedule"] <= 3600

"""manage.py device: the console's device list and actions for scripts, scoped to one org."""
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import AuditEvent, Device
from archives.policy_models import DeviceStatus
from tests.console.fleet_data import device_with_backups


def _run(*args) -> str:
    out = StringIO()
    call_command("device", *args, stdout=out)
    return out.getvalue()


def test_it_lists_one_orgs_devices_by_health(alice, bob, mallory):
    device_with_backups(alice, "fresh", last_backup_ago=timedelta(hours=1))
    device_with_backups(bob, "old", last_backup_ago=timedelta(days=5))
    device_with_backups(mallory, "theirs", last_backup_ago=timedelta(days=5))
    listed = _run("list", "--org", "Org A")
    assert "fresh" in listed and "old" in listed and "theirs" not in listed
    stale = _run("list", "--org", "Org A", "--health", "stale")
    assert "old" in stale and "fresh" not in stale


def test_it_deauthorizes_reauthorizes_and_asks_for_a_backup_audited(alice, mallory):
    device = device_with_backups(alice, "box", last_backup_ago=None)
    _run("deauthorize", "--org", "Org A", "--device", str(device.uuid))
    assert not Device.objects.get(pk=device.pk).authorized
    _run("reauthorize", "--org", "Org A", "--device", str(device.uuid))
    _run("backup-now", "--org", "Org A", "--device", str(device.uuid))
    assert Device.objects.get(pk=device.pk).authorized
    assert DeviceStatus.objects.get(device=device).backup_now_requested_at is not None
    assert set(AuditEvent.objects.filter(actor_label="manage.py device").values_list("action", flat=True)) == {
        "device.deauthorize", "device.reauthorize", "device.backup_now"}
    with pytest.raises(CommandError):
        _run("deauthorize", "--org", "Org B", "--device", str(device.uuid))
    with pytest.raises(CommandError):
        _run("deauthorize", "--org", "Org A", "--device", "nope")

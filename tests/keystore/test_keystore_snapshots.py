"""Keystore snapshots without a raft keystore: scheduling, staleness alerts, failures, refusing a
damaged snapshot before the keystore is touched, and what the storage's other users leave alone.
(Taking and restoring real snapshots: test_keystore_snapshots_raft.py.)"""
import gzip
import hashlib
import io
import json
import secrets
import tarfile
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import AuditEvent
from activity.models import Alert
from archives.storage import pack_storage
from keystore import tasks as keystore_tasks
from keystore.models import KeystoreSnapshot, UserKey
from keystore.raft_snapshots import SnapshotInvalid, snapshot_check
from keystore.snapshots import ALERT_FAILED, ALERT_STALE, keystore_snapshot_check, keystore_snapshot_take
from keystore.vault import vault_client_reset
from tests.support import free_port

State = KeystoreSnapshot.State


@pytest.fixture(autouse=True)
def packs(settings, tmp_path):
    settings.PACK_DIR = tmp_path / "packs"
    settings.HAVEN_KEYSTORE_SNAPSHOT_HOURS = 24
    settings.HAVEN_KEYSTORE_SNAPSHOT_KEEP = 14
    vault_client_reset()  # no client of another test's keystore
    yield pack_storage()
    vault_client_reset()


def _haven_key(user, *, days_ago=1):
    """A key recorded as escrowed in Haven's keystore (its organization's keys are in snapshots)."""
    return UserKey.objects.create(organization=user.organization, user=user, key_id="a" * 32,
                                  state=UserKey.State.ESCROWED, escrowed_at=timezone.now() - timedelta(days=days_ago))


def _snapshot(*, hours_ago, state=State.SUCCEEDED, name=None, **fields):
    taken = timezone.now() - timedelta(hours=hours_ago)
    return KeystoreSnapshot.objects.create(name=name or f"{taken:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}",
                                           state=state, taken_at=taken, started_by="test",
                                           sha256="0" * 64 if state == State.SUCCEEDED else "", **fields)


def _open(kind):
    return Alert.objects.filter(kind=kind).exclude(status=Alert.Status.RESOLVED)


def raft_snapshot_bytes(state: bytes = b"state", *, break_sums=False) -> bytes:
    """A file shaped like OpenBao's raft snapshot: gzip tar of meta.json, state.bin, SHA256SUMS."""
    meta = json.dumps({"Version": 1, "Index": 36, "Term": 3}).encode()
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in (("meta.json", meta),
                                                                                       ("state.bin", state)))
    if break_sums:
        sums = sums.replace(sums[:8], "00000000", 1)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in (("meta.json", meta), ("state.bin", state), ("SHA256SUMS", sums.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_dev_mode_keystore_is_not_raft_backed_so_each_attempt_says_why_and_nothing_alerts(vault, alice, packs):
    _haven_key(alice, days_ago=5)
    out = StringIO()
    call_command("keystoresnapshot", "take", stdout=out)
    assert "no snapshot: the keystore's storage is 'inmem', not raft" in out.getvalue()
    row = KeystoreSnapshot.objects.get()
    assert row.state == State.SKIPPED and not row.storage_key
    assert not list((packs.root).rglob("*.snap"))
    check = keystore_snapshot_check()
    assert not check.stale and not check.due and "inmem" in check.note
    assert not _open(ALERT_STALE).exists() and not _open(ALERT_FAILED).exists()


def test_the_newest_snapshot_older_than_two_intervals_raises_an_alert_in_each_organization_with_keys(
        alice, mallory, django_capture_on_commit_callbacks):
    _haven_key(alice, days_ago=10)  # Org B (Mallory's) has no key in Haven's keystore: nothing of it is at risk
    _snapshot(hours_ago=49)
    with django_capture_on_commit_callbacks(execute=True):
        check = keystore_snapshot_check()
    assert check.stale and check.due
    alert = _open(ALERT_STALE).get()
    assert alert.organization == alice.organization and alert.severity == Alert.Severity.HIGH
    assert "not been backed up for over 48 hours" in alert.title
    keystore_snapshot_check()
    assert _open(ALERT_STALE).get().occurrences == 2  # seen again, not a second alert
    _snapshot(hours_ago=1, name="20990101T000000Z-00000a")
    check = keystore_snapshot_check()
    assert not check.stale and not check.due
    assert not _open(ALERT_STALE).exists()


def test_keys_never_snapshotted_for_two_intervals_are_stale_too(alice):
    _haven_key(alice, days_ago=3)
    assert keystore_snapshot_check().stale
    assert _open(ALERT_STALE).count() == 1


def test_a_snapshot_that_fails_is_recorded_audited_and_alerted(settings, alice, packs):
    _haven_key(alice)
    settings.VAULT_ADDR = f"http://127.0.0.1:{free_port()}"  # nothing listens
    settings.VAULT_TOKEN = settings.VAULT_PRIVILEGED_TOKEN = "irrelevant"
    row = keystore_snapshot_take(started_by="test")
    assert row.state == State.FAILED and row.error == "the keystore is unreachable"
    alert = _open(ALERT_FAILED).get()
    assert alert.organization == alice.organization and "could not be backed up: the keystore is unreachable" in alert.title
    assert AuditEvent.objects.filter(organization=alice.organization, action="keystore.snapshot_failed",
                                     detail__snapshot=row.name).exists()
    with pytest.raises(CommandError, match="failed: the keystore is unreachable"):
        call_command("keystoresnapshot", "take", stdout=StringIO())
    assert _open(ALERT_FAILED).get().occurrences == 2


def test_the_hourly_check_queues_a_snapshot_on_the_keys_queue_only_when_one_is_due(alice, monkeypatch):
    from django.conf import settings

    from config.celery_app import app

    queued = []
    monkeypatch.setattr(keystore_tasks.keystore_snapshot_take_task, "apply_async",
                        lambda **options: queued.append(options))
    recent = _snapshot(hours_ago=2)
    assert not keystore_tasks.keystore_snapshot_check_task()["due"]
    assert queued == []
    recent.delete()
    _snapshot(hours_ago=23.6)  # a daily snapshot checked hourly is taken at the first check within 30 min of its time
    assert keystore_tasks.keystore_snapshot_check_task()["due"]
    assert queued == [{"kwargs": {"scheduled": True}, "expires": keystore_tasks.SNAPSHOT_QUEUE_EXPIRES}]
    # The privileged token is on the keys worker only: the take runs there, the check does not.
    route = app.amqp.router.route
    assert route({}, "haven.keystore.snapshot_take")["queue"].name == "keys"
    assert route({}, "haven.snapshots.keystore_check")["queue"].name != "keys"
    entry = settings.CELERY_BEAT_SCHEDULE["keystore-snapshot"]
    assert entry == {"task": "haven.snapshots.keystore_check", "schedule": 3600.0}


def test_a_scheduled_take_delivered_twice_takes_one_snapshot(alice, monkeypatch):
    taken = []
    monkeypatch.setattr(keystore_tasks, "keystore_snapshot_take", lambda **kw: taken.append(kw) or _snapshot(hours_ago=0))
    keystore_tasks.keystore_snapshot_take_task(scheduled=True)
    assert keystore_tasks.keystore_snapshot_take_task(scheduled=True) == {"snapshot": None, "state": "not due"}
    assert taken == [{"started_by": "beat"}]


def test_snapshots_are_off_with_zero_hours(settings, alice):
    settings.HAVEN_KEYSTORE_SNAPSHOT_HOURS = 0
    _haven_key(alice, days_ago=30)
    check = keystore_snapshot_check()
    assert not check.due and not check.stale and "off" in check.note


def test_the_raft_snapshot_check_wants_matching_sums():
    assert snapshot_check(raft_snapshot_bytes())["Index"] == 36
    with pytest.raises(SnapshotInvalid, match="does not match its SHA256SUMS"):
        snapshot_check(raft_snapshot_bytes(break_sums=True))
    with pytest.raises(SnapshotInvalid, match="not a raft snapshot"):
        snapshot_check(gzip.compress(b"<html>502 Bad Gateway</html>"))


def test_a_snapshot_altered_on_the_storage_is_refused_before_the_keystore_is_called(alice, packs, tmp_path):
    data = raft_snapshot_bytes()
    name = "20261201T000000Z-abcdef"
    packs.put(f"keystore-snapshots/{name}.snap", [data[:-1] + bytes([data[-1] ^ 1])])
    _snapshot(hours_ago=1, name=name, storage_key=f"keystore-snapshots/{name}.snap", size=len(data))
    KeystoreSnapshot.objects.filter(name=name).update(sha256=hashlib.sha256(data).hexdigest())
    token = tmp_path / "root-token"
    token.write_text("root")
    dead = f"http://127.0.0.1:{free_port()}"  # if the keystore were called, the error would be "no active node"
    with pytest.raises(CommandError, match=f"snapshot {name} was altered or damaged on the storage"):
        call_command("keystoresnapshot", "restore", name, "--address", dead, "--token-file", str(token), "--yes")
    err = StringIO()
    with pytest.raises(CommandError, match="1 snapshot"):
        call_command("keystoresnapshot", "verify", stdout=StringIO(), stderr=err)
    assert "altered or damaged" in err.getvalue()
    with pytest.raises(CommandError, match="no snapshot named '../x'"):
        call_command("keystoresnapshot", "restore", "../x", "--token-file", str(token), "--yes")


def test_the_record_on_the_storage_finds_a_snapshot_the_database_forgot(alice, packs, tmp_path):
    """A database restored from a backup older than the snapshot: the record beside it serves."""
    from keystore.snapshot_restore import keystore_snapshot_verify

    data, name = raft_snapshot_bytes(), "20261202T000000Z-123456"
    packs.put(f"keystore-snapshots/{name}.snap", [data])
    packs.meta_write(f"keystore-snapshots/{name}.json", json.dumps({
        "version": 1, "name": name, "storage_key": f"keystore-snapshots/{name}.snap", "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(), "taken_at": timezone.now().isoformat()}).encode())
    assert keystore_snapshot_verify(name).size == len(data)
    out = StringIO()
    call_command("keystoresnapshot", "verify", name, stdout=out)
    assert f"{name}: intact" in out.getvalue()


def test_the_orphan_sweep_never_touches_snapshots(alice, packs):
    from archives.gc import orphan_packs_collect

    key = "keystore-snapshots/20261201T000000Z-abcdef.snap"
    packs.put(key, [raft_snapshot_bytes()])
    sweep = orphan_packs_collect(grace=timedelta(0), retention=timedelta(0))
    assert key not in sweep.quarantined and packs.exists(key)
    assert key not in set(packs.keys(""))


def test_list_shows_every_attempt_and_whether_the_newest_is_too_old(alice):
    _haven_key(alice, days_ago=10)
    _snapshot(hours_ago=72, name="20261128T000000Z-00000c", raft_index=7, cluster_id="c-1", size=10)
    _snapshot(hours_ago=50, name="20261129T000000Z-00000d", state=State.FAILED, error="the keystore is sealed")
    out = StringIO()
    call_command("keystoresnapshot", "list", stdout=out)
    text = out.getvalue()
    assert "schedule: every 24 h, keeping 14" in text
    assert "20261128T000000Z-00000c  succeeded" in text and "raft index 7" in text
    assert "20261129T000000Z-00000d  failed" in text and "the keystore is sealed" in text
    assert "PROBLEM: the newest snapshot is too old: newest snapshot 20261128T000000Z-00000c, 72.0 h old" in text

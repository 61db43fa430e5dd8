"""Detection rules: each raises one alert naming user, device, files and vector when its threshold
is crossed, nothing below it, and the same alert (not a second one) when later runs see more."""
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from activity.detection import detection_run
from activity.detection_settings import detection_settings_update, watchlist_add
from activity.models import Alert, DetectionSettings, WatchedUser
from tests.activity.factory import device_of, file_events_insert

MB = 1_000_000


def _at(minute: int) -> datetime:
    """A time inside one hour-long window (the windows start on the hour), an hour ago or more."""
    base = (timezone.now() - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    return base + timedelta(minutes=minute)


@pytest.fixture
def laptop(alice):
    return device_of(alice, "alice-laptop")


def _run(org):
    return detection_run(organization=org)


def test_it_alerts_once_on_removable_media_above_the_threshold(org_a, alice, laptop):
    detection_settings_update(organization=org_a, actor=alice, removable_media_mb=100)
    file_events_insert(device=laptop, events=[
        {"path": f"/media/usb/report-{i}.docx", "size": 30 * MB, "vector": "removable_media", "occurred_at": _at(i)}
        for i in range(3)])
    assert _run(org_a)["raised"] == 0  # 90 MB: below
    file_events_insert(device=laptop, events=[
        {"path": "/media/usb/payroll.xlsx", "size": 20 * MB, "vector": "removable_media", "occurred_at": _at(10),
         "sha256": "ab" * 32}])
    assert _run(org_a)["raised"] == 1
    alert = Alert.objects.get(kind="removable_media")
    assert alert.subject_user == alice and alert.device == laptop and alert.severity == "high"
    assert alert.detail["vector"] == "removable_media" and alert.detail["total_bytes"] == 110 * MB
    assert alert.detail["file_count"] == 4 and alert.detail["files"][0]["path"].startswith("/media/usb/")
    assert "alice@a.example" in alert.title and "alice-laptop" in alert.title

    # More copies in the same window are the same alert, seen again; a rerun raises nothing new.
    file_events_insert(device=laptop, events=[
        {"path": "/media/usb/more.pdf", "size": 5 * MB, "vector": "removable_media", "occurred_at": _at(20)}])
    assert _run(org_a) == {"events": 1, "raised": 0, "seen_again": 1, "passes": 1}
    assert _run(org_a)["events"] == 0
    assert Alert.objects.count() == 1 and Alert.objects.get().detail["file_count"] == 5


def test_the_cursor_moves_past_what_was_read(org_a, alice, laptop):
    file_events_insert(device=laptop, events=[{"path": "/home/alice/a.txt"}, {"path": "/home/alice/b.txt"}])
    _run(org_a)
    config = DetectionSettings.objects.get(organization=org_a)
    assert config.last_event_id > 0 and _run(org_a)["events"] == 0


def test_events_still_in_flight_are_left_for_the_next_run(org_a, alice, laptop, settings):
    settings.HAVEN_DETECTION_LAG_SECONDS = 30
    file_events_insert(device=laptop, events=[{"path": "/home/alice/a.txt"}], received_ago=timedelta(0))
    assert _run(org_a)["events"] == 0
    settings.HAVEN_DETECTION_LAG_SECONDS = 0
    assert _run(org_a)["events"] == 1


def test_thresholds_are_per_organization(org_a, org_b, alice, mallory, laptop):
    detection_settings_update(organization=org_b, actor=mallory, removable_media_mb=1)
    file_events_insert(device=laptop, events=[
        {"path": "/media/usb/x.bin", "size": 50 * MB, "vector": "removable_media", "occurred_at": _at(1)}])
    assert _run(org_a)["raised"] == 0 and _run(org_b)["events"] == 0


def test_sensitive_files_in_a_cloud_sync_folder(org_a, alice, laptop):
    file_events_insert(device=laptop, events=[
        {"path": "/home/alice/Dropbox/holiday.jpg", "vector": "cloud_sync", "occurred_at": _at(1)},
        {"path": "/home/alice/Dropbox/prod-db.SQL", "vector": "cloud_sync", "occurred_at": _at(2)},
        {"path": "/home/alice/Dropbox/Confidential-plan.docx", "vector": "cloud_sync", "occurred_at": _at(3)},
        {"path": "/home/alice/work/server.pem", "occurred_at": _at(4)},  # not in a sync folder
    ])
    _run(org_a)
    alert = Alert.objects.get(kind="sensitive_cloud_upload")
    assert sorted(f["file_name"] for f in alert.detail["files"]) == ["Confidential-plan.docx", "prod-db.SQL"]
    assert alert.detail["vector"] == "cloud_sync"


def test_patterns_are_per_organization_and_can_be_turned_off(org_a, alice, laptop):
    detection_settings_update(organization=org_a, actor=alice, sensitive_patterns="")
    file_events_insert(device=laptop, events=[
        {"path": "/home/alice/Dropbox/prod.sql", "vector": "cloud_sync", "occurred_at": _at(1)}])
    _run(org_a)
    assert not Alert.objects.exists()


def test_an_archive_then_an_exfiltration_vector(org_a, alice, laptop):
    file_events_insert(device=laptop, events=[
        {"path": "/home/alice/out.zip", "category": "archive", "vector": "archive_created", "occurred_at": _at(1)}])
    _run(org_a)
    assert not Alert.objects.exists()  # an archive alone is nothing
    file_events_insert(device=laptop, events=[
        {"path": "/media/usb/out.zip", "category": "archive", "vector": "removable_media", "size": 10,
         "occurred_at": _at(5)}])
    _run(org_a)
    alert = Alert.objects.get(kind="archive_exfiltration")
    assert alert.detail["archives"] == ["out.zip"] and alert.detail["vector"] == "removable_media"
    assert [f["path"] for f in alert.detail["files"]] == ["/home/alice/out.zip", "/media/usb/out.zip"]


def test_exfiltration_long_after_the_archive_is_not_linked(org_a, alice, laptop):
    detection_settings_update(organization=org_a, actor=alice, archive_exfil_minutes=10)
    file_events_insert(device=laptop, events=[
        {"path": "/home/alice/out.zip", "vector": "archive_created", "occurred_at": _at(1)},
        {"path": "/media/usb/out.zip", "vector": "removable_media", "size": 10, "occurred_at": _at(40)}])
    _run(org_a)
    assert not Alert.objects.filter(kind="archive_exfiltration").exists()


def test_mass_deletion(org_a, alice, laptop):
    detection_settings_update(organization=org_a, actor=alice, mass_deletion_count=50)
    file_events_insert(device=laptop, events=[
        {"path": f"/home/alice/p/{i}.c", "event_type": "deleted", "occurred_at": _at(i % 50)} for i in range(49)])
    _run(org_a)
    assert not Alert.objects.exists()
    file_events_insert(device=laptop, events=[
        {"path": "/home/alice/p/last.c", "event_type": "deleted", "occurred_at": _at(55)}])
    _run(org_a)
    alert = Alert.objects.get(kind="mass_deletion")
    assert alert.detail["file_count"] == 50 and len(alert.detail["files"]) == 20  # a bounded list


def test_mass_encryption_by_vector_or_entropy(org_a, alice, laptop):
    detection_settings_update(organization=org_a, actor=alice, mass_encryption_count=30)
    file_events_insert(device=laptop, events=[
        *({"path": f"/home/alice/d/{i}.docx", "event_type": "modified", "entropy": 7.98, "category": "document",
           "occurred_at": _at(1)} for i in range(20)),
        *({"path": f"/home/alice/d/{i}.locked", "event_type": "renamed", "vector": "mass_encryption",
           "occurred_at": _at(2)} for i in range(10)),
        # photos are high-entropy by nature: they do not count
        *({"path": f"/home/alice/p/{i}.jpg", "event_type": "modified", "entropy": 7.99, "category": "image",
           "occurred_at": _at(3)} for i in range(50)),
    ])
    _run(org_a)
    alert = Alert.objects.get(kind="mass_encryption")
    assert alert.severity == "critical" and alert.detail["file_count"] == 30


def test_any_activity_of_a_watched_user(org_a, alice, bob, laptop):
    bobs = device_of(bob, "bob-laptop")
    watchlist_add(user=bob, actor=alice, source=WatchedUser.Source.CONSOLE, reason="leaving Friday")
    file_events_insert(device=laptop, events=[{"path": "/home/alice/x.txt"}])
    file_events_insert(device=bobs, events=[{"path": "/home/bob/customers.csv"}, {"path": "/home/bob/y.txt"}])
    _run(org_a)
    alert = Alert.objects.get()
    assert alert.kind == "watched_user_activity" and alert.subject_user == bob and alert.device == bobs
    assert alert.detail["file_count"] == 2


def test_windows_split_alerts_but_not_runs(org_a, alice, laptop):
    detection_settings_update(organization=org_a, actor=alice, mass_deletion_count=2)
    first = datetime(2026, 11, 30, 10, 5, tzinfo=UTC)
    file_events_insert(device=laptop, events=[
        {"path": f"/x/{i}", "event_type": "deleted", "occurred_at": first + timedelta(hours=h)}
        for h in (0, 1) for i in range(2)])
    _run(org_a)
    assert Alert.objects.filter(kind="mass_deletion").count() == 2


def test_the_command_sets_thresholds_and_the_watch_list(org_a, alice, bob, capsys):
    call_command("activityrules", "--org", "Org A", "--removable-mb", "250", "--mass-delete", "0",
                 "--patterns", "*.pem, *.kdbx", "--watch-on-scim-deactivation", "on", "--watch", "bob@a.example")
    config = DetectionSettings.objects.get(organization=org_a)
    assert (config.removable_media_mb, config.mass_deletion_count) == (250, 0)
    assert config.patterns() == ["*.pem", "*.kdbx"] and config.watch_on_scim_deactivation
    assert WatchedUser.objects.get().user == bob
    out = capsys.readouterr().out
    assert "removable-mb: 250" in out and "watch list: bob@a.example" in out


def test_the_command_refuses_unknown_people_and_orgs(org_a):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No user"):
        call_command("activityrules", "--org", "Org A", "--watch", "nobody@a.example")
    with pytest.raises(CommandError, match="No organization"):
        call_command("activityrules", "--org", "Nope")

"""File activity from the endpoint to the SOC, for real: an agent watcher process sees a copy to a
fake removable-media folder and a burst of high-entropy rewrites; the server stores the events,
the detection rules raise exactly one alert for each (and none again on the next run), and both
alerts are visible in the public API, on the console's alerts page and at a syslog collector."""
import os
import shutil
import time

import httpx
import pytest
from django.test import Client

from accounts.api_clients import api_client_create
from accounts.models import Device
from activity.detection import detection_run
from activity.detection_settings import detection_settings_update
from activity.export import export_run_all
from activity.export.targets import export_target_create
from activity.models import Alert, FileEvent
from tests.activity.siem_peers import syslog_collector
from tests.e2e.conftest import enroll_agent
from tests.e2e.test_activity_agent import _start, _stop, _watching
from tests.support import wait_until

pytestmark = pytest.mark.slow
MiB = 1024 * 1024


@pytest.fixture
def collector():
    peer = syslog_collector()
    yield peer
    peer.stop()


def test_an_agent_copy_and_a_burst_of_encryption_become_one_alert_each_everywhere(live_servers, alice, tmp_path,
                                                                                 settings, collector):
    settings.HAVEN_DETECTION_LAG_SECONDS = 0
    server = live_servers(workers=1)
    home, usb = tmp_path / "home", tmp_path / "media" / "alice" / "USBSTICK"
    home.mkdir()
    usb.mkdir(parents=True)
    org = alice.organization
    detection_settings_update(organization=org, actor=alice, removable_media_mb=1, mass_encryption_count=10)
    export_target_create(organization=org, actor=alice, name="soc", kind="syslog", host="127.0.0.1",
                         port=collector.port, tls=False, payload="json")
    config = enroll_agent(server, tmp_path / "agent", alice, "laptop")
    device = Device.objects.get(name="laptop")
    secret = home / "payroll.xlsx"
    secret.write_bytes(os.urandom(2 * MiB))
    documents = [home / f"contract-{index:02d}.docx" for index in range(15)]
    for path in documents:
        path.write_text("Terms and conditions, in plain words. " * 300)

    log = tmp_path / "watch.log"
    agent = _start(config, log, "watch", str(home), "--removable-root", str(tmp_path / "media"),
                   "--cloud-root", str(tmp_path / "none"), "--batch-seconds", "1", "--mass-threshold", "10")
    try:
        wait_until(lambda: _watching(log), timeout=30, what="the watcher to start")
        for path in documents:  # seen once as text, so the jump in entropy is measured
            path.write_text("Terms and conditions, revised. " * 300)
        wait_until(lambda: FileEvent.objects.filter(device=device, event_type="modified").count() >= 15,
                   timeout=60, what="the plain edits")
        shutil.copy(secret, usb / "payroll.xlsx")
        for path in documents:
            path.write_bytes(os.urandom(64 * 1024))
        wait_until(lambda: FileEvent.objects.filter(device=device, event_type="modified").count() >= 30,
                   timeout=60, what="the encrypted rewrites")
        wait_until(lambda: FileEvent.objects.filter(device=device, vector="removable_media").exists(),
                   timeout=60, what="the copy to removable media")
        time.sleep(2)  # a straggler of the burst, if any, arrives before the rules run
    finally:
        _stop(agent, log)

    detection_run(organization=org)
    detection_run(organization=org)  # a second run finds nothing new: no second alert
    alerts = {alert.kind: alert for alert in Alert.objects.filter(organization=org)}
    assert sorted(alerts) == ["mass_encryption", "removable_media"]
    assert Alert.objects.filter(organization=org).count() == 2
    copy = alerts["removable_media"]
    assert copy.device == device and copy.subject_user == alice and copy.detail["vector"] == "removable_media"
    assert [f["path"] for f in copy.detail["files"]] == [str(usb / "payroll.xlsx")]
    assert alerts["mass_encryption"].detail["file_count"] >= 10

    # the public API (a SOAR tool's key)
    _client, key = api_client_create(organization=org, name="soar", scopes=["alerts:read"], created_by=alice)
    listed = httpx.get(f"{server.url}/api/v1/public/alerts", headers={"Authorization": f"Bearer {key}"}).json()
    assert sorted(item["kind"] for item in listed["results"]) == ["mass_encryption", "removable_media"]

    # the console's alerts page
    browser = Client()
    browser.force_login(alice)
    page = browser.get("/alerts/").content.decode()
    for alert in alerts.values():
        assert f"/alerts/{alert.uuid}/" in page and "to removable media" in page and "are being encrypted" in page

    # the SIEM
    export_run_all()
    wait_until(lambda: len(collector.messages) >= 2, timeout=10, what="two syslog messages")
    assert len(collector.messages) == 2
    assert any(str(copy.uuid) in message for message in collector.messages)
    assert any(str(alerts["mass_encryption"].uuid) in message for message in collector.messages)

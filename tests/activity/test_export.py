"""SIEM export against real local peers: syslog RFC 5424 over TCP and over TLS (test CA), CEF and
JSON payloads; signed JSON webhooks; retries with backoff, then a dead letter that can be retried."""
import json
import re
import ssl
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from activity.alerts import alert_raise
from activity.export import MAX_ATTEMPTS, export_run_all
from activity.export.targets import ExportTargetInvalid, export_delivery_retry, export_target_create
from activity.export.webhook import signature, signature_valid
from activity.models import ExportDelivery, ExportTarget
from tests.activity.factory import device_of, file_events_insert
from tests.activity.siem_peers import make_test_ca, syslog_collector, webhook_receiver
from tests.support import wait_until

STORAGE_KEY = "test-storage-key-for-webhook-secrets-0123456789"


@pytest.fixture(autouse=True)
def _storage_key(settings):
    settings.HAVEN_STORAGE_KEY = STORAGE_KEY


@pytest.fixture
def laptop(alice):
    return device_of(alice, "alice-laptop")


def _alert(org, alice, laptop, key="removable_media:1"):
    return alert_raise(organization=org, kind="removable_media", dedup_key=key, severity="high",
                       title="alice@a.example copied 120 MB to removable media on alice-laptop",
                       subject_user=alice, device=laptop,
                       detail={"vector": "removable_media", "file_count": 1, "files": [
                           {"path": "/media/usb/pay|roll=1.xlsx", "file_name": "pay|roll=1.xlsx", "size": 120_000_000,
                            "sha256": "ab" * 32}]})[0]


@pytest.fixture
def collector():
    peer = syslog_collector()
    yield peer
    peer.stop()


@pytest.fixture
def tls_collector(tmp_path):
    ca_pem, cert, key = make_test_ca(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    peer = syslog_collector(context=context)
    peer.ca_pem = ca_pem
    yield peer
    peer.stop()


def _syslog(org, port, **fields):
    return export_target_create(organization=org, actor=None, name=fields.pop("name", "siem"), kind="syslog",
                                host="127.0.0.1", port=port, **fields)[0]


def test_alerts_go_to_a_tcp_syslog_collector_as_cef(org_a, alice, laptop, collector):
    _syslog(org_a, collector.port, tls=False, payload="cef")
    alert = _alert(org_a, alice, laptop)
    assert export_run_all() == {"queued": 1, "sent": 1, "failed": 0, "dead": 0}
    wait_until(lambda: collector.messages, timeout=5, what="syslog message")
    (message,) = collector.messages
    # RFC 5424: <PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG; local0 (16) * 8 + error (3) = 131
    head, cef = message.split(" - alert - ", 1)
    assert head.startswith("<131>1 ") and head.endswith(" haven")
    assert cef.startswith("CEF:0|Haven|Haven|1.0|removable_media|alice@a.example copied 120 MB")
    assert f"externalId={alert.uuid}" in cef and "suser=alice@a.example" in cef and "dhost=alice-laptop" in cef
    assert r"fname=pay|roll\=1.xlsx" in cef and "cs1=removable_media" in cef and "|8|" in cef
    assert export_run_all()["queued"] == 0  # the cursor moved: sent once


def test_alerts_and_events_over_tls_as_json(org_a, alice, laptop, tls_collector):
    _syslog(org_a, tls_collector.port, tls=True, ca_pem=tls_collector.ca_pem, payload="json", include_events=True)
    file_events_insert(device=laptop, events=[{"path": f"/media/usb/{i}.txt", "vector": "removable_media"}
                                              for i in range(3)])
    _alert(org_a, alice, laptop)
    assert export_run_all()["sent"] == 2  # one alert, one chunk of events
    wait_until(lambda: len(tls_collector.messages) == 4, timeout=5, what="4 syslog messages")
    records = [json.loads(re.fullmatch(r"<\d+>1 \S+ \S+ haven - (alert|event) - (.*)", m, re.S)[2])
               for m in tls_collector.messages]
    assert sorted(r["type"] for r in records) == ["alert", "event", "event", "event"]
    event = next(r for r in records if r["type"] == "event")
    assert event["user"] == "alice@a.example" and event["vector"] == "removable_media"


def test_a_collector_with_an_untrusted_certificate_is_refused(org_a, alice, laptop, tls_collector, tmp_path):
    (tmp_path / "other").mkdir()
    other_ca, _, _ = make_test_ca(tmp_path / "other")
    _syslog(org_a, tls_collector.port, tls=True, ca_pem=other_ca)
    _alert(org_a, alice, laptop)
    assert export_run_all()["failed"] == 1
    delivery = ExportDelivery.objects.get()
    assert delivery.status == "pending" and "certificate" in delivery.last_error.lower()
    assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=50)  # backed off
    assert tls_collector.messages == []


def test_failures_are_retried_then_dead_lettered_then_retried_by_an_admin(org_a, alice, laptop, collector):
    port = collector.port
    collector.stop()  # nobody listens
    _syslog(org_a, port, tls=False)
    _alert(org_a, alice, laptop)
    for _attempt in range(MAX_ATTEMPTS):
        ExportDelivery.objects.update(next_attempt_at=timezone.now())
        export_run_all()
    delivery = ExportDelivery.objects.get()
    assert delivery.status == "dead" and delivery.attempts == MAX_ATTEMPTS and delivery.last_error
    again = syslog_collector()
    try:
        ExportTarget.objects.update(port=again.port)
        export_delivery_retry(delivery=delivery, actor=alice)
        assert export_run_all()["sent"] == 1
        wait_until(lambda: again.messages, timeout=5, what="the retried message")
    finally:
        again.stop()


def test_webhooks_are_signed_and_the_receiver_can_check_them(org_a, alice, laptop):
    receiver = webhook_receiver()
    try:
        target, secret = export_target_create(organization=org_a, actor=alice, name="soar", kind="webhook",
                                              url=receiver.url)
        assert secret.startswith("hvw_") and secret.encode() not in bytes(target.secret_sealed)
        receiver.secret = secret.encode()
        alert = _alert(org_a, alice, laptop)
        assert export_run_all()["sent"] == 1
        (headers, body, valid), = receiver.received
        assert valid and json.loads(body)["records"][0]["uuid"] == str(alert.uuid)
        assert headers["X-Haven-Delivery"] == str(ExportDelivery.objects.get().uuid)
        # A replay later than the tolerance, or a changed body, does not verify.
        stamp = int(time.time()) - 3600
        assert not signature_valid(receiver.secret, signature(receiver.secret, stamp, body), body)
        assert not signature_valid(receiver.secret, headers["X-Haven-Signature"], body + b" ")
    finally:
        receiver.stop()


def test_a_webhook_that_refuses_is_retried(org_a, alice, laptop):
    receiver = webhook_receiver()
    try:
        _, secret = export_target_create(organization=org_a, actor=alice, name="soar", kind="webhook",
                                         url=receiver.url)
        receiver.secret, receiver.status = secret.encode(), 503
        _alert(org_a, alice, laptop)
        assert export_run_all()["failed"] == 1
        assert "HTTP 503" in ExportDelivery.objects.get().last_error
        receiver.status = 200
        ExportDelivery.objects.update(next_attempt_at=timezone.now())
        assert export_run_all()["sent"] == 1 and len(receiver.received) == 2
    finally:
        receiver.stop()


@pytest.mark.parametrize("fields,message", [
    ({"kind": "webhook", "url": "http://siem.example.com/hook"}, "https"),
    ({"kind": "webhook", "url": "https://siem.example.com/hook", "payload": "cef"}, "JSON"),
    ({"kind": "syslog", "host": "siem.example.com"}, "port"),
    ({"kind": "syslog", "host": "siem.example.com", "port": 6514, "ca_pem": "not a pem"}, "PEM"),
    ({"kind": "carrier-pigeon"}, "kind"),
])
def test_bad_targets_are_refused_and_nothing_is_stored(org_a, alice, fields, message):
    with pytest.raises(ExportTargetInvalid, match=message):
        export_target_create(organization=org_a, actor=alice, name="bad", **fields)
    assert not ExportTarget.objects.exists()


def test_a_webhook_needs_a_storage_key_in_production(org_a, alice, settings):
    settings.HAVEN_STORAGE_KEY = ""
    with pytest.raises(ExportTargetInvalid, match="HAVEN_STORAGE_KEY"):
        export_target_create(organization=org_a, actor=alice, name="x", kind="webhook", url="https://x.example/")
    assert not ExportTarget.objects.exists()


def test_only_admins_configure_export(org_a, bob):
    from accounts.services import PermissionRefused

    with pytest.raises(PermissionRefused):
        export_target_create(organization=org_a, actor=bob, name="x", kind="syslog", host="h", port=514)


def test_the_command_adds_lists_and_removes_targets(org_a, capsys):
    call_command("activityexport", "--org", "Org A", "--add", "siem", "--kind", "syslog", "--host", "127.0.0.1",
                 "--port", "6514", "--payload", "cef", "--events")
    target = ExportTarget.objects.get()
    assert (target.kind, target.payload, target.tls, target.include_events) == ("syslog", "cef", True, True)
    call_command("activityexport", "--org", "Org A", "--add", "hook", "--kind", "webhook",
                 "--url", "https://soar.example.com/in")
    out = capsys.readouterr().out
    assert "secret (shown once): hvw_" in out and "siem  syslog/cef" in out
    call_command("activityexport", "--org", "Org A", "--remove", "siem")
    assert list(ExportTarget.objects.values_list("name", flat=True)) == ["hook"]

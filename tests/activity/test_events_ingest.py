"""POST /api/v1/events: a batch is stored whole under the calling device, or refused whole with a
clear 4xx (malformed, oversized, future-dated, another device's ids) and nothing stored."""
import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from accounts.models import Device
from activity.ingest import MAX_COMPRESSED, batch_encode
from activity.models import EventBatch, FileEvent


def _event(**extra):
    return {"event_id": str(uuid.uuid4()), "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "type": "created", "path": "/home/alice/Documents/plan.docx", "dest_path": None, "size": 1234,
            "sha256": "ab" * 32, "category": "document", "mime_type": "application/msword",
            "vector": "removable_media", "entropy": 4.5, "os_user": "alice", "process": None, **extra}


def _batch(n=3, **extra):
    return {"batch_id": str(uuid.uuid4()), "events": [_event() for _ in range(n)], **extra}


def _post(client, body, *, gz=True, raw=None, **headers):
    data = raw if raw is not None else (batch_encode(body) if gz else json.dumps(body).encode())
    if gz and raw is None:
        headers.setdefault("HTTP_CONTENT_ENCODING", "gzip")
    return client.generic("POST", "/api/v1/events", data, content_type="application/json", **headers)


def _nothing_stored():
    return FileEvent.objects.count() == 0 and EventBatch.objects.count() == 0


@pytest.fixture
def laptop(enrolled, alice):
    return enrolled(alice, "laptop")


def test_it_stores_a_batch_under_the_devices_org_and_owner(laptop, alice):
    body = _batch(3)
    body["events"][1].update(type="renamed", dest_path="/media/usb/plan.docx")
    response = _post(laptop, body)
    assert response.status_code == 201, response.content
    assert response.json() == {"batch_id": body["batch_id"], "accepted": 3, "duplicate": False}
    device = Device.objects.get(uuid=laptop.enrollment["device_id"])
    events = FileEvent.objects.filter(batch__batch_id=body["batch_id"])
    assert {str(e.event_id) for e in events} == {e["event_id"] for e in body["events"]}
    assert {(e.organization_id, e.device_id, e.user_id) for e in events} == {(alice.organization_id, device.id, alice.id)}
    renamed = events.get(event_type="renamed")
    assert renamed.file_name == "plan.docx" and renamed.dest_path == "/media/usb/plan.docx"
    assert renamed.vector == "removable_media" and renamed.sha256 == "ab" * 32


def test_plain_json_without_gzip_is_accepted(laptop):
    response = _post(laptop, _batch(2), gz=False)
    assert response.status_code == 201 and response.json()["accepted"] == 2


def test_a_resent_batch_is_a_duplicate_and_stores_nothing_more(laptop):
    body = _batch(5)
    assert _post(laptop, body).status_code == 201
    again = _post(laptop, body)
    assert again.status_code == 200
    assert again.json() == {"batch_id": body["batch_id"], "accepted": 0, "duplicate": True}
    assert FileEvent.objects.count() == 5 and EventBatch.objects.count() == 1


def test_an_event_resent_in_another_batch_is_not_stored_twice(laptop):
    first = _batch(2)
    assert _post(laptop, first).status_code == 201
    second = {"batch_id": str(uuid.uuid4()), "events": [first["events"][0], _event()]}
    response = _post(laptop, second)
    assert response.status_code == 201 and response.json()["accepted"] == 1
    assert FileEvent.objects.count() == 3


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda e: e.update(event_id="not-a-uuid"), "event_id"),
    (lambda e: e.update(type="copied"), "type"),
    (lambda e: e.pop("path"), "path"),
    (lambda e: e.update(path="x" * 4097), "path"),
    (lambda e: e.update(path="/a\x00b"), "path"),
    (lambda e: e.update(size=-1), "size"),
    (lambda e: e.update(size="12"), "size"),
    (lambda e: e.update(sha256="XYZ"), "sha256"),
    (lambda e: e.update(vector="carrier_pigeon"), "vector"),
    (lambda e: e.update(entropy=9.5), "entropy"),
    (lambda e: e.update(occurred_at="2026-12-01T12:00:00"), "occurred_at"),  # no zone
    (lambda e: e.update(occurred_at=(datetime.now(UTC) + timedelta(minutes=10)).isoformat()), "occurred_at"),
    (lambda e: e.update(occurred_at=(datetime.now(UTC) - timedelta(days=31)).isoformat()), "occurred_at"),
    (lambda e: e.update(device_id=str(uuid.uuid4())), "device_id"),
    (lambda e: e.update(type="renamed"), "dest_path"),
])
def test_one_bad_event_refuses_the_whole_batch(laptop, mutate, field):
    body = _batch(4)
    mutate(body["events"][2])
    response = _post(laptop, body)
    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["code"] == "invalid_events" and answer["index"] == 2 and answer["field"] == field, answer
    assert _nothing_stored()


def test_future_dated_batch_is_refused_with_a_clear_message(laptop):
    body = _batch(1)
    body["events"][0]["occurred_at"] = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    answer = _post(laptop, body).json()
    assert "in the future" in answer["detail"] and answer["detail"].startswith("events[0].occurred_at")
    assert _nothing_stored()


@pytest.mark.parametrize(("raw", "code"), [
    (b"{not json", "parse_error"),
    (b"[1, 2]", "invalid_batch"),
    (json.dumps({"batch_id": "nope", "events": []}).encode(), "invalid_batch"),
    (json.dumps({"batch_id": "6f9619ff-8b86-4011-b42d-00c04fc964ff", "events": {}}).encode(), "invalid_batch"),
    (b"\xff\xfe garbage", "parse_error"),
])
def test_malformed_bodies_are_refused(laptop, raw, code):
    response = _post(laptop, None, raw=raw)
    assert response.status_code == 400 and response.json()["code"] == code, response.content
    assert _nothing_stored()


def test_a_body_that_is_not_gzip_while_it_says_so_is_refused(laptop):
    response = _post(laptop, None, raw=b"plain bytes", HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 400 and response.json()["code"] == "parse_error"
    assert _nothing_stored()


def test_a_batch_naming_its_device_or_organization_is_refused(laptop, mallory, enrolled):
    other = Device.objects.get(uuid=enrolled(mallory, "mallory-pc").enrollment["device_id"])
    response = _post(laptop, _batch(2, device_id=str(other.uuid)))
    assert response.status_code == 400 and response.json()["code"] == "invalid_batch"
    assert response.json()["field"] == "device_id"
    assert _nothing_stored()


def test_another_devices_batch_id_or_event_ids_are_a_conflict(laptop, enrolled, mallory, bob):
    body = _batch(3)
    assert _post(laptop, body).status_code == 201
    for thief in (enrolled(bob, "bobs-pc"), enrolled(mallory, "mallory-pc")):
        replay = _post(thief, body)
        assert replay.status_code == 409 and replay.json()["code"] == "batch_conflict"
        shadow = _post(thief, {"batch_id": str(uuid.uuid4()), "events": [_event(), body["events"][0]]})
        assert shadow.status_code == 409 and shadow.json()["code"] == "event_conflict"
    assert FileEvent.objects.count() == 3 and EventBatch.objects.count() == 1


def test_oversized_batches_are_refused(laptop):
    too_many = _batch(5001)
    response = _post(laptop, too_many)
    assert response.status_code == 413 and response.json()["code"] == "batch_too_large"
    # A compressed body over 1 MiB is refused from its Content-Length, before it is read.
    big = _post(laptop, None, raw=b"x" * (MAX_COMPRESSED + 1), HTTP_CONTENT_ENCODING="gzip")
    assert big.status_code == 413 and big.json()["code"] == "batch_too_large"
    # A gzip bomb: small on the wire, over 8 MiB once inflated.
    bomb = gzip.compress(b'{"batch_id": "' + b" " * (9 * 1024 * 1024) + b'"}')
    assert len(bomb) < MAX_COMPRESSED
    response = _post(laptop, None, raw=bomb, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413 and response.json()["code"] == "batch_too_large"
    assert _nothing_stored()


def test_it_needs_a_device_token_and_json(api, laptop):
    assert _post(api, _batch(1)).status_code == 401
    response = laptop.generic("POST", "/api/v1/events", batch_encode(_batch(1)), content_type="text/plain",
                              HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 415
    response = _post(laptop, None, raw=b"{}", HTTP_CONTENT_ENCODING="br")
    assert response.status_code == 415
    assert _nothing_stored()

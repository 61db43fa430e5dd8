"""Hostile input on the agent API is a 4xx with a JSON error body, never a 500 or an HTML page.

The clients here do not re-raise server exceptions: a crash shows up as the 500 a real agent would
see. The same inputs are sent over real HTTP to gunicorn in tests/e2e/test_schemathesis.py.
"""
import pytest
from rest_framework.test import APIClient

from archives.models import BackupRun

NESTED = b"[" * 1000
BEYOND_64_BITS = 2 ** 64


def _json_error(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert body["detail"] and body["code"], body
    return body


@pytest.fixture
def anonymous():
    return APIClient(raise_request_exception=False)


@pytest.fixture
def device(enrolled, alice):
    client = enrolled(alice)
    client.raise_request_exception = False
    return client


def test_deeply_nested_json_on_enroll_without_authentication_is_400(anonymous, db):
    response = anonymous.post("/api/v1/enroll", data=NESTED, content_type="application/json")
    assert _json_error(response, 400)["code"] == "parse_error"


@pytest.mark.parametrize("endpoint", ["versions", "blocks/missing", "blocks/fetch", "runs/{run}/finish"])
def test_deeply_nested_json_on_archive_endpoints_is_400(device, endpoint):
    archive = device.enrollment["archive_id"]
    run = device.post(f"/api/v1/archives/{archive}/runs").json()["run_id"]
    response = device.post(f"/api/v1/archives/{archive}/{endpoint.format(run=run)}", data=NESTED,
                           content_type="application/json")
    assert _json_error(response, 400)["code"] == "parse_error"


def test_deeply_nested_json_on_key_escrow_is_400(device):
    response = device.post("/api/v1/keys/escrow", data=NESTED, content_type="application/json")
    assert _json_error(response, 400)["code"] == "parse_error"


@pytest.mark.parametrize("counter", ["files_scanned", "bytes_scanned", "files_changed", "bytes_sent"])
def test_a_counter_beyond_64_bits_is_400_and_the_run_stays_running(device, counter):
    archive = device.enrollment["archive_id"]
    run = device.post(f"/api/v1/archives/{archive}/runs").json()["run_id"]
    response = device.post(f"/api/v1/archives/{archive}/runs/{run}/finish",
                           {"status": "completed", counter: BEYOND_64_BITS}, format="json")
    assert counter in _json_error(response, 400)["errors"]
    assert BackupRun.objects.get(uuid=run).status == BackupRun.Status.RUNNING
    largest = device.post(f"/api/v1/archives/{archive}/runs/{run}/finish",
                          {"status": "completed", counter: 2 ** 63 - 1}, format="json")
    assert largest.status_code == 200
    assert getattr(BackupRun.objects.get(uuid=run), counter) == 2 ** 63 - 1


@pytest.mark.parametrize("at", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
def test_a_point_in_time_outside_the_calendar_in_utc_is_400(device, at):
    archive = device.enrollment["archive_id"]
    response = device.get(f"/api/v1/archives/{archive}/versions", {"at": at})
    assert "query" in _json_error(response, 400)["errors"]


@pytest.mark.parametrize("after", [str(2 ** 63), str(BEYOND_64_BITS)])
def test_a_cursor_beyond_64_bits_is_400(device, after):
    archive = device.enrollment["archive_id"]
    response = device.get(f"/api/v1/archives/{archive}/versions", {"after": after})
    assert "query" in _json_error(response, 400)["errors"]


@pytest.mark.parametrize("path_id", ["\x00", "not-a-path-id", "A" * 64])
def test_a_malformed_path_id_is_400(device, path_id):
    archive = device.enrollment["archive_id"]
    response = device.get(f"/api/v1/archives/{archive}/versions", {"path_id": path_id})
    assert "path_id" in _json_error(response, 400)["errors"]


def test_an_enrollment_body_over_the_upload_limit_is_413_json(anonymous, db, settings):
    body = b'{"device_name": "' + b"a" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1) + b'"}'
    response = anonymous.post("/api/v1/enroll", data=body, content_type="application/json")
    assert _json_error(response, 413)["code"] == "request_too_large"


def test_a_form_with_too_many_fields_is_400_json(anonymous, db, settings):
    body = "&".join(f"f{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    response = anonymous.post("/api/v1/enroll", data=body, content_type="application/x-www-form-urlencoded")
    assert _json_error(response, 400)["code"] == "too_many_fields"


def test_an_unknown_api_path_is_404_json(device):
    assert _json_error(device.get("/api/v1/no-such-endpoint"), 404)["code"] == "not_found"



def test_an_unexpected_server_error_is_still_a_json_body(device, monkeypatch):
    """The safety net under every /api/ answer: a bug is a 500 the agent can parse, not HTML."""
    def broken(user):
        raise RuntimeError("a bug")

    monkeypatch.setattr("agentapi.apis.keys.escrowed_key_of", broken)
    assert _json_error(device.get("/api/v1/keys/mine"), 500)["code"] == "server_error"

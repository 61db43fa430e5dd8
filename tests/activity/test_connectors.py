"""Cloud-service connectors against a local HTTP server serving recorded sample payloads of the
Office 365 Management Activity API and the Admin SDK Reports API (drive): events mapped and stored
once, the cursor kept, 429 backed off by Retry-After, credentials sealed."""
import http.server
import json
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import call_command
from django.utils import timezone

from activity.connectors import cloud_connector_create, cloud_connector_pull
from activity.models import CloudConnector, FileEvent

SAMPLES = Path(__file__).parent / "connector_samples"
STORAGE_KEY = "test-storage-key-for-connector-secrets-0123456789"


@pytest.fixture(autouse=True)
def _storage_key(settings):
    settings.HAVEN_STORAGE_KEY = STORAGE_KEY


class Service:
    """The recorded answers, plus what was asked; `throttle` answers that many requests with 429."""

    def __init__(self):
        self.requests, self.throttle = [], 0
        handler = self._handler()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _answer(self, method: str, path: str, query: dict, headers) -> tuple[int, dict, bytes]:
        self.requests.append((method, path, query, headers.get("Authorization", "")))
        if self.throttle:
            self.throttle -= 1
            return 429, {"Retry-After": "120"}, b'{"error": "throttled"}'
        if path == "/oauth2/token":
            return 200, {}, b'{"access_token": "m365-token", "token_type": "Bearer", "expires_in": 3599}'
        if headers.get("Authorization") not in ("Bearer m365-token", "Bearer gdrive-token"):
            return 401, {}, b'{"error": "unauthorized"}'
        if path.endswith("/subscriptions/content"):
            return 200, {}, (SAMPLES / "m365_content.json").read_text().replace("{BASE}", self.base).encode()
        if "/activity/feed/audit/" in path:
            return 200, {}, (SAMPLES / "m365_blob.json").read_bytes()
        if path.endswith("/applications/drive"):
            page = "gdrive_page2.json" if query.get("pageToken") else "gdrive_page1.json"
            return 200, {}, (SAMPLES / page).read_bytes()
        return 404, {}, b"{}"

    def _handler(self):
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self, method):
                parts = urlsplit(self.path)
                if method == "POST":
                    self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, headers, body = service._answer(method, parts.path, {
                    k: v[0] for k, v in parse_qs(parts.query).items()}, self.headers)
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._reply("GET")

            def do_POST(self):
                self._reply("POST")

            def log_message(self, *args):
                pass

        return Handler


@pytest.fixture
def service():
    running = Service()
    yield running
    running.server.shutdown()
    running.server.server_close()


def _m365(org, service):
    return cloud_connector_create(organization=org, kind="m365", name="m365", base_url=service.base,
                                  settings={"tenant_id": "4c7a1b2e-0000-4a3b-9c2d-1e0f9a8b7c6d",
                                            "token_url": f"{service.base}/oauth2/token"},
                                  credentials={"client_id": "app", "client_secret": "s3cret-value"})


def test_m365_audit_records_become_cloud_service_events_once(org_a, alice, bob, service):
    connector = _m365(org_a, service)
    assert b"s3cret-value" not in bytes(connector.credentials_sealed)
    result = cloud_connector_pull(connector_id=connector.pk)
    assert result["stored"] == 3  # FileAccessed is not file activity Haven records
    events = {e.process: e for e in FileEvent.objects.all()}
    upload = events["OneDrive:FileUploaded"]
    assert upload.user == alice and upload.device is None and upload.vector == "cloud_service"
    assert upload.event_type == "created" and upload.file_name == "customers.xlsx"
    assert upload.path == "https://acme-my.sharepoint.com/personal/alice_a_example/Documents/Exports/customers.xlsx"
    assert events["OneDrive:FileRenamed"].dest_path.endswith("/Documents/Exports/holiday-photos.xlsx")
    assert events["SharePoint:FileDeleted"].user is None  # not a person of the organization
    connector.refresh_from_db()
    assert connector.cursor and connector.last_error == ""
    # The same records served again are not stored twice.
    CloudConnector.objects.filter(pk=connector.pk).update(cursor="")
    cloud_connector_pull(connector_id=connector.pk)
    assert FileEvent.objects.count() == 3


def test_google_drive_activities_are_paged_and_mapped(org_a, alice, bob, service):
    connector = cloud_connector_create(organization=org_a, kind="google_drive", name="drive", base_url=service.base,
                                       credentials={"token": "gdrive-token"})
    assert cloud_connector_pull(connector_id=connector.pk)["stored"] == 2  # download and trash; a view is not
    download = FileEvent.objects.get(process="drive:download")
    assert download.user == alice and download.file_name == "Q4 pipeline.xlsx"
    assert FileEvent.objects.get(process="drive:trash").event_type == "deleted"
    assert [q.get("pageToken") for _, p, q, _ in service.requests] == [None, "A:1701378760004000:-3398124469982761032:drive:C03az79cb"]
    connector.refresh_from_db()
    assert connector.cursor == "2026-11-30T21:15:02.311000+00:00"
    cloud_connector_pull(connector_id=connector.pk)
    assert service.requests[-1][2]["startTime"] == "2026-11-30T21:15:02.311000Z"  # from the cursor
    assert FileEvent.objects.count() == 2


def test_a_429_backs_off_by_retry_after(org_a, service):
    connector = _m365(org_a, service)
    service.throttle = 1
    assert cloud_connector_pull(connector_id=connector.pk)["rate_limited"] == 120
    connector.refresh_from_db()
    assert connector.failures == 1 and "rate limited" in connector.last_error
    assert 100 < (connector.next_pull_at - timezone.now()).total_seconds() <= 120
    asked = len(service.requests)
    assert cloud_connector_pull(connector_id=connector.pk)["skipped"]  # still backing off: nothing asked
    assert len(service.requests) == asked and not FileEvent.objects.exists()
    CloudConnector.objects.filter(pk=connector.pk).update(next_pull_at=timezone.now())
    assert cloud_connector_pull(connector_id=connector.pk)["stored"] == 3


def test_the_command_adds_and_pulls(org_a, alice, service, tmp_path, capsys):
    credentials = tmp_path / "creds.json"
    credentials.write_text(json.dumps({"token": "gdrive-token"}))
    call_command("activityconnector", "--org", "Org A", "--add", "drive", "--kind", "google_drive",
                 "--base-url", service.base, "--credentials-file", str(credentials), "--pull")
    assert "drive: {'stored': 2}" in capsys.readouterr().out

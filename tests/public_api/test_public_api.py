"""The public API (issue 9 item 6, DESIGN §12): scoped hashed keys, 401/403/404, cursor pages,
a rate limit per client, an audit row per call, and the `manage.py apiclient` command."""
import hashlib
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.api_clients import API_KEY_PREFIX, ApiClientInvalid, api_client_create, api_client_revoke
from accounts.models import ApiClient, AuditEvent, Role
from archives.models import RestoreJob
from archives.restores import restore_job_request
from keystore.models import KeyAccess
from tests.public_api.conftest import device_with_archive

ENDPOINTS = [  # (method, path template, scope)
    ("get", "/api/v1/public/devices", "devices:read"),
    ("get", "/api/v1/public/archives/{archive}/runs", "archives:read"),
    ("get", "/api/v1/public/audit", "audit:read"),
    ("post", "/api/v1/public/restores", "restores:write"),
    ("get", "/api/v1/public/restores/{restore}", "restores:write"),
    ("get", "/api/v1/public/restores/{restore}/download", "restores:write"),
    ("get", "/api/v1/public/events", "events:read"),
]


def _call(http, method, template, archive="00000000-0000-0000-0000-000000000000",
          restore="00000000-0000-0000-0000-000000000000", **kwargs):
    path = template.format(archive=archive, restore=restore)
    if method == "post":
        return http.post(path, kwargs.pop("data", {"archive": str(archive)}), format="json")
    return http.get(path, kwargs.pop("data", None))


def _json_error(response, status, code=None):
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert {"detail", "code"} <= set(body)
    if code:
        assert body["code"] == code, body
    return body


# --- keys --------------------------------------------------------------------------------------

def test_the_key_is_returned_once_and_only_its_hash_is_stored(org_a, alice):
    client, raw = api_client_create(organization=org_a, name="SOAR", scopes=["devices:read"], created_by=alice)
    assert raw.startswith(API_KEY_PREFIX) and len(raw) > 40
    stored = ApiClient.objects.filter(pk=client.pk).values().get()
    assert stored["key_hash"] == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in repr(stored)  # neither the key nor anything that contains it
    assert stored["key_prefix"] == raw[:10]
    event = AuditEvent.objects.get(action="api_client.create")
    assert (event.actor, event.target_uuid, event.detail) == (alice, client.uuid,
                                                              {"name": "SOAR", "scopes": ["devices:read"]})
    assert raw not in repr(list(AuditEvent.objects.values()))


def test_unknown_scopes_and_restores_without_an_administrator_are_refused(org_a, bob):
    with pytest.raises(ApiClientInvalid, match="unknown scope"):
        api_client_create(organization=org_a, name="x", scopes=["devices:read", "root"])
    with pytest.raises(ApiClientInvalid, match="at least one"):
        api_client_create(organization=org_a, name="x", scopes=[])
    with pytest.raises(ApiClientInvalid, match="restores:write"):
        api_client_create(organization=org_a, name="x", scopes=["restores:write"], created_by=bob)
    assert not ApiClient.objects.exists()


def test_no_unknown_malformed_or_revoked_key_gets_in(api, key_for, org_a, alice):
    client, http = key_for(org_a, scopes=["devices:read"])
    assert http.get("/api/v1/public/devices").status_code == 200
    _json_error(api.get("/api/v1/public/devices"), 401)
    assert api.get("/api/v1/public/devices")["WWW-Authenticate"].startswith("Bearer")
    for header in [f"Bearer {API_KEY_PREFIX}nope", "Bearer", f"Bearer {http.key} extra", f"Bearer {http.key}x",
                   f"Bearer {http.key[len(API_KEY_PREFIX):]}"]:
        api.credentials(HTTP_AUTHORIZATION=header)
        _json_error(api.get("/api/v1/public/devices"), 401)
    api_client_revoke(client=client, actor=alice)
    _json_error(http.get("/api/v1/public/devices"), 401, "invalid_key")
    assert AuditEvent.objects.filter(action="api_client.revoke", actor=alice, target_uuid=client.uuid).count() == 1


def test_a_device_token_is_not_an_api_key(enrolled, alice):
    device = enrolled(alice)
    _json_error(device.get("/api/v1/public/devices"), 401)


def test_each_endpoint_needs_its_own_scope(key_for, org_a, alice):
    for method, template, scope in ENDPOINTS:
        others = [s for _, _, s in ENDPOINTS if s != scope] + ["users:write"]
        _, http = key_for(org_a, scopes=others, created_by=alice)
        body = _json_error(_call(http, method, template), 403, "insufficient_scope")
        assert scope in body["detail"]


# --- organization scoping ------------------------------------------------------------------------

def test_another_organizations_archive_and_restore_are_not_found(full, key_for, org_b, mallory, alice):
    _, archive_b = device_with_archive(mallory)
    job_b = restore_job_request(actor=mallory, archive=archive_b)
    _, http = full
    _json_error(http.get(f"/api/v1/public/archives/{archive_b.uuid}/runs"), 404)
    _json_error(http.post("/api/v1/public/restores", {"archive": str(archive_b.uuid)}, format="json"), 404)
    for template in ("/api/v1/public/restores/{}", "/api/v1/public/restores/{}/download"):
        _json_error(http.get(template.format(job_b.uuid)), 404)
        _json_error(http.get(template.format("not-a-uuid")), 404)
    assert not RestoreJob.objects.filter(organization__name="Org A").exists()
    assert http.get("/api/v1/public/devices").json()["results"] == []
    _, http_b = key_for(org_b, created_by=mallory)
    assert [d["uuid"] for d in http_b.get("/api/v1/public/devices").json()["results"]] == [str(archive_b.device.uuid)]


def test_a_restore_is_visible_only_to_the_key_that_asked(full, key_for, org_a, alice):
    _, archive = device_with_archive(alice)
    _, http = full
    created = http.post("/api/v1/public/restores", {"archive": str(archive.uuid)}, format="json")
    assert created.status_code == 201, created.content
    _, other = key_for(org_a, created_by=alice, name="another integration")
    _json_error(other.get(f"/api/v1/public/restores/{created.json()['id']}"), 404)
    console_job = restore_job_request(actor=alice, archive=archive)  # Alice's own, from the console
    _json_error(http.get(f"/api/v1/public/restores/{console_job.uuid}"), 404)
    assert http.get(f"/api/v1/public/restores/{created.json()['id']}").status_code == 200


# --- devices, runs, audit: contents and cursor pages --------------------------------------------

def test_devices_carry_the_contract_fields(full, alice, bob):
    device, archive = device_with_archive(bob, "bob-laptop", runs=("completed", "failed", "completed", "running"))
    never, _ = device_with_archive(alice, "alice-desktop", runs=("interrupted",))
    _, http = full
    body = http.get("/api/v1/public/devices").json()
    assert body["next"] is None
    by_name = {d["name"]: d for d in body["results"]}
    last = archive.runs.filter(status="completed").order_by("-finished_at").first().finished_at
    bob_device = by_name["bob-laptop"]
    assert {k: bob_device[k] for k in ("uuid", "name", "user", "archive")} == {
        "uuid": str(device.uuid), "name": "bob-laptop", "user": "bob@a.example", "archive": str(archive.uuid)}
    assert bob_device["last_complete_backup"].replace("Z", "+00:00") == last.isoformat()
    assert by_name["alice-desktop"]["last_complete_backup"] is None


def test_the_device_list_pages_by_cursor_in_a_constant_number_of_queries(full, alice, bob):
    made = [device_with_archive(bob if i % 2 else alice, f"d{i}")[0] for i in range(7)]
    _, http = full
    seen, cursor, pages, counts = [], None, 0, []
    while True:
        with CaptureQueriesContext(connection) as queries:
            body = http.get("/api/v1/public/devices", {"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        # key lookup, last-use write (once a minute), the rate counter in the database cache (read,
        # write), one query for the devices, the audit row: never one per device
        assert len(queries) <= 10, [q["sql"] for q in queries]
        counts.append(len(queries))
        seen += [d["uuid"] for d in body["results"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == 3 and seen == [str(d.uuid) for d in made]
    assert counts[1] == counts[2]  # a full page of 3 and the last page of 1: the same queries
    _json_error(http.get("/api/v1/public/devices", {"cursor": "!!not-a-cursor"}), 400, "invalid")
    _json_error(http.get("/api/v1/public/devices", {"cursor": "WyJ4Il0"}), 400, "invalid")  # ["x"]
    for limit in ("0", "501", "ten"):
        _json_error(http.get("/api/v1/public/devices", {"limit": limit}), 400, "invalid")


def test_an_archives_runs_page_newest_first(full, alice):
    _, archive = device_with_archive(alice, runs=("completed", "failed", "interrupted", "completed", "running"))
    _, http = full
    first = http.get(f"/api/v1/public/archives/{archive.uuid}/runs", {"limit": 3}).json()
    second = http.get(f"/api/v1/public/archives/{archive.uuid}/runs", {"limit": 3, "cursor": first["next"]}).json()
    assert second["next"] is None
    statuses = [r["status"] for r in first["results"] + second["results"]]
    assert statuses == ["running", "completed", "interrupted", "failed", "completed"]
    assert [r["uuid"] for r in first["results"] + second["results"]] == [
        str(u) for u in archive.runs.order_by("-pk").values_list("uuid", flat=True)]


def _key_access(org, subject, seq, at):
    return KeyAccess.objects.create(seq=seq, organization=org, subject=subject, actor=subject, actor_label="t",
                                    purpose="web_restore", outcome="succeeded", occurred_at=at,
                                    prev_hash=f"{seq - 1:064d}", hash=f"{seq:064d}")


def test_the_audit_stream_merges_both_logs_and_pages_without_gaps(full, org_a, org_b, alice, mallory):
    _, http = full
    now = timezone.now()
    for i in range(4):
        _key_access(org_a, alice, 1000 + i, now - timedelta(minutes=i))
    _key_access(org_b, mallory, 2000, now)  # another org's: never listed
    AuditEvent.objects.create(organization=org_b, actor_label="x", action="secret.thing", target_type="x")
    expected_events = set(AuditEvent.objects.filter(organization=org_a).values_list("uuid", flat=True))
    seen, cursor = [], None
    while True:
        body = http.get("/api/v1/public/audit", {"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += body["results"]
        cursor = body["next"]
        if cursor is None:
            break
    kinds = {(e["kind"], e["uuid"]) for e in seen}
    assert len(kinds) == len(seen)  # no row twice
    assert {u for k, u in kinds if k == "key_access"} == {
        str(u) for u in KeyAccess.objects.filter(organization=org_a).values_list("uuid", flat=True)}
    assert {str(u) for u in expected_events} <= {u for k, u in kinds if k == "audit"}
    assert "secret.thing" not in {e["action"] for e in seen}
    times = [e["occurred_at"] for e in seen]
    assert times == sorted(times, reverse=True)
    only_keys = http.get("/api/v1/public/audit", {"kind": "key_access"}).json()["results"]
    assert {e["kind"] for e in only_keys} == {"key_access"} and len(only_keys) == 4
    assert only_keys[0]["detail"]["subject"] == alice.email
    _json_error(http.get("/api/v1/public/audit", {"kind": "nope"}), 400)
    _json_error(http.get("/api/v1/public/audit", {"cursor": "WzEsMl0"}), 400)  # [1,2]


# --- rate limit and audit of every call ----------------------------------------------------------

def test_the_rate_limit_is_per_client_and_answers_429_json(full, key_for, org_a, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"public_api": "3/min"}}
    client, http = full
    for _ in range(3):
        assert http.get("/api/v1/public/devices").status_code == 200
    refused = http.get("/api/v1/public/devices")
    _json_error(refused, 429, "throttled")
    assert int(refused["Retry-After"]) > 0
    _, other = key_for(org_a, scopes=["devices:read"])
    assert other.get("/api/v1/public/devices").status_code == 200  # another client's budget is its own
    assert AuditEvent.objects.filter(action="api.call", target_uuid=client.uuid, detail__status=429).count() == 1


def test_every_call_of_a_known_key_is_audited(full, key_for, org_a, alice):
    client, http = full
    _, archive = device_with_archive(alice)
    calls = [
        (http.get("/api/v1/public/devices"), 200),
        (http.get(f"/api/v1/public/archives/{archive.uuid}/runs"), 200),
        (http.get("/api/v1/public/archives/00000000-0000-0000-0000-000000000000/runs"), 404),
        (http.get("/api/v1/public/audit", {"limit": "x"}), 400),
        (http.post("/api/v1/public/restores", {"archive": str(archive.uuid)}, format="json"), 201),
    ]
    assert [r.status_code for r, _ in calls] == [s for _, s in calls]
    _, narrow = key_for(org_a, scopes=["audit:read"], name="siem")
    assert narrow.get("/api/v1/public/devices").status_code == 403
    rows = AuditEvent.objects.filter(action="api.call").order_by("id")
    assert [(r.actor_label, r.detail["method"], r.detail["status"]) for r in rows] == [
        (client.label, "GET", 200), (client.label, "GET", 200), (client.label, "GET", 404),
        (client.label, "GET", 400), (client.label, "POST", 201), (narrow_label := rows.last().actor_label, "GET", 403)]
    assert narrow_label.startswith("api-client:siem ")
    assert rows.first().detail["path"] == "/api/v1/public/devices" and rows.first().actor is None
    request_row = AuditEvent.objects.get(action="api.restore.request")
    assert request_row.actor_label == client.label and request_row.detail["on_behalf_of"] == alice.email


# --- restores: input -------------------------------------------------------------------------------

def test_restore_requests_with_bad_input_are_400(full, alice):
    _, archive = device_with_archive(alice)
    _, http = full
    for body, field in [({"archive": str(archive.uuid), "at": "yesterday"}, "at"),
                        ({"archive": str(archive.uuid), "at": "2026-01-31T12:00:00"}, "at"),
                        ({"archive": str(archive.uuid), "paths": ["relative/path"]}, "paths"),
                        ({"archive": str(archive.uuid), "paths": "/not/a/list"}, "paths"),
                        ({"archive": "nope"}, "archive"), ({}, "archive")]:
        error = _json_error(http.post("/api/v1/public/restores", body, format="json"), 400, "invalid")
        assert field in error["errors"], (body, error)
    _json_error(http.post("/api/v1/public/restores", "[[[", content_type="application/json"), 400)
    assert not RestoreJob.objects.exists()


def test_a_restore_runs_on_the_authority_of_the_clients_creator(full, alice, queued_restores,
                                                               django_capture_on_commit_callbacks):
    _, archive = device_with_archive(alice)
    client, http = full
    with django_capture_on_commit_callbacks(execute=True):
        created = http.post("/api/v1/public/restores", {"archive": str(archive.uuid), "paths": ["/home/a/"],
                                                        "at": "2026-01-31T12:00:00+00:00"}, format="json")
    assert created.status_code == 201 and created.json()["status"] == "queued"
    job = RestoreJob.objects.get(uuid=created.json()["id"])
    assert (job.requested_by, job.paths, job.api_request.client) == (alice, ["/home/a"], client)
    assert queued_restores == [job.pk]
    status = http.get(f"/api/v1/public/restores/{job.uuid}").json()
    assert (status["status"], status["download_url"], status["progress"]["files_done"]) == ("queued", None, 0)
    _json_error(http.get(f"/api/v1/public/restores/{job.uuid}/download"), 409, "restore_unavailable")
    alice.role = Role.SECURITY_ANALYST  # who the client acts for can no longer restore: neither can it
    alice.save()
    _json_error(http.post("/api/v1/public/restores", {"archive": str(archive.uuid)}, format="json"), 403,
                "restore_not_allowed")


@pytest.fixture
def queued_restores(monkeypatch):
    from archives.tasks import restore_job_run_task

    sent = []
    monkeypatch.setattr(restore_job_run_task, "delay", lambda job_id: sent.append(job_id))
    return sent


# --- manage.py apiclient ------------------------------------------------------------------------

def test_the_command_prints_a_key_that_works(org_a, alice, api):
    out = StringIO()
    call_command("apiclient", "--org", "Org A", "--scopes", "devices:read,audit:read", "--name", "SIEM", stdout=out)
    key = out.getvalue().strip()
    client = ApiClient.objects.get()
    assert (client.name, client.scopes, client.created_by) == ("SIEM", ["devices:read", "audit:read"], None)
    assert client.key_hash == hashlib.sha256(key.encode()).hexdigest()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api.get("/api/v1/public/devices").status_code == 200
    assert api.get("/api/v1/public/restores/00000000-0000-0000-0000-000000000000").status_code == 403
    assert AuditEvent.objects.get(action="api_client.create").actor_label == "manage.py apiclient"

    call_command("apiclient", "--org", org_a.slug, "--scopes", "restores:write", "--created-by", alice.email,
                 stdout=StringIO())
    assert ApiClient.objects.get(scopes=["restores:write"]).created_by == alice
    for args, message in [(["--org", "Nope", "--scopes", "devices:read"], "No organization"),
                          (["--org", "Org A", "--scopes", "devices:read,root"], "unknown scope"),
                          (["--org", "Org A", "--scopes", "restores:write"], "restores:write"),
                          (["--org", "Org A", "--scopes", "devices:read", "--created-by", "x@y.z"], "No active user")]:
        with pytest.raises(CommandError, match=message):
            call_command("apiclient", *args, stdout=StringIO())
    assert ApiClient.objects.count() == 2

"""The agent API on a live gunicorn: hostile input over real HTTP, and a bounded schemathesis run.

Schemathesis fetches the published schema (/api/schema/) and sends every operation generated
requests, authenticated with a real device token, with the real archive and run ids filled in. It
fails on any 5xx and on any answer that differs from the schema (status, content type, body).
The run is bounded (examples per operation, a fixed seed, no stateful phase): it is a regression
gate, not an open-ended fuzzing campaign. One worker: with two, Python 3.11's `ast` is not
thread-safe under schemathesis' generators ("AST constructor recursion depth mismatch").
"""
import base64
import re
import subprocess

import httpx
import pytest

from formats.keys import generate_user_key, key_id_for
from tests.conftest import PASSWORD
from tests.support import VENV_BIN

MAX_EXAMPLES = 20
SEED = 8
CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance"]


@pytest.fixture
def device(live_server_haven, alice):
    """A device enrolled over HTTP whose user's key is escrowed, with a backup run started."""
    server = live_server_haven
    enrolled = httpx.post(f"{server.url}/api/v1/enroll", json={
        "email": alice.email, "password": PASSWORD, "device_name": "schemathesis"}, timeout=30)
    assert enrolled.status_code == 201, enrolled.text
    body = enrolled.json()
    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {body['token']}"}, timeout=60)
    key = generate_user_key()
    escrowed = client.post("/api/v1/keys/escrow", json={"key": base64.b64encode(key).decode(),
                                                        "key_id": key_id_for(key)})
    assert escrowed.status_code == 201, escrowed.text
    run = client.post(f"/api/v1/archives/{body['archive_id']}/runs")
    assert run.status_code == 201, run.text
    client.server, client.archive_id, client.run_id = server, body["archive_id"], run.json()["run_id"]
    yield client
    client.close()


def _assert_json_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.headers["content-type"]
    assert {"detail", "code"} <= set(response.json())


def test_hostile_input_over_http_is_a_json_4xx(device):
    archive, run = device.archive_id, device.run_id
    nested = b"[" * 1000
    json_type = {"Content-Type": "application/json"}
    anonymous = httpx.Client(base_url=device.server.url, timeout=60)
    _assert_json_error(anonymous.post("/api/v1/enroll", content=nested, headers=json_type), 400)
    for path in [f"archives/{archive}/versions", f"archives/{archive}/blocks/missing",
                 f"archives/{archive}/blocks/fetch", f"archives/{archive}/runs/{run}/finish", "keys/escrow"]:
        _assert_json_error(device.post(f"/api/v1/{path}", content=nested, headers=json_type), 400)

    too_big = device.post(f"/api/v1/archives/{archive}/runs/{run}/finish",
                          json={"status": "completed", "bytes_sent": 2 ** 64})
    _assert_json_error(too_big, 400)
    assert device.post(f"/api/v1/archives/{archive}/runs/{run}/finish",
                       json={"status": "completed"}).json()["status"] == "completed"  # it was still running

    versions = f"/api/v1/archives/{archive}/versions"
    _assert_json_error(device.get(versions, params={"at": "9999-12-31T23:59:59-23:59"}), 400)
    _assert_json_error(device.get(versions, params={"path_id": "\x00"}), 400)

    _assert_json_error(anonymous.post("/api/v1/enroll", content=b'{"a": "' + b"a" * 50_000_000 + b'"}',
                                      headers=json_type), 413)
    fields = "&".join(f"f{i}=1" for i in range(1200))
    _assert_json_error(anonymous.post("/api/v1/enroll", content=fields,
                                      headers={"Content-Type": "application/x-www-form-urlencoded"}), 400)
    _assert_json_error(anonymous.get("/api/v1/no-such-endpoint"), 404)
    anonymous.close()


def test_the_live_api_answers_as_its_schema_says(device, tmp_path):
    config = tmp_path / "schemathesis.toml"
    config.write_text(f'[parameters]\n"path.archive_id" = "{device.archive_id}"\n'
                      f'"path.run_id" = "{device.run_id}"\n"query.run" = "{device.run_id}"\n')
    token = device.headers["Authorization"]
    result = subprocess.run(
        [str(VENV_BIN / "st"), "--config-file", str(config), "--no-color", "run", f"{device.server.url}/api/schema/",
         "--checks", ",".join(CHECKS), "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
         "--phases", "examples,coverage,fuzzing", "--workers", "1", "--request-timeout", "60",
         "--generation-database", "none", "--header", f"Authorization: {token}",
         "--exclude-path-regex", "^/api/v1/public/"],  # with an API key: the next test
        cwd=tmp_path, env={"PATH": str(VENV_BIN) + ":/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=600)
    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary + result.stderr[-2000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert counts and counts[1] == counts[2] and int(counts[1]) > 200, summary


@pytest.fixture
def public_api(live_servers, haven_env, alice, tmp_path):
    """A live server for the public API with a key of every scope, an archive and a queued restore.
    Its broker is a filesystem queue in the test's directory: the restores schemathesis asks for
    are never run, and no message is left in the suite's Redis for another test's worker."""
    from accounts.api_clients import SCOPES, api_client_create
    from archives.services import device_enroll

    haven_env.update({"CELERY_BROKER_URL": "filesystem://", "HAVEN_PUBLIC_API_RATE": "100000/min"})
    server = live_servers()
    archive = device_enroll(user=alice, device_name="schemathesis", os_name="Linux", agent_version="1")[1]
    _, key = api_client_create(organization=alice.organization, name="schemathesis", scopes=SCOPES, created_by=alice)
    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    created = client.post("/api/v1/public/restores", json={"archive": str(archive.uuid)})
    assert created.status_code == 201, created.text
    client.server, client.archive_id, client.restore_id = server, str(archive.uuid), created.json()["id"]
    yield client
    client.close()


def test_the_live_public_api_answers_as_its_schema_says(public_api, tmp_path):
    """The same bounded run over /api/v1/public/ only, authenticated with a real API key."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(f'[parameters]\n"path.archive_id" = "{public_api.archive_id}"\n'
                      f'"path.restore_id" = "{public_api.restore_id}"\n')
    result = subprocess.run(
        [str(VENV_BIN / "st"), "--config-file", str(config), "--no-color", "run",
         f"{public_api.server.url}/api/schema/", "--checks", ",".join(CHECKS), "--max-examples", str(MAX_EXAMPLES),
         "--seed", str(SEED), "--phases", "examples,coverage,fuzzing", "--workers", "1", "--request-timeout", "60",
         "--generation-database", "none", "--header", f"Authorization: {public_api.headers['Authorization']}",
         "--include-path-regex", "^/api/v1/public/"],
        cwd=tmp_path, env={"PATH": str(VENV_BIN) + ":/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=600)
    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary + result.stderr[-2000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert counts and counts[1] == counts[2] and int(counts[1]) > 50, summary
    assert re.search(r"Tested: 12\b", summary), summary  # every public operation (alerts and events included)

"""The binary commit body (docs/formats.md §11) through the API: it commits what the JSON body
commits, a malformed one is a 400 that says why and commits nothing, and the agent's client
sends it (JSON again only to a server that answers 415)."""
import base64
import json
import uuid

import httpx
import pytest

from agent.client import ApiClient
from agentapi.versions_input import commit_parse
from archives.models import BackupRun, FileVersion, Pack
from formats.commit_body import MEDIA_TYPE, CommitVersion, commit_body_encode
from formats.manifests import manifest_decrypt
from tests.archives.conftest import KEYS, block, stored, version


def _as_binary(body: dict) -> CommitVersion:
    return CommitVersion(uuid.UUID(body["version_id"]), body["path_id"], body["deleted"],
                         [bytes.fromhex(b) for b in body["block_ids"]], base64.b64decode(body["manifest"]))


def _post(client, archive, body: bytes):
    return client.post(f"/api/v1/archives/{archive}/versions", data=body, content_type=MEDIA_TYPE)


def test_a_binary_commit_stores_what_a_json_one_would(enrolled, alice):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    run_id = client.post(f"/api/v1/archives/{archive}/runs").json()["run_id"]
    block_id = stored(client, archive, b"hello")
    kept = version(archive, "/home/alice/a.txt", [block_id], [5])
    gone = version(archive, "/home/alice/old.txt", [], [], deleted=True)
    body = commit_body_encode(uuid.UUID(run_id), [_as_binary(kept), _as_binary(gone)])
    response = _post(client, archive, body)
    assert response.status_code == 201, response.content
    assert response.json()["committed"] == 2 and response.json()["existing"] == 0
    row = FileVersion.objects.get(uuid=kept["version_id"])
    assert bytes(row.block_ids) == block_id and row.path_id == kept["path_id"] and not row.deleted
    assert row.run.uuid == uuid.UUID(run_id) and BackupRun.objects.get(uuid=run_id).versions_committed == 2
    assert FileVersion.objects.get(uuid=gone["version_id"]).deleted
    listed = client.get(f"/api/v1/archives/{archive}/versions").json()["versions"]
    manifest = manifest_decrypt(KEYS, base64.b64decode(next(v for v in listed if v["version_id"] == kept["version_id"])
                                                        ["manifest"]), archive_id=uuid.UUID(archive),
                                path_id=kept["path_id"], version_id=uuid.UUID(kept["version_id"]))
    assert manifest.path == "/home/alice/a.txt" and manifest.block_ids == [block_id]
    retried = _post(client, archive, body).json()  # idempotent, as a JSON retry is
    assert (retried["committed"], retried["existing"], FileVersion.objects.count()) == (0, 2, 2)


def test_a_binary_commit_naming_an_absent_block_is_409_as_json_is(enrolled, alice):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    absent, _ = block(archive, b"never uploaded")
    body = commit_body_encode(None, [_as_binary(version(archive, "/b", [absent], [14]))])
    response = _post(client, archive, body)
    assert response.status_code == 409 and response.json()["block_ids"] == [absent.hex()]
    assert not FileVersion.objects.exists()


@pytest.mark.parametrize(("cut", "reason"), [
    (lambda body: body[:-1], "version 0: the body ends inside its block ids or manifest"),
    (lambda body: body + b"\x00", "1 bytes after the last version"),
    (lambda body: b"HVC9" + body[4:], "not a commit body of version 1"),
    (lambda body: body[:20] + b"\x00\x00\x00\x00" + body[24:], "give 1 to 2000 versions"),
])
def test_a_malformed_binary_commit_is_400_with_its_reason_and_commits_nothing(enrolled, alice, cut, reason):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    block_id = stored(client, archive, b"hello")
    body = commit_body_encode(None, [_as_binary(version(archive, "/a", [block_id], [5]))])
    response = _post(client, archive, cut(body))
    assert response.status_code == 400
    assert response.json()["detail"].startswith(f"commit body: {reason}")
    assert not FileVersion.objects.exists() and not Pack.objects.filter(kind=Pack.Kind.MANIFESTS).exists()


def _client_on(handler) -> ApiClient:
    client = ApiClient("https://haven.test", token="t", retries=0)
    client._http = httpx.Client(base_url="https://haven.test/api/v1/", transport=httpx.MockTransport(handler))
    return client


VERSION = CommitVersion(uuid.UUID("ffeeddcc-bbaa-9988-7766-554433221100"), "ab" * 32, False, [b"\x11" * 32], b"\x03m")


def test_the_agent_commits_binary_and_falls_back_to_json_on_415_once():
    seen, json_bodies = [], []

    def old_server(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["content-type"])
        if request.headers["content-type"] == "application/json":
            json_bodies.append(json.loads(request.read()))
        if request.headers["content-type"] == MEDIA_TYPE:
            return httpx.Response(415, json={"detail": "Unsupported media type", "code": "unsupported_media_type"})
        return httpx.Response(201, json={"committed": 1, "existing": 0, "committed_at": "2026-12-02T00:00:00+00:00"})

    client = _client_on(old_server)
    run = "00112233-4455-6677-8899-aabbccddeeff"
    assert client.versions_commit("a", run, [VERSION])["committed"] == 1
    assert client.versions_commit("a", run, [VERSION])["committed"] == 1
    assert seen == [MEDIA_TYPE, "application/json", "application/json"]
    # The fallback's JSON is what the server's JSON parser reads back to the same versions.
    assert [commit_parse(body) for body in json_bodies] == [(uuid.UUID(run), [VERSION])] * 2


def test_each_run_asks_for_the_binary_body_again():
    """A service that fell back to JSON uses the binary body after its server was upgraded:
    the next run probes again (not only a restarted agent)."""
    upgraded, seen = [False], []

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/runs"):
            return httpx.Response(201, json={"run_id": "00112233-4455-6677-8899-aabbccddeeff"})
        seen.append(request.headers["content-type"])
        if request.headers["content-type"] == MEDIA_TYPE and not upgraded[0]:
            return httpx.Response(415, json={"detail": "Unsupported media type", "code": "unsupported_media_type"})
        return httpx.Response(201, json={"committed": 1, "existing": 0, "committed_at": "2026-12-02T00:00:00+00:00"})

    client = _client_on(server)
    run = client.run_start("a")
    client.versions_commit("a", run, [VERSION])
    client.versions_commit("a", run, [VERSION])
    upgraded[0] = True
    run = client.run_start("a")
    client.versions_commit("a", run, [VERSION])
    assert seen == [MEDIA_TYPE, "application/json", "application/json", MEDIA_TYPE]


def test_the_agents_binary_body_is_the_encoding_of_its_versions():
    bodies = []

    def server(request: httpx.Request) -> httpx.Response:
        bodies.append((request.headers["content-type"], request.read()))
        return httpx.Response(201, json={"committed": 1, "existing": 0, "committed_at": "2026-12-02T00:00:00+00:00"})

    _client_on(server).versions_commit("a", None, [VERSION])
    assert bodies == [(MEDIA_TYPE, commit_body_encode(None, [VERSION]))]

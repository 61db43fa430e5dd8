"""The published OpenAPI schema (/api/schema/) says what the agent API really takes and returns.

Whether the live server answers as documented is checked by schemathesis in
tests/e2e/test_schemathesis.py; here, the schema itself.
"""
import subprocess

import pytest
from rest_framework.test import APIClient

from tests.support import PYTHON, REPO


@pytest.fixture(scope="module")
def schema():
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def _operation(schema, path: str, method: str) -> dict:
    return schema["paths"][f"/api/v1/{path}"][method]


def _resolve(schema, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _request_fields(schema, path: str, method: str = "post") -> set[str]:
    body = _operation(schema, path, method)["requestBody"]["content"]["application/json"]["schema"]
    return set(_resolve(schema, body)["properties"])


def _response(schema, path: str, method: str, status: str, content_type: str = "application/json") -> dict:
    return _resolve(schema, _operation(schema, path, method)["responses"][status]["content"][content_type]["schema"])


def test_it_validates_without_a_single_warning(tmp_path):
    """`spectacular --validate --fail-on-warn` in a process of its own: drf-spectacular remembers the
    warnings it already emitted, so a second run inside the test process would see none."""
    result = subprocess.run([PYTHON, "manage.py", "spectacular", "--validate", "--fail-on-warn",
                             "--file", str(tmp_path / "schema.yaml")], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr[-4000:]


def test_each_request_body_is_its_own_component(schema):
    assert {"email", "password", "code", "device_name"} <= _request_fields(schema, "enroll")
    assert _request_fields(schema, "keys/escrow") == {"key", "key_id"}
    assert "status" in _request_fields(schema, "archives/{archive_id}/runs/{run_id}/finish")
    assert _request_fields(schema, "archives/{archive_id}/blocks/missing") == {"block_ids"}
    assert {"run_id", "versions"} <= _request_fields(schema, "archives/{archive_id}/versions")


def test_list_endpoints_are_documented_as_the_wrapper_objects_they_return(schema):
    archives = _response(schema, "archives", "get", "200")
    assert archives["type"] == "object" and archives["properties"]["archives"]["type"] == "array"
    versions = _response(schema, "archives/{archive_id}/versions", "get", "200")
    assert versions["type"] == "object" and {"versions", "next"} <= set(versions["properties"])
    missing = _response(schema, "archives/{archive_id}/blocks/missing", "post", "200")
    assert missing["properties"]["missing"]["type"] == "array"


def test_every_response_body_is_described(schema):
    undocumented = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                # A 304 carries no body by definition (RFC 9110 §15.4.5); every other answer has one.
                if status != "304" and not response.get("content"):
                    undocumented.append(f"{method.upper()} {path} {status}")
    assert not undocumented, undocumented


def test_errors_are_documented_with_the_error_body(schema):
    error = _response(schema, "archives/{archive_id}/blocks", "post", "409")
    assert {"detail", "code"} <= set(error["properties"])
    assert "401" in _operation(schema, "device", "get")["responses"]
    assert "429" in _operation(schema, "enroll", "post")["responses"]


def test_the_device_token_is_a_declared_bearer_scheme(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["deviceToken"] == {**schemes["deviceToken"], "type": "http", "scheme": "bearer"}
    assert _operation(schema, "device", "get")["security"] == [{"deviceToken": []}]
    assert _operation(schema, "enroll", "post").get("security") in (None, [], [{}])

"""SCIM peers: the identity provider of org A (and of org B) calling /scim/v2/ with its own token."""
import json
import os
import subprocess

import pytest
from django.db import connection
from django.test import Client

from tests.support import REPO, VENV_BIN, free_port, http_ready, stop_process, wait_until

SCIM_JSON = "application/scim+json"
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


class ScimClient:
    """Django's test client speaking SCIM JSON with one organization's bearer token."""

    def __init__(self, token: str | None):
        self.token = token
        self.http = Client(**({"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}))

    def get(self, path: str, **params):
        return self.http.get(f"/scim/v2/{path}", params)

    def delete(self, path: str):
        return self.http.delete(f"/scim/v2/{path}")

    def post(self, path: str, body):
        return self.http.post(f"/scim/v2/{path}", _raw(body), content_type=SCIM_JSON)

    def put(self, path: str, body):
        return self.http.put(f"/scim/v2/{path}", _raw(body), content_type=SCIM_JSON)

    def patch(self, path: str, *operations: dict):
        return self.http.patch(f"/scim/v2/{path}", _raw({"schemas": [PATCH_URN], "Operations": list(operations)}),
                               content_type=SCIM_JSON)


def _raw(body) -> str:
    return body if isinstance(body, str | bytes) else json.dumps(body)


def user_body(user_name: str, **attributes) -> dict:
    return {"schemas": [USER_URN], "userName": user_name, "active": True, **attributes}


def group_body(name: str, *member_ids: str, **attributes) -> dict:
    return {"schemas": [GROUP_URN], "displayName": name, "members": [{"value": i} for i in member_ids], **attributes}


def op(op: str, path: str | None = None, value=None) -> dict:
    operation = {"op": op}
    if path is not None:
        operation["path"] = path
    if value is not None:
        operation["value"] = value
    return operation


def verify_domains(org, *domains: str) -> None:
    """What a Haven operator does once the organization proved it owns its domains."""
    from accounts.models import SamlSettings

    SamlSettings.objects.update_or_create(organization=org, defaults={"verified_domains": ",".join(domains)})


@pytest.fixture
def org_a(org_a):
    """Org A, which verified a.example: its IdP provisions addresses there."""
    verify_domains(org_a, "a.example")
    return org_a


@pytest.fixture
def org_b(org_b):
    verify_domains(org_b, "b.example")
    return org_b


@pytest.fixture
def scim_token():
    from accounts.services import scim_token_issue

    return lambda org: scim_token_issue(organization=org, label="test IdP")


@pytest.fixture
def scim_a(org_a, scim_token):
    return ScimClient(scim_token(org_a))


@pytest.fixture
def scim_b(org_b, scim_token):
    return ScimClient(scim_token(org_b))


@pytest.fixture
def provisioned(scim_a):
    """Create a user in org A through SCIM and return its SCIM document."""

    def _provisioned(user_name: str, **attributes) -> dict:
        response = scim_a.post("Users", user_body(user_name, **attributes))
        assert response.status_code == 201, response.content
        return response.json()

    return _provisioned


@pytest.fixture
def live_haven(transactional_db, tmp_path):
    """gunicorn on this test's database (transactional_db: the server sees committed rows)."""
    database = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + connection.settings_dict["NAME"]
    env = {**os.environ, "DATABASE_URL": database, "HAVEN_TEST_DATABASE_NAME": "",
           "HAVEN_DATA_DIR": str(tmp_path / "var"), "HAVEN_SECRET_KEY": "test-secret"}
    url = f"http://127.0.0.1:{free_port()}"
    with (tmp_path / "gunicorn.log").open("wb") as log:
        process = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "config.wsgi", "--bind", url.removeprefix("http://"), "--workers", "2"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: http_ready(f"{url}/login/"), timeout=60, what="gunicorn to answer")
            yield url
        finally:
            stop_process(process)

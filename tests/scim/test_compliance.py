"""RFC 7643/7644 compliance, judged by an independent checker: `scim2 --url URL/scim/v2 test`
(PyPI scim2-cli, which runs scim2-tester) against a live Haven under gunicorn."""
import os
import subprocess

import pytest

from accounts.models import User
from accounts.services import scim_token_issue
from tests.support import PYTHON, REPO


@pytest.mark.slow
def test_an_independent_checker_finds_no_error(org_a, mallory, live_haven):
    token = scim_token_issue(organization=org_a, label="scim2-tester")

    # scim2-tester's CLI, its userNames in org A's verified domain (scim2_checker.py says why).
    result = subprocess.run([PYTHON, "-m", "tests.scim.scim2_checker", "--url", f"{live_haven}/scim/v2", "test"],
                            env={**os.environ, "SCIM_CLI_HEADERS": f"Authorization: Bearer {token}", "NO_PROXY": "127.0.0.1",
                                 "HAVEN_CHECKER_DOMAIN": "a.example"},
                            cwd=REPO, capture_output=True, text=True, timeout=300)

    checks = [line for line in result.stdout.splitlines() if line and not line.startswith((" ", "Performing"))]
    failed = [line for line in checks if not line.startswith("SUCCESS")]
    assert result.returncode == 0 and not failed, result.stdout + result.stderr
    assert len(checks) >= 50, result.stdout  # discovery, then CRUD, attributes and PATCH for Users and Groups
    # The checker created, patched and deleted dozens of users with org A's token; org B saw none of it.
    assert list(User.objects.filter(organization__name="Org B").values_list("email", "is_active")) == [
        ("mallory@b.example", True)]


@pytest.mark.slow
def test_tenancy_and_bad_input_over_real_http(org_a, org_b, alice, mallory, live_haven):
    """The same guarantees as the in-process tests, through a live server and a real HTTP client."""
    import httpx

    own = {"Authorization": f"Bearer {scim_token_issue(organization=org_a)}"}
    other = {"Authorization": f"Bearer {scim_token_issue(organization=org_b)}"}
    with httpx.Client(base_url=f"{live_haven}/scim/v2") as http:
        alice_url = f"/Users/{alice.uuid}"
        assert http.get(alice_url, headers=own).json()["userName"] == alice.email
        for method in ("GET", "PUT", "PATCH", "DELETE"):
            response = http.request(method, alice_url, headers=other, json={
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": []})
            assert response.status_code == 404, (method, response.text)
        sneaky = http.get("/Users", headers=other, params={"filter": f'userName eq "{alice.email}" or userName pr'})
        assert [u["userName"] for u in sneaky.json()["Resources"]] == [mallory.email]
        broken = http.post("/Users", headers={**own, "Content-Type": "application/scim+json"}, content=b"{not json")
        assert broken.status_code == 400 and broken.json()["scimType"] == "invalidSyntax"
        odd = http.post("/Users", headers=own, json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                                     "userName": "new@a.example", "favouriteColour": "teal"})
        assert odd.status_code == 201 and "favouriteColour" not in odd.json()
        assert http.get("/Users", headers={"Authorization": "Bearer nope"}).status_code == 401
    alice.refresh_from_db()
    assert alice.is_active

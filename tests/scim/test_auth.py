"""Only a live SCIM token of an organization opens /scim/v2/; every refusal is a SCIM 401."""
import pytest

from tests.conftest import PASSWORD
from tests.scim.conftest import ScimClient

ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"


def _assert_401(response):
    assert response.status_code == 401
    assert response["Content-Type"] == "application/scim+json"
    assert response.json()["schemas"] == [ERROR_URN]
    assert response.json()["status"] == "401"


@pytest.mark.parametrize("token", [None, "garbage", "hvs_not-a-real-token", "hvd_a-device-token"])
def test_it_refuses_a_missing_or_unknown_token(db, token):
    _assert_401(ScimClient(token).get("Users"))


def test_it_refuses_a_revoked_token(org_a, bob, scim_a):
    from accounts.models import ScimToken
    from accounts.services import scim_token_revoke

    assert scim_a.get("Users").status_code == 200
    scim_token_revoke(token=ScimToken.objects.get(organization=org_a), actor=None)

    _assert_401(scim_a.get("Users"))
    _assert_401(scim_a.get(f"Users/{bob.scim_id}"))
    _assert_401(scim_a.delete(f"Users/{bob.scim_id}"))


def test_a_console_session_is_not_a_scim_credential(alice, client):
    assert client.login(username=alice.email, password=PASSWORD)

    _assert_401(client.get("/scim/v2/Users"))


def test_it_refuses_before_revealing_whether_a_url_exists(db):
    _assert_401(ScimClient(None).get("NoSuchEndpoint"))

"""Bad requests get SCIM errors (400 with a scimType, 404, 501), never a 500 or an HTML page."""
import pytest

from accounts.models import User
from tests.scim.conftest import op, user_body


def _assert_error(response, status: int, scim_type: str | None = None):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/scim+json"
    error = response.json()
    assert error["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert error["status"] == str(status)
    assert error.get("scimType") == scim_type


@pytest.mark.parametrize("body", ['{"userName": ', "not json", b"\xff\xfe", "[1, 2]", '"a string"'])
def test_malformed_json_is_invalid_syntax(bob, scim_a, body):
    _assert_error(scim_a.post("Users", body), 400, "invalidSyntax")
    _assert_error(scim_a.put(f"Users/{bob.uuid}", body), 400, "invalidSyntax")
    _assert_error(scim_a.http.patch(f"/scim/v2/Users/{bob.uuid}", body, content_type="application/scim+json"),
                  400, "invalidSyntax")


def test_unknown_attributes_are_ignored(scim_a):
    response = scim_a.post("Users", user_body(
        "carol@a.example", nickName="cj", phoneNumbers=[{"value": "555"}], password="ignored too",
        **{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}}))

    assert response.status_code == 201
    assert "nickName" not in response.json() and "phoneNumbers" not in response.json()
    assert not User.objects.get(email="carol@a.example").has_usable_password()


def test_patches_of_attributes_haven_does_not_keep_are_ignored(bob, scim_a):
    response = scim_a.patch(f"Users/{bob.uuid}",
                            op("replace", "nickName", "b"),
                            op("replace", 'emails[type eq "work"].value', "other@a.example"),  # read-only
                            op("replace", "name.givenName", "Bobby"),
                            op("add", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "R&D"),
                            op("replace", "displayName", "Bob B"))

    assert response.status_code == 200, response.content
    bob.refresh_from_db()
    assert (bob.email, bob.full_name) == ("bob@a.example", "Bob B")


@pytest.mark.parametrize(("operation", "scim_type"), [
    (op("explode", "displayName", "x"), "invalidSyntax"),
    (op("remove"), "noTarget"),
    (op("replace", value="not an object"), "invalidValue"),
    (op("replace", "active", "maybe"), "invalidValue"),
    (op("replace", "userName", 42), "invalidValue"),
    (op("replace", "userName", "two words"), "invalidValue"),
    (op("remove", "userName"), "mutability"),
    (op("replace", "dis play", "x"), "invalidPath"),
])
def test_invalid_patch_operations_are_400(bob, scim_a, operation, scim_type):
    _assert_error(scim_a.patch(f"Users/{bob.uuid}", operation), 400, scim_type)
    bob.refresh_from_db()
    assert bob.is_active and bob.email == "bob@a.example"


@pytest.mark.parametrize(("operation", "scim_type"), [
    (op("remove", 'members[display co "x"]'), "invalidFilter"),
    (op("add", 'members[value eq "x"]', [{"value": "x"}]), "invalidPath"),
    (op("add", "members", "not a list"), "invalidValue"),
    (op("remove", "displayName"), "mutability"),
    (op("replace", "displayName", ""), "invalidValue"),
])
def test_invalid_group_patch_operations_are_400(org_a, scim_a, operation, scim_type):
    from accounts.models import Group

    group = Group.objects.create(organization=org_a, name="Eng")

    _assert_error(scim_a.patch(f"Groups/{group.uuid}", operation), 400, scim_type)


def test_patch_needs_operations(bob, scim_a):
    response = scim_a.http.patch(f"/scim/v2/Users/{bob.uuid}", "{}", content_type="application/scim+json")

    assert response.status_code == 400


@pytest.mark.parametrize("body", [{"displayName": "No userName"}, user_body(""), user_body("x" * 300),
                                  user_body("carol@a.example", active="sometimes"),
                                  user_body("carol@a.example", displayName=["a", "list"])])
def test_invalid_user_values_are_400(scim_a, body):
    _assert_error(scim_a.post("Users", body), 400, "invalidValue")
    assert not User.objects.filter(email="carol@a.example").exists()


@pytest.mark.parametrize("path", ["Nothing", "Users/x/y", "scim/v2/Users", "Groups/../Users"])
def test_unknown_urls_are_a_scim_404(alice, scim_a, path):
    _assert_error(scim_a.get(path), 404)


def test_unknown_ids_are_a_scim_404(alice, scim_a):
    _assert_error(scim_a.get("Users/00000000-0000-0000-0000-000000000000"), 404)
    _assert_error(scim_a.delete("Groups/nope"), 404)


def test_bulk_is_not_implemented(alice, scim_a):
    _assert_error(scim_a.post("Bulk", {}), 501)


def test_discovery_endpoints_allow_only_get(alice, scim_a):
    _assert_error(scim_a.post("ServiceProviderConfig", {}), 405)
    _assert_error(scim_a.delete("Schemas"), 405)


@pytest.mark.parametrize("params", [{"startIndex": "x"}, {"count": "lots"}])
def test_bad_paging_is_400(alice, scim_a, params):
    _assert_error(scim_a.get("Users", **params), 400, "invalidValue")

"""Users over SCIM: create, read, replace, patch, delete — userName is the email, ids are UUIDs."""
from accounts.models import AuditEvent, User
from tests.scim.conftest import op, user_body


def test_it_creates_a_user_without_a_usable_password(org_a, scim_a):
    response = scim_a.post("Users", user_body("Carol@A.example", displayName="Carol Jones", externalId="okta-1"))

    assert response.status_code == 201, response.content
    document = response.json()
    user = User.objects.get(email="carol@a.example")
    assert document["id"] == str(user.uuid) == user.scim_id
    assert response["Location"] == document["meta"]["location"] == f"http://testserver/scim/v2/Users/{user.uuid}"
    assert document["userName"] == "carol@a.example"
    assert document["displayName"] == document["name"]["formatted"] == "Carol Jones"
    assert document["emails"] == [{"value": "carol@a.example", "primary": True}]
    assert document["externalId"] == "okta-1" and document["active"] is True
    assert user.organization == org_a and user.full_name == "Carol Jones" and user.role == "user"
    assert not user.has_usable_password()
    assert AuditEvent.objects.filter(action="user.create", target_uuid=user.uuid).exists()


def test_it_takes_the_name_from_given_and_family_names(scim_a):
    response = scim_a.post("Users", user_body("dan@a.example", name={"givenName": "Dan", "familyName": "Ode"}))

    assert response.json()["displayName"] == "Dan Ode"


def test_it_reads_a_user_by_id(bob, scim_a):
    response = scim_a.get(f"Users/{bob.uuid}")

    assert response.status_code == 200
    assert response.json()["userName"] == "bob@a.example"
    assert response.json()["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:User"]


def test_it_replaces_a_user(provisioned, scim_a):
    carol = provisioned("carol@a.example", displayName="Carol", externalId="x-1")

    response = scim_a.put(f"Users/{carol['id']}", user_body("carol.jones@a.example", displayName="Carol Jones"))

    assert response.status_code == 200, response.content
    assert response.json()["userName"] == "carol.jones@a.example"
    assert "externalId" not in response.json()  # PUT replaces: what is not sent is cleared
    user = User.objects.get(uuid=carol["id"])
    assert (user.email, user.full_name, user.scim_external_id) == ("carol.jones@a.example", "Carol Jones", None)


def test_it_patches_attributes_with_and_without_paths(provisioned, scim_a):
    carol = provisioned("carol@a.example", displayName="Carol")

    response = scim_a.patch(f"Users/{carol['id']}",
                            op("replace", "displayName", "Carol Jones"),
                            op("Add", "externalId", "azure-7"),  # Azure AD capitalizes op names
                            op("replace", value={"userName": "cj@a.example"}))

    assert response.status_code == 200, response.content
    assert response.json()["displayName"] == "Carol Jones"
    assert response.json()["externalId"] == "azure-7"
    assert response.json()["userName"] == "cj@a.example"

    response = scim_a.patch(f"Users/{carol['id']}", op("remove", "name.formatted"), op("remove", "externalId"))

    assert "displayName" not in response.json() and "externalId" not in response.json()
    assert User.objects.get(uuid=carol["id"]).full_name == ""


def test_it_lists_the_org_users_with_attribute_selection(alice, bob, scim_a):
    response = scim_a.get("Users", attributes="userName")

    assert response.json()["totalResults"] == 2
    assert {tuple(sorted(r)) for r in response.json()["Resources"]} == {("id", "schemas", "userName")}

    response = scim_a.get("Users", excludedAttributes="groups,emails,meta")
    assert all("emails" not in r and "meta" not in r and "userName" in r for r in response.json()["Resources"])


def test_a_deleted_user_is_gone_for_scim_but_kept_by_haven(bob, scim_a):
    response = scim_a.delete(f"Users/{bob.scim_id}")

    assert response.status_code == 204
    assert scim_a.get(f"Users/{bob.uuid}").status_code == 404
    assert scim_a.patch(f"Users/{bob.uuid}", op("replace", "active", True)).status_code == 404
    assert scim_a.get("Users", filter='userName eq "bob@a.example"').json()["totalResults"] == 0
    bob.refresh_from_db()
    assert bob.is_active is False  # the row (and its keys and archives) stays


def test_provisioning_a_deleted_user_again_relinks_the_same_account(bob, scim_a):
    scim_a.delete(f"Users/{bob.scim_id}")

    response = scim_a.post("Users", user_body("bob@a.example", displayName="Bob"))

    assert response.status_code == 201, response.content
    assert response.json()["id"] == str(bob.uuid)
    bob.refresh_from_db()
    assert bob.is_active and bob.scim_id == str(bob.uuid)
    assert User.objects.filter(email="bob@a.example").count() == 1


def test_a_user_name_taken_in_the_same_org_is_a_conflict(bob, scim_a):
    response = scim_a.post("Users", user_body("Bob@A.example"))

    assert response.status_code == 409
    assert response.json()["scimType"] == "uniqueness"


def test_renaming_to_a_taken_user_name_is_refused(alice, bob, mallory, scim_a):
    same_org = scim_a.patch(f"Users/{bob.uuid}", op("replace", "userName", alice.email))
    other_org = scim_a.patch(f"Users/{bob.uuid}", op("replace", "userName", "mallory@b.example"))

    assert same_org.status_code == 409
    assert other_org.status_code == 400 and other_org.json()["scimType"] == "invalidValue"
    bob.refresh_from_db()
    assert bob.email == "bob@a.example"


def test_attributes_may_name_sub_attributes_and_schema_urns(provisioned, scim_a):
    carol = provisioned("carol@a.example", displayName="Carol Jones")

    response = scim_a.get(f"Users/{carol['id']}",
                          attributes="name.formatted,urn:ietf:params:scim:schemas:core:2.0:User:userName")

    assert response.json() == {"schemas": carol["schemas"], "id": carol["id"], "userName": "carol@a.example",
                               "name": {"formatted": "Carol Jones"}}

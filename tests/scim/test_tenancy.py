"""A token of org B gets 404 for every resource of org A, whatever the method, and changes nothing."""
import pytest

from accounts.models import Group, User
from tests.scim.conftest import group_body, op, user_body


@pytest.fixture
def engineering(org_a, bob):
    group = Group.objects.create(organization=org_a, name="Engineering")
    group.members.add(bob)
    return group


def _requests(kind: str, obj):
    path = f"{kind}/{obj.scim_id}"
    body = user_body("taken@a.example") if kind == "Users" else group_body("Taken")
    return [
        ("GET", lambda scim: scim.get(path)),
        ("PUT", lambda scim: scim.put(path, body)),
        ("PATCH", lambda scim: scim.patch(path, op("replace", "active" if kind == "Users" else "displayName",
                                                   False if kind == "Users" else "Taken"))),
        ("DELETE", lambda scim: scim.delete(path)),
    ]


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("kind", ["Users", "Groups"])
def test_another_orgs_token_gets_404_for_everything(bob, engineering, scim_a, scim_b, kind, method):
    obj = bob if kind == "Users" else engineering
    request = dict(_requests(kind, obj))[method]

    response = request(scim_b)

    assert response.status_code == 404
    assert response.json()["detail"] == f"Resource {obj.scim_id} not found"
    assert request(scim_a).status_code in (200, 204)  # the same request works for org A's own IdP


def test_nothing_changed_after_another_orgs_attempts(bob, engineering, scim_b):
    for kind, obj in (("Users", bob), ("Groups", engineering)):
        for _, request in _requests(kind, obj):
            request(scim_b)

    bob.refresh_from_db()
    assert bob.is_active and bob.email == "bob@a.example" and bob.scim_id == str(bob.uuid)
    engineering.refresh_from_db()
    assert engineering.name == "Engineering" and list(engineering.members.all()) == [bob]


def test_lists_show_only_the_token_orgs_resources(alice, bob, mallory, engineering, scim_b):
    users = scim_b.get("Users").json()
    groups = scim_b.get("Groups").json()

    assert [r["userName"] for r in users["Resources"]] == ["mallory@b.example"]
    assert users["totalResults"] == 1
    assert groups["totalResults"] == 0


def test_a_group_of_org_b_can_not_reference_org_a_users(bob, scim_b):
    response = scim_b.post("Groups", group_body("Sneaky", bob.scim_id))

    assert response.status_code == 400
    assert not Group.objects.filter(name="Sneaky").exists()
    assert User.objects.get(pk=bob.pk).haven_groups.count() == 0

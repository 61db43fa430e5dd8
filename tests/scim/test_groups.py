"""Groups over SCIM are the organization's own groups; membership sets roles through Group.role."""
from accounts.models import AuditEvent, Group, Role, User
from tests.scim.conftest import group_body, op


def _group_of(response) -> Group:
    assert response.status_code in (200, 201), response.content
    return Group.objects.get(uuid=response.json()["id"])


def test_it_creates_a_group_with_its_members(org_a, alice, bob, scim_a):
    response = scim_a.post("Groups", group_body("Engineering", bob.scim_id, alice.scim_id, externalId="g-1"))

    group = _group_of(response)
    assert response.status_code == 201
    assert group.organization == org_a and group.scim_id == str(group.uuid)
    assert set(group.members.all()) == {alice, bob}
    members = response.json()["members"]
    assert {m["value"] for m in members} == {str(alice.uuid), str(bob.uuid)}
    assert all(m["type"] == "User" and m["$ref"].endswith(f"/scim/v2/Users/{m['value']}") for m in members)
    assert scim_a.get(f"Users/{bob.uuid}").json()["groups"][0]["display"] == "Engineering"
    assert AuditEvent.objects.filter(action="group.create", target_uuid=group.uuid).exists()


def test_it_replaces_and_renames_a_group(alice, bob, scim_a):
    group = _group_of(scim_a.post("Groups", group_body("Eng", bob.scim_id)))

    response = scim_a.put(f"Groups/{group.uuid}", group_body("Engineering", alice.scim_id))

    group = _group_of(response)
    assert group.name == "Engineering" and list(group.members.all()) == [alice]


def test_patch_adds_and_removes_members_in_every_dialect(org_a, alice, bob, scim_a):
    from accounts.services import user_ensure

    carol = user_ensure(organization=org_a, email="carol@a.example", role="user", password=None).user
    group = _group_of(scim_a.post("Groups", group_body("Eng")))
    path = f"Groups/{group.uuid}"

    scim_a.patch(path, op("add", "members", [{"value": alice.scim_id}, {"value": bob.scim_id}]))
    scim_a.patch(path, op("add", "members", [{"value": carol.scim_id}]))
    assert set(group.members.all()) == {alice, bob, carol}

    scim_a.patch(path, op("remove", f'members[value eq "{alice.scim_id}"]'))  # RFC 7644
    scim_a.patch(path, op("Remove", "members", [{"value": bob.scim_id}]))  # Okta, Azure AD
    assert list(group.members.all()) == [carol]

    scim_a.patch(path, op("replace", "members", [{"value": bob.scim_id}]))
    assert list(group.members.all()) == [bob]

    response = scim_a.patch(path, op("remove", "members"))
    assert "members" not in response.json() and not group.members.exists()


def test_membership_sets_roles_from_the_group_role(org_a, alice, bob, scim_a):
    admins = Group.objects.create(organization=org_a, name="Haven admins", role=Role.ORG_ADMIN)
    analysts = Group.objects.create(organization=org_a, name="Analysts", role=Role.SECURITY_ANALYST)

    scim_a.patch(f"Groups/{admins.uuid}", op("add", "members", [{"value": bob.scim_id}]))
    scim_a.patch(f"Groups/{analysts.uuid}", op("add", "members", [{"value": bob.scim_id}]))
    assert User.objects.get(pk=bob.pk).role == Role.ORG_ADMIN  # the highest role wins

    scim_a.patch(f"Groups/{admins.uuid}", op("remove", f'members[value eq "{bob.scim_id}"]'))
    assert User.objects.get(pk=bob.pk).role == Role.SECURITY_ANALYST

    assert scim_a.delete(f"Groups/{analysts.uuid}").status_code == 204
    assert User.objects.get(pk=bob.pk).role == Role.USER
    assert not Group.objects.filter(pk=analysts.pk).exists()


def test_deleting_a_user_takes_them_out_of_groups(org_a, bob, scim_a):
    admins = Group.objects.create(organization=org_a, name="Haven admins", role=Role.ORG_ADMIN)
    scim_a.patch(f"Groups/{admins.uuid}", op("add", "members", [{"value": bob.scim_id}]))

    scim_a.delete(f"Users/{bob.uuid}")

    assert not admins.members.exists()
    assert User.objects.get(pk=bob.pk).role == Role.USER
    assert "members" not in scim_a.get(f"Groups/{admins.uuid}").json()


def test_group_names_are_unique_per_organization_only(org_b, scim_a, scim_b):
    assert scim_b.post("Groups", group_body("Engineering")).status_code == 201
    assert scim_a.post("Groups", group_body("Engineering")).status_code == 201

    response = scim_a.post("Groups", group_body("Engineering"))

    assert response.status_code == 409 and response.json()["scimType"] == "uniqueness"


def test_members_must_be_users_of_the_organization(bob, mallory, scim_a):
    response = scim_a.post("Groups", group_body("Eng", bob.scim_id, mallory.scim_id))

    assert response.status_code == 400 and response.json()["scimType"] == "invalidValue"
    assert not Group.objects.exists()


def test_a_group_can_not_take_another_orgs_user_by_patch(org_a, mallory, scim_a):
    group = Group.objects.create(organization=org_a, name="Eng")

    response = scim_a.patch(f"Groups/{group.uuid}", op("add", "members", [{"value": mallory.scim_id}]))

    assert response.status_code == 400
    assert not group.members.exists()
    assert User.objects.get(pk=mallory.pk).role == Role.ORG_ADMIN

"""Customer-visible ids are immutable UUIDs; SCIM ids use them too."""


def test_scim_id_is_the_uuid(alice):
    alice.refresh_from_db()
    assert alice.scim_id == str(alice.uuid)


def test_per_org_groups_allow_the_same_name_in_two_orgs(org_a, org_b):
    from accounts.models import Group

    Group.objects.create(organization=org_a, name="Engineering")
    Group.objects.create(organization=org_b, name="Engineering")
    assert Group.objects.filter(name="Engineering").count() == 2

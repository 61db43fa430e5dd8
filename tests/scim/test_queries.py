"""A page of users costs the same few queries whatever its size (no query per user)."""
import pytest

from accounts.models import Group, User


@pytest.mark.parametrize("filter_", [None, 'userName co "@"'])
def test_listing_users_is_not_n_plus_one(org_a, scim_a, django_assert_max_num_queries, filter_):
    group = Group.objects.create(organization=org_a, name="Everyone")
    for n in range(30):
        group.members.add(User.objects.create_user(f"user{n}@a.example", None, organization=org_a))

    with django_assert_max_num_queries(6):
        response = scim_a.get("Users", **({"filter": filter_} if filter_ else {}))

    assert response.json()["totalResults"] == 30
    assert all(r["groups"][0]["display"] == "Everyone" for r in response.json()["Resources"])

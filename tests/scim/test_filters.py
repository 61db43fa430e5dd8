"""`filter=` and paging, confined to the token's organization whatever the filter says."""
import pytest

from accounts.models import Group
from accounts.services import user_ensure
from tests.scim.conftest import group_body


def _names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return sorted(r.get("userName") or r.get("displayName") for r in response.json()["Resources"])


def test_it_finds_a_user_by_user_name_case_insensitively(alice, bob, scim_a):
    response = scim_a.get("Users", filter='userName eq "BOB@a.example"')

    assert _names(response) == ["bob@a.example"]
    assert response.json()["totalResults"] == 1


@pytest.mark.parametrize("query", [
    'userName eq "mallory@b.example"',
    'userName co "@"',
    'userName co "b.example"',
    'userName eq "mallory@b.example" or userName co "@"',  # OR must not escape the org scope
    'not (userName eq "nobody")',
    'userName pr',
    'emails[value co "@"]',
    'id pr and active eq true',
    'urn:ietf:params:scim:schemas:core:2.0:User:userName co "@"',
])
def test_a_filter_never_reaches_another_orgs_users(alice, bob, mallory, scim_a, query):
    names = _names(scim_a.get("Users", filter=query))

    assert "mallory@b.example" not in names
    assert set(names) <= {"alice@a.example", "bob@a.example"}


def test_the_search_endpoint_is_scoped_too(alice, mallory, scim_a):
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": 'userName co "@"'}

    assert _names(scim_a.post("Users/.search", body)) == ["alice@a.example"]
    assert _names(scim_a.post(".search", body)) == ["alice@a.example"]  # Groups have no userName: no match
    assert _names(scim_a.post(".search", {**body, "filter": None})) == ["alice@a.example"]


def test_pages_follow_start_index_and_count(org_a, scim_a):
    for n in range(5):
        user_ensure(organization=org_a, email=f"user{n}@a.example", role="user", password=None)
    everyone = _names(scim_a.get("Users"))

    first = scim_a.get("Users", startIndex=1, count=2).json()
    last = scim_a.get("Users", startIndex=5, count=2).json()

    assert (first["totalResults"], first["itemsPerPage"], first["startIndex"]) == (5, 2, 1)
    assert (last["itemsPerPage"], last["startIndex"]) == (1, 5)
    pages = [scim_a.get("Users", startIndex=i, count=2).json()["Resources"] for i in (1, 3, 5)]
    assert sorted(r["userName"] for page in pages for r in page) == everyone
    assert scim_a.get("Users", count=0).json() == {**first, "itemsPerPage": 0, "Resources": []}


def test_groups_are_filtered_by_name_and_membership(org_a, org_b, bob, mallory, scim_a):
    eng = scim_a.post("Groups", group_body("Engineering", bob.scim_id)).json()
    scim_a.post("Groups", group_body("Sales"))
    Group.objects.create(organization=org_b, name="Engineering")

    assert _names(scim_a.get("Groups", filter='displayName eq "Engineering"')) == ["Engineering"]
    # Azure AD checks membership this way before adding or removing a member.
    member = f'id eq "{eng["id"]}" and members[value eq "{bob.scim_id}"]'
    assert _names(scim_a.get("Groups", filter=member, excludedAttributes="members")) == ["Engineering"]
    assert _names(scim_a.get("Groups", filter=f'members[value eq "{mallory.scim_id}"]')) == []


@pytest.mark.parametrize("query", ['nickName eq "x"', 'userName eq', '((', 'userName zz "x"'])
def test_an_invalid_filter_is_a_400(alice, scim_a, query):
    response = scim_a.get("Users", filter=query)

    assert response.status_code == 400
    assert response.json()["scimType"] == "invalidFilter"


@pytest.mark.parametrize("query", ['nickName eq "x"', '(('])
def test_the_root_search_refuses_a_filter_no_resource_type_understands(alice, scim_a, query):
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": query}

    response = scim_a.post(".search", body)

    assert response.status_code == 400 and response.json()["scimType"] == "invalidFilter"


def test_search_takes_attributes_and_paging_from_its_body(alice, bob, scim_a):
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "attributes": ["userName"],
            "startIndex": 2, "count": 1}

    response = scim_a.post("Users/.search", body).json()

    assert (response["totalResults"], response["startIndex"], response["itemsPerPage"]) == (2, 2, 1)
    assert set(response["Resources"][0]) == {"schemas", "id", "userName"}

"""ServiceProviderConfig, ResourceTypes and Schemas describe exactly what Haven serves."""
from tests.scim.conftest import GROUP_URN, USER_URN

LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def test_service_provider_config_announces_bearer_tokens_patch_and_filters(scim_a):
    config = scim_a.get("ServiceProviderConfig").json()

    assert config["patch"]["supported"] and config["filter"]["supported"]
    assert not config["bulk"]["supported"] and not config["changePassword"]["supported"]
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"


def test_resource_types_are_a_list_with_relative_endpoints(scim_a):
    response = scim_a.get("ResourceTypes").json()

    assert response["schemas"] == [LIST_URN] and response["totalResults"] == 2
    assert {(r["id"], r["endpoint"], r["schema"]) for r in response["Resources"]} == {
        ("User", "/Users", USER_URN), ("Group", "/Groups", GROUP_URN)}
    assert scim_a.get("ResourceTypes/User").json()["endpoint"] == "/Users"
    assert scim_a.get("ResourceTypes/Device").status_code == 404


def test_schemas_publish_the_attributes_haven_keeps(scim_a):
    response = scim_a.get("Schemas").json()

    assert response["schemas"] == [LIST_URN] and response["totalResults"] == 2
    user = scim_a.get(f"Schemas/{USER_URN}").json()
    assert {a["name"] for a in user["attributes"]} == {"userName", "name", "displayName", "active", "emails", "groups"}
    assert user["meta"]["location"] == f"http://testserver/scim/v2/Schemas/{USER_URN}"
    assert scim_a.get("Schemas/urn:ietf:params:scim:schemas:extension:enterprise:2.0:User").status_code == 404

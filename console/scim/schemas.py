"""What Haven's SCIM service publishes about itself: schemas, resource types, its configuration.

Clients and checkers build their models from /Schemas, so Haven publishes exactly the attributes
it stores rather than django-scim2's full RFC 7643 schemas (phone numbers, addresses, the
enterprise extension...), which it would silently drop. Read-only attributes are derived.
"""
from urllib.parse import urljoin

from django.urls import reverse
from django_scim import constants
from django_scim.models import SCIMServiceProviderConfig
from django_scim.utils import default_base_scim_location_getter, get_base_scim_location_getter

MAX_RESULTS = 200


def _attribute(name: str, type_: str = "string", *, required: bool = False, mutability: str = "readWrite",
               multi: bool = False, uniqueness: str = "none", sub: list | None = None,
               reference_types: list[str] | None = None, canonical_values: list[str] | None = None,
               description: str = "") -> dict:
    attribute = {
        "name": name, "type": type_, "multiValued": multi, "description": description or name,
        "required": required, "caseExact": False, "mutability": mutability, "returned": "default",
        "uniqueness": uniqueness,
    }
    if sub is not None:
        attribute["subAttributes"] = sub
    if reference_types:
        attribute["referenceTypes"] = reference_types
    if canonical_values:
        attribute["canonicalValues"] = canonical_values
    return attribute


USER_SCHEMA = {
    "id": constants.SchemaURI.USER,
    "name": "User",
    "description": "A person who backs up devices to Haven",
    "attributes": [
        _attribute("userName", required=True, uniqueness="server",
                   description="The person's email address, unique across Haven"),
        _attribute("name", "complex", mutability="readOnly", sub=[
            _attribute("formatted", mutability="readOnly", description="The full name (same as displayName)"),
        ]),
        _attribute("displayName", description="The full name"),
        _attribute("active", "boolean", required=True,
                   description="false deactivates the person and deauthorizes all of their devices"),
        _attribute("emails", "complex", multi=True, mutability="readOnly", sub=[
            _attribute("value", mutability="readOnly"),
            _attribute("primary", "boolean", mutability="readOnly"),
        ], description="The userName, as the primary email"),
        _attribute("groups", "complex", multi=True, mutability="readOnly", sub=[
            _attribute("value", mutability="readOnly"),
            _attribute("$ref", "reference", mutability="readOnly", reference_types=["Group"]),
            _attribute("display", mutability="readOnly"),
        ]),
    ],
}

GROUP_SCHEMA = {
    "id": constants.SchemaURI.GROUP,
    "name": "Group",
    "description": "A group of one organization; its mapped role goes to its members",
    "attributes": [
        _attribute("displayName", required=True, uniqueness="server",
                   description="The group's name, unique in the organization"),
        _attribute("members", "complex", multi=True, sub=[
            _attribute("value", mutability="immutable", description="The id of a user"),
            _attribute("$ref", "reference", mutability="immutable", reference_types=["User"]),
            _attribute("type", mutability="immutable", canonical_values=["User"],
                       description="Haven groups hold users only"),
        ]),
    ],
}


def _location(request, url_name: str, **kwargs) -> str:
    return urljoin(get_base_scim_location_getter()(request), reverse(url_name, kwargs=kwargs or None))


def published_schemas(request) -> dict[str, dict]:
    """Schema id -> schema document, with the meta a client needs to fetch it again."""
    return {
        schema["id"]: {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"], **schema,
                       "meta": {"resourceType": "Schema",
                                "location": _location(request, "scim:schemas", uuid=schema["id"])}}
        for schema in (USER_SCHEMA, GROUP_SCHEMA)
    }


def schemas_getter() -> list[dict]:
    """django-scim2's SCHEMAS_GETTER (used by its own SchemasView, which Haven replaces)."""
    return [USER_SCHEMA, GROUP_SCHEMA]


def resource_type(request, *, name: str, endpoint: str, schema: str, description: str) -> dict:
    """RFC 7643 §6: `endpoint` is relative to the base URL; django-scim2 returns an absolute path,
    which makes clients request /scim/v2/scim/v2/Users."""
    return {
        "schemas": [constants.SchemaURI.RESOURCE_TYPE], "id": name, "name": name, "endpoint": endpoint,
        "description": description, "schema": schema,
        "meta": {"resourceType": "ResourceType", "location": _location(request, "scim:resource-types", uuid=name)},
    }


def base_location(request=None, *args, **kwargs) -> str:
    """Locations and $refs point where the client reached Haven (the request's host, which
    ALLOWED_HOSTS already vetted) rather than one configured NETLOC."""
    return request.build_absolute_uri("/") if request is not None else default_base_scim_location_getter()


class ServiceProviderConfig(SCIMServiceProviderConfig):
    """What Haven implements: PATCH and filters yes; bulk, sort, ETags and password changes no."""

    def to_dict(self) -> dict:
        config = super().to_dict()
        config.update({
            "filter": {"supported": True, "maxResults": MAX_RESULTS},
            "changePassword": {"supported": False},
        })
        if not config.get("documentationUri"):
            config.pop("documentationUri", None)
        return config

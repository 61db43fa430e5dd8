"""django-scim2 adapters for Haven's users and groups (USER_ADAPTER / GROUP_ADAPTER).

django-scim2's adapters assume Django's stock User and Group, implement PATCH for a handful of
attributes (501 or 500 for the rest) and ignore a Group's `members` on POST. Haven's adapters read
a document into field values (POST and PUT), apply PATCH operations to the same field values, and
write both through one service call; references to members go through the org-scoped selector.
"""
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django_scim import constants
from django_scim.adapters import SCIMGroup, SCIMUser
from django_scim.exceptions import BadRequestError

from console.scim import services
from console.scim.documents import (
    attributes_select,
    boolean,
    compact,
    keys_lowered,
    patch_operations,
    printable,
    string_or_none,
)
from console.scim.schemas import resource_type
from console.scim.selectors import scim_users


def _required(value, name: str, max_length: int) -> str:
    value = string_or_none(value, name, max_length)
    if not value:
        raise BadRequestError(f"{name} is required", scim_type="invalidValue")
    return value


def _user_name(value) -> str:
    """Haven stores userName as the user's email, lower-cased because userName is case-insensitive
    (RFC 7643 §4.1.1 leaves its form to the IdP; Haven needs an address: in a verified domain,
    checked by the service, and what SAML matches on)."""
    user_name = _required(value, "userName", 254).lower()
    if not _is_email(user_name):
        raise BadRequestError("userName must be an email address", scim_type="invalidValue")
    return user_name


def _full_name(document: dict) -> str:
    """displayName, else name.formatted, else givenName + familyName (what Okta sends). A control
    character in any of them is refused, whether or not it is the part Haven keeps."""
    name = keys_lowered(document.get("name"))
    for key, part in [*name.items(), ("displayName", document.get("displayname"))]:
        printable(part, key if key == "displayName" else f"name.{key}")
    given_family = " ".join(part for part in (name.get("givenname"), name.get("familyname"))
                            if isinstance(part, str) and part.strip())
    for candidate in (document.get("displayname"), name.get("formatted"), given_family):
        if string_or_none(candidate, "displayName", 200):
            return candidate.strip()
    return ""


def _member_ids(value) -> set[str]:
    members = [value] if isinstance(value, dict) else value if isinstance(value, list) else None
    if members is None or not all(isinstance(m, dict) and isinstance(m.get("value"), str) for m in members):
        raise BadRequestError('members must be a list of {"value": "<user id>"}', scim_type="invalidValue")
    return {member["value"] for member in members}


def _is_email(value: str) -> bool:
    try:
        validate_email(value)
    except ValidationError:
        return False
    return True


class HavenAdapter:
    """Shared by both adapters: compact documents honouring `attributes`/`excludedAttributes`,
    PATCH applied as field changes followed by the same save as PUT, and an org from the token."""

    @property
    def organization(self):
        return self.request.scim_organization

    def to_dict(self) -> dict:
        selection = getattr(self.request, "scim_selection", None) or (
            self.request.GET.get("attributes"), self.request.GET.get("excludedAttributes"))
        return attributes_select(compact(self.document()), *selection)

    def validate_dict(self, d) -> None:
        """Values are checked where they are read (from_dict, patch): one place per attribute."""

    def handle_operations(self, operations) -> None:
        """PatchView runs this in a transaction: the row stays locked from read to write, so two
        concurrent PATCHes (an IdP adding two members at once) both land."""
        self.obj = type(self.obj).objects.select_for_update().get(pk=self.obj.pk)
        self.load_current()
        for op, path, value in patch_operations(operations):
            if not path.foreign:  # attributes of schemas Haven does not serve are ignored, as in PUT
                self.patch(op, path, value)
        self.save()

    @staticmethod
    def _not_removable(op: str, name: str) -> None:
        if op == "remove":
            raise BadRequestError(f"{name} is required and cannot be removed", scim_type="mutability")


class ScimUser(HavenAdapter, SCIMUser):
    active: bool | None = None

    @property
    def display_name(self) -> str:
        return self.obj.full_name or self.obj.email

    def document(self) -> dict:
        user = self.obj
        return {
            "schemas": [constants.SchemaURI.USER],
            "id": self.id,
            "externalId": user.scim_external_id,
            "userName": user.email,
            "name": {"formatted": user.full_name} if user.full_name else None,
            "displayName": user.full_name,
            "active": user.is_active,
            "emails": [{"value": user.email, "primary": True}] if _is_email(user.email) else None,
            "groups": [{"value": g.id, "$ref": g.location, "display": g.display_name}
                       for g in (ScimGroup(group, self.request) for group in user.haven_groups.all())],
            "meta": {"resourceType": "User", "created": user.date_joined.isoformat(),
                     "lastModified": user.date_joined.isoformat(), "location": self.location},
        }

    def from_dict(self, d: dict) -> None:
        """POST and PUT: attributes Haven does not keep are ignored; `active` absent keeps the
        current state (a new user is active)."""
        d = keys_lowered(d)
        self.fields = {"email": _user_name(d.get("username")), "full_name": _full_name(d),
                       "scim_external_id": string_or_none(d.get("externalid"), "externalId", 254)}
        if d.get("active") is not None:
            self.active = boolean(d["active"], "active")
        elif self.obj.pk is None:
            self.active = True

    def load_current(self) -> None:
        user = self.obj
        self.fields = {"email": user.email, "full_name": user.full_name, "scim_external_id": user.scim_external_id}

    def patch(self, op: str, path, value) -> None:
        """Read-only attributes (emails, groups, id, meta) and parts of the name Haven does not keep
        (givenName, familyName, which Azure AD patches one by one) are ignored, as PUT ignores them."""
        if path.attr == "username":
            self._not_removable(op, "userName")
            self.fields["email"] = _user_name(value)
        elif path.attr == "displayname" or (path.attr == "name" and path.sub in (None, "formatted")):
            if op == "remove":
                self.fields["full_name"] = ""
            elif path.attr == "name" and path.sub is None:
                self.fields["full_name"] = _full_name({"name": value}) or self.fields["full_name"]
            else:
                self.fields["full_name"] = string_or_none(value, "displayName", 200) or ""
        elif path.attr == "name":  # givenName, familyName...: not kept, but never with a control character
            printable(value, f"name.{path.sub}")
        elif path.attr == "active":
            self._not_removable(op, "active")
            self.active = boolean(value, "active")
        elif path.attr == "externalid":
            self.fields["scim_external_id"] = None if op == "remove" else string_or_none(value, "externalId", 254)

    def save(self) -> None:
        self.obj = services.scim_user_save(organization=self.organization, user=self.obj, fields=self.fields,
                                           active=self.active, actor_label=self.request.scim_actor)

    def delete(self) -> None:
        services.scim_user_retire(user=self.obj, actor_label=self.request.scim_actor)

    @classmethod
    def resource_type_dict(cls, request=None) -> dict:
        return resource_type(request, name="User", endpoint="/Users", schema=constants.SchemaURI.USER,
                             description="People who back up to Haven")


class ScimGroup(HavenAdapter, SCIMGroup):
    member_ids: set[str] | None = None

    def document(self) -> dict:
        group = self.obj
        members = [ScimUser(user, self.request) for user in scim_users(self.organization).filter(haven_groups=group)]
        return {
            "schemas": [constants.SchemaURI.GROUP],
            "id": self.id,
            "externalId": group.scim_external_id,
            "displayName": group.name,
            "members": [{"value": m.id, "$ref": m.location, "type": "User"} for m in members],
            "meta": {"resourceType": "Group", "created": group.created_at.isoformat(),
                     "lastModified": group.created_at.isoformat(), "location": self.location},
        }

    def from_dict(self, d: dict) -> None:
        d = keys_lowered(d)
        self.obj.name = _required(d.get("displayname"), "displayName", 200)
        self.obj.scim_external_id = string_or_none(d.get("externalid"), "externalId", 254)
        self.member_ids = _member_ids(d.get("members") or [])

    def load_current(self) -> None:
        self.member_ids = set(scim_users(self.organization).filter(haven_groups=self.obj)
                              .values_list("scim_id", flat=True))

    def patch(self, op: str, path, value) -> None:
        """Members are removed by `members[value eq "id"]` (RFC 7644) or, as Okta and Azure AD do,
        by path `members` with the leaving members as the value."""
        if path.attr == "displayname":
            self._not_removable(op, "displayName")
            self.obj.name = _required(value, "displayName", 200)
        elif path.attr == "externalid":
            self.obj.scim_external_id = None if op == "remove" else string_or_none(value, "externalId", 254)
        elif path.attr == "members":
            if op == "remove":
                leaving = {path.value_filter} if path.filter is not None else _member_ids(value) if value else None
                self.member_ids = self.member_ids - leaving if leaving is not None else set()
            elif path.filter is not None or path.sub:
                raise BadRequestError(f"Cannot {op} a filtered members path", scim_type="invalidPath")
            elif op == "add":
                self.member_ids = self.member_ids | _member_ids(value)
            else:
                self.member_ids = _member_ids(value)

    def save(self) -> None:
        self.obj = services.scim_group_save(organization=self.organization, group=self.obj,
                                            member_ids=self.member_ids, actor_label=self.request.scim_actor)

    def delete(self) -> None:
        services.scim_group_delete(group=self.obj, actor_label=self.request.scim_actor)

    @classmethod
    def resource_type_dict(cls, request=None) -> dict:
        return resource_type(request, name="Group", endpoint="/Groups", schema=constants.SchemaURI.GROUP,
                             description="Groups of the organization; each may map to a Haven role")

"""SCIM `filter=` as SQL, confined to the token's organization.

django-scim2 turns a filter into raw SQL over the whole table and appends `get_extras` to its
WHERE clause. Two things make that unsafe as shipped: nothing scopes the rows (every tenant's users
match), and the filter is not parenthesized, so `a or b AND <scope>` would leave `a` unscoped.
Haven wraps the filter in parentheses and appends `id IN (<the org's scim_users/scim_groups>)`,
the same selector every other SCIM query uses.
"""
from django.db.models import QuerySet
from django_scim import exceptions
from django_scim.filters import FilterQuery
from scim2_filter_parser.parser import SCIMParserError
from scim2_filter_parser.queries.sql import SQLQuery

from accounts.models import Group, User
from console.scim.selectors import scim_groups, scim_users


class UnknownFilterAttribute(exceptions.BadRequestError):
    def __init__(self, names: str):
        super().__init__(f"Cannot filter on {names}", scim_type="invalidFilter")


class ParenthesizedQuery(SQLQuery):
    """The filter's own WHERE clause, in parentheses, refusing attributes Haven does not map.

    An unmapped attribute is dropped by the transpiler (`a and nickName eq "x"` would become `a`),
    which silently widens the result; RFC 7644 §3.4.2.2 answers 400 invalidFilter instead."""

    def build_where_sql(self):
        try:
            super().build_where_sql()
        except (ValueError, IndexError, SCIMParserError) as error:  # lexer, parser, too many terms
            raise exceptions.BadRequestError(f"Invalid filter: {error}", scim_type="invalidFilter")
        unknown = [path for path in self.transpiler.attr_paths if path not in self.attr_map]
        if unknown:
            names = ", ".join(".".join(part for part in (path.attr_name, path.sub_attr) if part) for path in unknown)
            raise UnknownFilterAttribute(names)
        if self.where_sql:
            self.where_sql = f"({self.where_sql})"


def _with_urns(attr_map: dict, urn: str) -> dict:
    """Attribute names may be written with their schema URN (`urn:...:User:userName`)."""
    return {**attr_map, **{(attr, sub, urn): column for (attr, sub, _), column in attr_map.items()}}


class ScopedFilterQuery(FilterQuery):
    query_class = ParenthesizedQuery
    scope = None  # organization -> QuerySet

    @classmethod
    def get_extras(cls, q, request=None) -> tuple[str, list]:
        scoped: QuerySet = cls.scope(request.scim_organization).values("pk")
        sql, params = scoped.query.sql_with_params()
        table = cls.table_name()
        # A stable order makes startIndex/count pages consistent between requests.
        return f" AND {table}.id IN ({sql}) ORDER BY {table}.scim_id", list(params)


_user = User._meta.db_table
_group = Group._meta.db_table
_members = Group.members.through._meta.db_table


class UserFilterQuery(ScopedFilterQuery):
    model_getter = lambda: User  # noqa: E731 - django-scim2 calls it without arguments
    scope = staticmethod(scim_users)
    attr_map = _with_urns({
        ("id", None, None): f"{_user}.scim_id",
        ("externalId", None, None): f"{_user}.scim_external_id",
        ("userName", None, None): f"{_user}.email",
        ("displayName", None, None): f"{_user}.full_name",
        ("name", "formatted", None): f"{_user}.full_name",
        ("emails", "value", None): f"{_user}.email",
        ("emails", None, None): f"{_user}.email",
        ("active", None, None): f"{_user}.is_active",
    }, "urn:ietf:params:scim:schemas:core:2.0:User")


class GroupFilterQuery(ScopedFilterQuery):
    model_getter = lambda: Group  # noqa: E731
    scope = staticmethod(scim_groups)
    # Azure AD checks membership with `id eq "g" and members[value eq "u"]`.
    joins = (f"LEFT JOIN {_members} ON {_members}.group_id = {_group}.id "
             f"LEFT JOIN {_user} AS member ON member.id = {_members}.user_id",)
    attr_map = _with_urns({
        ("id", None, None): f"{_group}.scim_id",
        ("externalId", None, None): f"{_group}.scim_external_id",
        ("displayName", None, None): f"{_group}.name",
        ("members", "value", None): "member.scim_id",
        ("members", None, None): "member.scim_id",
    }, "urn:ietf:params:scim:schemas:core:2.0:Group")

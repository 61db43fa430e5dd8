"""SCIM `filter=` as SQL, confined to the token's organization.

django-scim2 turns a filter into raw SQL over the whole table and appends `get_extras` to its
WHERE clause. Two things make that unsafe as shipped: nothing scopes the rows (every tenant's users
match), and the filter is not parenthesized, so `a or b AND <scope>` would leave `a` unscoped.
Haven wraps the filter in parentheses and appends `id IN (<the org's scim_users/scim_groups>)`,
the same selector every other SCIM query uses.

The parser recurses once per term and per parenthesis, so a filter is bounded (length, terms,
nesting) before it is lexed; and the transpiler's literals are made typed: `true`/`false` reach
SQL as booleans (as the string 'TRUE' SQLite matched nothing), quoted "true" stays a string.
"""
import re

from django.db.models import QuerySet
from django_scim import exceptions
from django_scim.filters import FilterQuery
from scim2_filter_parser import ast as scim_ast
from scim2_filter_parser.lexer import SCIMLexer
from scim2_filter_parser.parser import SCIMParser, SCIMParserError
from scim2_filter_parser.queries.sql import SQLQuery
from scim2_filter_parser.transpilers.sql import Transpiler

from accounts.models import Group, User
from console.scim.selectors import scim_groups, scim_users


class UnknownFilterAttribute(exceptions.BadRequestError):
    def __init__(self, names: str):
        super().__init__(f"Cannot filter on {names}", scim_type="invalidFilter")


MAX_FILTER_LENGTH = 4096
MAX_FILTER_OPERATORS = 25  # and/or/not: 26 comparisons, the transpiler's own limit of parameters
MAX_FILTER_DEPTH = 8  # nested parentheses and brackets
_QUOTED = re.compile(r'"[^"]*"')  # the lexer's strings: no escapes
_OPERATOR = re.compile(r"\b(?:and|or|not)\b", re.IGNORECASE)


def _invalid(detail: str) -> exceptions.BadRequestError:
    return exceptions.BadRequestError(detail, scim_type="invalidFilter")


def filter_bounds_check(text) -> None:
    """Refuse, before any parsing, a filter the recursive parser and transpiler could choke on."""
    if not isinstance(text, str):
        raise _invalid("filter must be a string")
    if len(text) > MAX_FILTER_LENGTH:
        raise _invalid(f"The filter is longer than {MAX_FILTER_LENGTH} characters")
    outside_strings = _QUOTED.sub('""', text)
    if len(_OPERATOR.findall(outside_strings)) > MAX_FILTER_OPERATORS:
        raise _invalid(f"The filter has more than {MAX_FILTER_OPERATORS} logical operators")
    depth = 0
    for ch in re.sub(r"[^()\[\]]", "", outside_strings):
        depth += 1 if ch in "([" else -1
        if depth > MAX_FILTER_DEPTH:
            raise _invalid(f"The filter nests deeper than {MAX_FILTER_DEPTH} levels")


class _String(str):
    """A value the filter quoted ("true" is a string, true a boolean)."""


class TypedTranspiler(Transpiler):
    """`true`/`false` become booleans and may only be compared (eq, ne) with a boolean attribute,
    which takes nothing else; `null` is refused (RFC 7644 tests presence with `pr`)."""

    def visit_CompValue(self, node):
        if isinstance(node.value, _String):
            return str(node.value)
        if node.value == "null":
            raise _invalid('Comparing with null is not supported: use "pr" or "not (... pr)"')
        if node.value in ("true", "false"):
            return node.value == "true"
        return node.value

    def visit_AttrExpr(self, node):
        path = node.attr_path
        if node.comp_value is not None and not isinstance(path.attr_name, scim_ast.Filter):
            column = self.attr_map.get((path.attr_name, path.sub_attr.value if path.sub_attr else None, path.uri))
            value = node.comp_value.value
            boolean = not isinstance(value, _String) and value in ("true", "false")
            if column in BOOLEAN_COLUMNS:
                if isinstance(value, _String) and value.lower() in ("true", "false"):
                    node = scim_ast.AttrExpr(node.value, path, scim_ast.CompValue(value.lower()))  # Azure AD quotes
                elif not boolean or node.value.lower() not in ("eq", "ne"):
                    raise _invalid(f"{path.attr_name} is compared with true or false, by eq or ne")
            elif boolean and column is not None:
                raise _invalid(f"{path.attr_name} is not a boolean")
        return super().visit_AttrExpr(node)


class ParenthesizedQuery(SQLQuery):
    """The filter's own WHERE clause, in parentheses, refusing attributes Haven does not map.

    An unmapped attribute is dropped by the transpiler (`a and nickName eq "x"` would become `a`),
    which silently widens the result; RFC 7644 §3.4.2.2 answers 400 invalidFilter instead."""

    def build_where_sql(self):
        filter_bounds_check(self.filter)
        try:
            tokens = list(SCIMLexer().tokenize(self.filter))
            for token in tokens:
                if token.type == "COMP_VALUE":
                    token.value = _String(token.value)
            self.ast = SCIMParser().parse(iter(tokens))
            self.transpiler = TypedTranspiler(self.attr_map)
            self.where_sql, self.params_dict = self.transpiler.transpile(self.ast)
        except (ValueError, IndexError, SCIMParserError, RecursionError) as error:  # lexer, parser, too many terms
            raise _invalid(f"Invalid filter: {error}")
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
BOOLEAN_COLUMNS = frozenset({f"{_user}.is_active"})


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

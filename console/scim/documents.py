"""Pure helpers on SCIM JSON documents: PATCH paths, attribute selection, value checks.

Kept free of models so each rule of RFC 7644 reads (and is tested) on its own.
"""
import re
import unicodedata
from dataclasses import dataclass

from django_scim import constants
from django_scim.exceptions import BadRequestError

CORE_URNS = {constants.SchemaURI.USER.lower(), constants.SchemaURI.GROUP.lower()}
ALWAYS_RETURNED = {"id", "schemas"}  # RFC 7643 §3.1/§7: returned whatever `attributes` asks

_PATH = re.compile(
    r"^(?:(?P<urn>urn:[^\[\]]+):)?(?P<attr>[A-Za-z$][\w$-]*)(?:\[(?P<filter>[^\]]*)\])?(?:\.(?P<sub>[A-Za-z$][\w$-]*))?$"
)
_VALUE_EQ = re.compile(r'^\s*value\s+eq\s+"(?P<value>(?:[^"\\]|\\.)*)"\s*$', re.IGNORECASE)


@dataclass(frozen=True)
class AttrPath:
    """A PATCH path or attribute name, lower-cased (SCIM attribute names are case-insensitive).

    `foreign` is set for attributes of schemas Haven does not serve (an extension URN)."""

    attr: str
    sub: str | None = None
    filter: str | None = None  # the text between brackets: `members[value eq "X"]`
    foreign: bool = False

    @property
    def value_filter(self) -> str | None:
        """X of `[value eq "X"]`, the only filter Haven applies in a path (to remove one member)."""
        if self.filter is None:
            return None
        condition = _VALUE_EQ.match(self.filter)
        if condition is None:
            raise BadRequestError('Only [value eq "..."] filters are supported in paths', scim_type="invalidFilter")
        return condition["value"].replace('\\"', '"')


def path_parse(raw) -> AttrPath:
    match = _PATH.match(raw.strip()) if isinstance(raw, str) else None
    if match is None:
        raise BadRequestError(f"Invalid path {raw!r}", scim_type="invalidPath")
    urn = match["urn"]
    return AttrPath(attr=match["attr"].lower(), sub=match["sub"].lower() if match["sub"] else None,
                    filter=match["filter"], foreign=bool(urn) and urn.lower() not in CORE_URNS)


def patch_operations(operations):
    """Yield (op, AttrPath, value) for each operation, a path-less value spread per attribute."""
    if not isinstance(operations, list) or not operations:
        raise BadRequestError("PATCH needs a non-empty Operations list", scim_type="invalidSyntax")
    for operation in operations:
        if not isinstance(operation, dict):
            raise BadRequestError("Each operation must be an object", scim_type="invalidSyntax")
        op = str(operation.get("op", "")).lower()
        if op not in constants.VALID_PATCH_OPS:
            raise BadRequestError(f"Unknown PATCH op {operation.get('op')!r}", scim_type="invalidSyntax")
        path, value = operation.get("path"), operation.get("value")
        if path:
            yield op, path_parse(path), value
        elif op == "remove":
            raise BadRequestError('"remove" needs a path', scim_type="noTarget")
        elif not isinstance(value, dict):
            raise BadRequestError("An operation without a path needs an object value", scim_type="invalidValue")
        else:
            for key, item in value.items():
                yield op, path_parse(key), item


def keys_lowered(document: dict) -> dict:
    return {key.lower(): value for key, value in document.items()} if isinstance(document, dict) else {}


# Control characters (NUL, newlines, escapes), line/paragraph separators and lone surrogates:
# never part of a name or an address, and NUL or a surrogate cannot even be stored (PostgreSQL).
_UNPRINTABLE = {"Cc", "Cs", "Zl", "Zp"}


def printable(value, name: str) -> None:
    """Refuse a string holding a control character (other types are checked where they are used)."""
    if isinstance(value, str) and any(unicodedata.category(ch) in _UNPRINTABLE for ch in value):
        raise BadRequestError(f"{name} must not contain control characters", scim_type="invalidValue")


def string_or_none(value, name: str, max_length: int) -> str | None:
    if value is not None and not isinstance(value, str):
        raise BadRequestError(f"{name} must be a string", scim_type="invalidValue")
    printable(value, name)
    if value and len(value.strip()) > max_length:
        raise BadRequestError(f"{name} is longer than {max_length} characters", scim_type="invalidValue")
    return value.strip() if value and value.strip() else None


def boolean(value, name: str) -> bool:
    """Azure AD sends booleans as the strings "True"/"False" in PATCH; accept those too."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BadRequestError(f"{name} must be a boolean", scim_type="invalidValue")


def compact(document: dict) -> dict:
    """Unassigned attributes (RFC 7643 §2.5: null, empty) are left out of responses."""
    return {key: value for key, value in document.items() if value not in (None, "", [], {})}


def _names(raw) -> set[tuple[str, str | None]]:
    items = raw.split(",") if isinstance(raw, str) else raw if isinstance(raw, list) else []
    names = set()
    for item in items:
        if isinstance(item, str) and item.strip():
            path = path_parse(item)
            names.add((path.attr, path.sub))
    return names


def _pick(value, subs: set[str], keep: bool):
    def choose(item):
        return {k: v for k, v in item.items() if (k.lower() in subs) == keep} if isinstance(item, dict) else item
    return [choose(item) for item in value] if isinstance(value, list) else choose(value)


def attributes_select(document: dict, attributes=None, excluded=None) -> dict:
    """RFC 7644 §3.4.2.5 `attributes` / `excludedAttributes`: top-level names or `name.sub`."""
    wanted, unwanted = _names(attributes), _names(excluded)
    if not wanted and not unwanted:
        return document
    selected = {}
    for key, value in document.items():
        name = key.lower()
        if name in ALWAYS_RETURNED:
            selected[key] = value
        elif wanted:
            subs = {sub for attr, sub in wanted if attr == name and sub}
            if (name, None) in wanted:
                selected[key] = value
            elif subs:
                selected[key] = _pick(value, subs, keep=True)
        elif (name, None) not in unwanted:
            subs = {sub for attr, sub in unwanted if attr == name and sub}
            selected[key] = _pick(value, subs, keep=False) if subs else value
    return selected


MAX_JSON_DEPTH = 32  # a SCIM document nests 5 levels at most (PATCH > Operations > value > members > member)
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def json_depth_check(text: str) -> None:
    """Refuse JSON nested deeper than MAX_JSON_DEPTH before parsing it: `[` x 1000 would exhaust
    the parser's recursion (a 500) long before the body size limit is reached."""
    depth = 0
    for ch in re.sub(r"[^\[\]{}]", "", _JSON_STRING.sub("", text)):
        depth += 1 if ch in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            raise BadRequestError(f"The body is nested deeper than {MAX_JSON_DEPTH} levels", scim_type="invalidSyntax")

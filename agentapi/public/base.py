"""What every public-API view shares: the API-key authentication, a scope, a rate limit per
client, an audit row per call, and the keyset ("cursor") pagination of lists."""
import base64
import binascii
import json
from dataclasses import dataclass

from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from accounts.api_clients import api_call_record, api_client_lookup
from accounts.models import ApiClient

DEFAULT_LIMIT, MAX_LIMIT = 100, 500


@dataclass
class ApiClientPrincipal:
    """What `request.user` is for a public-API call: the client, never a person."""

    client: ApiClient

    is_authenticated = True
    is_anonymous = False

    def __str__(self) -> str:
        return self.client.label


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer hvp_…`; an unknown or revoked key is 401, like no key at all."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"bearer":
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header", code="invalid_key")
        client = api_client_lookup(parts[1].decode("latin-1"))
        if client is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key", code="invalid_key")
        return ApiClientPrincipal(client), client

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="haven-public-api"'


class HasScope(BasePermission):
    """The view's `required_scope` must be among the client's scopes (403 otherwise)."""

    message = "This API key lacks the scope this call needs"
    code = "insufficient_scope"

    def has_permission(self, request, view) -> bool:
        principal = request.user
        if not isinstance(principal, ApiClientPrincipal):
            return False
        if view.required_scope not in principal.client.scopes:
            self.message = f"This API key lacks the {view.required_scope} scope"
            return False
        return True


class ApiClientRateThrottle(SimpleRateThrottle):
    """Requests per client (not per address: an integration's calls may come from many hosts).

    The counter lives in Django's cache (the database cache, config/settings.py), shared by every
    web process. The rate is read on each call so tests can lower it."""

    scope = "public_api"

    def get_rate(self):
        return settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {}).get(self.scope, "600/min")

    def allow_request(self, request, view):
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view):
        if not isinstance(request.user, ApiClientPrincipal):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.client.uuid}


class PublicApiView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScope]
    throttle_classes = [ApiClientRateThrottle]
    required_scope = ""

    @property
    def client(self) -> ApiClient:
        return self.request.user.client

    def finalize_response(self, request, response, *args, **kwargs):
        # Every call of a known client is audited, refused ones (scope, 404, 429) included. A call
        # with no valid key has no organization to audit it in; the 401 is all it gets.
        principal = request.__dict__.get("_user")
        if isinstance(principal, ApiClientPrincipal):
            api_call_record(client=principal.client, method=request.method, path=request.path,
                            status=response.status_code, operation=type(self).__name__)
        return super().finalize_response(request, response, *args, **kwargs)


# --- keyset pagination ------------------------------------------------------------------------

def cursor_encode(position) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def cursor_decode(raw: str | None):
    """The position a `next` cursor named, or None for the first page; 400 if it is not one."""
    if not raw:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise exceptions.ValidationError({"cursor": ["Not a cursor this API returned"]}) from None


def page_limit(request) -> int:
    raw = request.query_params.get("limit", "")
    if raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise exceptions.ValidationError({"limit": [f"Give a whole number from 1 to {MAX_LIMIT}"]})
    return limit


def page(rows: list, limit: int, position) -> tuple[list, str | None]:
    """The page's rows and the cursor of the next page (None on the last), given limit + 1 rows."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, cursor_encode(position(rows[-1]))

"""Bearer-token authentication of SCIM requests: the token names the organization, nothing else.

django-scim2 wraps every view's dispatch in `AUTH_CHECK_MIDDLEWARE`; its default trusts
`request.user`, which a console session cookie would satisfy. Haven replaces it so that only an
organization's live SCIM token opens /scim/v2/, and the request carries that organization.
"""
import json

from django.conf import settings
from django.http import HttpResponse
from django_scim import constants
from django_scim.middleware import SCIMAuthCheckMiddleware

from accounts.services import scim_token_lookup


def scim_error_response(status: int, detail: str, scim_type: str | None = None) -> HttpResponse:
    body = {"schemas": [constants.SchemaURI.ERROR], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return HttpResponse(json.dumps(body), status=status, content_type=constants.SCIM_CONTENT_TYPE)


def body_too_large(request) -> HttpResponse | None:
    """A SCIM 413 for a body over Django's limit, judged on Content-Length before anything reads
    the body (Django would raise RequestDataTooBig on reading it, answered with an HTML page)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return scim_error_response(400, "Content-Length is not a number", "invalidSyntax")
    if limit is not None and length > limit:
        return scim_error_response(413, f"The body is larger than {limit} bytes")
    return None


class ScimTokenAuth(SCIMAuthCheckMiddleware):
    """Size first (nothing is read), then the token; django-scim2's debug log of the body only for
    an authenticated request of acceptable size."""

    def process_request(self, request):
        refused = body_too_large(request)
        if refused is not None:
            return refused
        scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
        token = scim_token_lookup(raw.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            response = scim_error_response(401, "A valid SCIM bearer token is required")
            response["WWW-Authenticate"] = 'Bearer realm="haven-scim"'
            return response
        request.scim_token = token
        request.scim_organization = token.organization
        request.scim_actor = f"scim:{token.label or token.uuid}"[:254]
        if self.should_log_request(request):
            self.log_request(request)
        return None

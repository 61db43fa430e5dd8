"""Bearer-token authentication of SCIM requests: the token names the organization, nothing else.

django-scim2 wraps every view's dispatch in `AUTH_CHECK_MIDDLEWARE`; its default trusts
`request.user`, which a console session cookie would satisfy. Haven replaces it so that only an
organization's live SCIM token opens /scim/v2/, and the request carries that organization.
"""
import json

from django.http import HttpResponse
from django_scim import constants
from django_scim.middleware import SCIMAuthCheckMiddleware

from accounts.services import scim_token_lookup


def scim_error_response(status: int, detail: str, scim_type: str | None = None) -> HttpResponse:
    body = {"schemas": [constants.SchemaURI.ERROR], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return HttpResponse(json.dumps(body), status=status, content_type=constants.SCIM_CONTENT_TYPE)


class ScimTokenAuth(SCIMAuthCheckMiddleware):
    def process_request(self, request):
        if self.should_log_request(request):
            self.log_request(request)
        scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
        token = scim_token_lookup(raw.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            response = scim_error_response(401, "A valid SCIM bearer token is required")
            response["WWW-Authenticate"] = 'Bearer realm="haven-scim"'
            return response
        request.scim_token = token
        request.scim_organization = token.organization
        request.scim_actor = f"scim:{token.label or token.uuid}"[:254]
        return None

"""Everything under /api/ answers JSON, even the errors Django produces before or around DRF."""
from django.http import JsonResponse

API_PREFIX = "/api/"
CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
         413: "request_too_large", 500: "server_error"}


def api_errors_as_json(get_response):
    """An agent parses every answer as JSON: replace Django's HTML error pages (an unknown path,
    a request Django refused while reading it, an unhandled exception) by the API's error shape.
    The error is still logged by Django's own handler; only the body changes."""

    def middleware(request):
        response = get_response(request)
        if (request.path.startswith(API_PREFIX) and response.status_code >= 400
                and not response.get("Content-Type", "").startswith("application/json")):
            status = response.status_code
            return JsonResponse({"detail": response.reason_phrase, "code": CODES.get(status, "error")}, status=status)
        return response

    return middleware

"""Every API error is JSON with a human `detail` and a machine-readable `code` agents switch on."""
from django.http import Http404
from rest_framework import exceptions
from rest_framework.views import exception_handler


def _first_code(codes) -> str:
    if isinstance(codes, str):
        return codes
    if isinstance(codes, dict):
        for value in codes.values():
            return _first_code(value)
    if isinstance(codes, list) and codes:
        return _first_code(codes[0])
    return "error"


def haven_exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": "The request is invalid", "code": "invalid", "errors": response.data}
    elif isinstance(exc, exceptions.APIException):
        code = _first_code(exc.get_codes())
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        response.data = {"detail": str(detail), "code": code}
    return response

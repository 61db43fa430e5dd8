"""Every API error is JSON with a human `detail` and a machine-readable `code` agents switch on."""
import logging

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent, TooManyFilesSent
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


class RequestTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is larger than the server accepts"
    default_code = "request_too_large"


def _refused_while_reading(exc: SuspiciousOperation) -> exceptions.APIException:
    """Django refuses some requests while DRF reads them (size, field and file counts); without
    this they would leave DRF as exceptions and come back as Django's HTML error page."""
    # Logged where Django logs the ones it handles itself, so the security log misses none.
    logging.getLogger(f"django.security.{exc.__class__.__name__}").warning("%s", exc)
    if isinstance(exc, RequestDataTooBig):
        return RequestTooLarge()
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        return exceptions.ParseError(str(exc), code="too_many_fields")
    return exceptions.ParseError("The request was refused as malformed", code="bad_request")


def haven_exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, SuspiciousOperation):
        exc = _refused_while_reading(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": "The request is invalid", "code": "invalid", "errors": response.data}
    elif isinstance(exc, exceptions.APIException):
        code = _first_code(exc.get_codes())
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        response.data = {"detail": str(detail), "code": code}
        # A refused event batch names its first bad event and field (activity/ingest.py).
        response.data.update({name: getattr(exc, name) for name in ("index", "field")
                              if getattr(exc, name, None) is not None})
    return response


# --- the API's own errors (agents switch on `code`) -----------------------------------------

class LengthRequired(exceptions.APIException):
    status_code = 411
    default_detail = "A Content-Length header is required"
    default_code = "length_required"


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large"
    default_code = "batch_too_large"


class KeyNotEscrowedError(exceptions.APIException):
    status_code = 409
    default_detail = "The user's key is not escrowed yet: no block is accepted before it is"
    default_code = "key_not_escrowed"


class KeystoreUnavailableError(exceptions.APIException):
    status_code = 503
    default_detail = "The keystore is unavailable; try again later"
    default_code = "keystore_unavailable"


class QuotaExceededError(exceptions.APIException):
    status_code = 409
    default_detail = "The storage quota is reached; ask an administrator to raise it"
    default_code = "quota_exceeded"

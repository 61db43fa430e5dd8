"""What several agent endpoints share: the body-size guard and the run lookup."""
from rest_framework import exceptions

from accounts.selectors import parse_uuid_or_404
from agentapi.exceptions import LengthRequired, PayloadTooLarge
from archives.models import BackupRun


def body_limit(request, limit: int) -> int:
    """Refuse a body over `limit` before reading it (413), and one without a length (411)."""
    raw = request.META.get("CONTENT_LENGTH") or ""
    try:
        length = int(raw)
    except ValueError:
        raise LengthRequired() from None
    if length > limit:
        raise PayloadTooLarge(f"The request body is {length} bytes; the limit is {limit}")
    return length


def run_for(archive, run_id):
    if run_id in (None, ""):
        return None
    run = BackupRun.objects.filter(archive=archive, uuid=parse_uuid_or_404(run_id)).first()
    if run is None:
        raise exceptions.NotFound("No such backup run", code="not_found")
    return run

"""JSON webhooks signed with HMAC-SHA256 (docs/siem-export.md).

`X-Haven-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: the timestamp
is signed with the body, so a receiver that refuses stale timestamps (5 minutes) and remembers
`X-Haven-Delivery` ids for that long cannot be fed a replayed request."""
import hashlib
import hmac
import json
import time

import requests

from activity.models import ExportTarget

TIMEOUT_SECONDS = 10
TOLERANCE_SECONDS = 300


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def signature_valid(secret: bytes, header: str, body: bytes, *, now: float | None = None,
                    tolerance: int = TOLERANCE_SECONDS) -> bool:
    """The receiver's check (also what the tests' receiver runs)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), f"t={timestamp},v1={parts.get('v1', '')}")


def send(target: ExportTarget, records: list[dict], *, delivery_id: str, secret: bytes) -> None:
    body = json.dumps({"delivery": delivery_id, "records": records}, separators=(",", ":")).encode()
    response = requests.post(target.url, data=body, timeout=TIMEOUT_SECONDS, allow_redirects=False, headers={
        "Content-Type": "application/json", "User-Agent": "Haven-Export/1",
        "X-Haven-Delivery": delivery_id, "X-Haven-Signature": signature(secret, int(time.time()), body)})
    if not 200 <= response.status_code < 300:
        raise OSError(f"webhook answered HTTP {response.status_code}")

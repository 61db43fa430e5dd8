"""Syslog (RFC 5424 messages) over TCP (RFC 6587) or TLS (RFC 5425), octet-counting framing: each
message is sent as `LENGTH SP MESSAGE`, so JSON or CEF payloads may hold any character."""
import json
import socket
import ssl
from datetime import UTC, datetime

from activity.export.records import cef_line, syslog_severity
from activity.models import ExportTarget

FACILITY = 16  # local0
TIMEOUT_SECONDS = 10


def syslog_message(record: dict, payload: str, *, hostname: str | None = None) -> bytes:
    pri = FACILITY * 8 + syslog_severity(record)
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    body = cef_line(record) if payload == ExportTarget.Payload.CEF else json.dumps(record, separators=(",", ":"))
    host = (hostname or socket.gethostname() or "-")[:255].replace(" ", "-")
    return f"<{pri}>1 {stamp} {host} haven - {record['type']} - {body}".encode()


def frame(message: bytes) -> bytes:
    return str(len(message)).encode() + b" " + message


def _connect(target: ExportTarget) -> socket.socket:
    raw = socket.create_connection((target.host, target.port), timeout=TIMEOUT_SECONDS)
    if not target.tls:
        return raw
    context = ssl.create_default_context(cadata=target.ca_pem or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        return context.wrap_socket(raw, server_hostname=target.host)
    except (ssl.SSLError, OSError):
        raw.close()
        raise


def send(target: ExportTarget, records: list[dict], *, delivery_id: str) -> None:
    """All records over one connection; any error raises (the delivery is retried whole; a SIEM
    deduplicates re-sent records by their uuid / event_id)."""
    data = b"".join(frame(syslog_message(record, target.payload)) for record in records)
    with _connect(target) as connection:
        connection.sendall(data)

"""File-activity ingestion (`POST /api/v1/events`, docs/protocol.md "File activity (version 1)").

A batch is validated whole before anything is written, then stored in one transaction: the
batch row first (its unique `batch_id` makes a re-sent batch a no-op), then every event with one
COPY on PostgreSQL (bulk_create elsewhere). Validation is plain Python over the decoded JSON: a
DRF serializer costs ~100 µs per event, which alone would cap ingestion well under 20,000
events/s on two cores (docs/activity.md has the figures).

Events are filed under the authenticated device, its organization and its owner; nothing in the
body can name another device. An id (batch or event) that another device already used is a
conflict, not a silent duplicate, so one device can neither probe nor shadow another's events.
"""
import gzip
import json
import math
import re
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import Device
from activity.models import EventBatch, EventCategory, EventType, FileEvent, Vector

MAX_COMPRESSED = 1024 * 1024
MAX_DECOMPRESSED = 8 * 1024 * 1024
MAX_EVENTS = 5000
MAX_AGE = timedelta(days=30)
MAX_AHEAD = timedelta(minutes=5)
AGENT_VECTORS = frozenset(Vector.values) - {Vector.CLOUD_SERVICE}

_TYPES = frozenset(EventType.values)
_CATEGORIES = frozenset(EventCategory.values)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MAX_BIGINT = 2 ** 63 - 1
# field -> longest string accepted (the model's column sizes)
_STRINGS = {"path": 4096, "dest_path": 4096, "mime_type": 127, "os_user": 128, "process": 255}
_FIELDS = frozenset({"event_id", "occurred_at", "type", "path", "dest_path", "size", "sha256", "category",
                     "mime_type", "vector", "entropy", "os_user", "process"})
_REQUIRED = ("event_id", "occurred_at", "type", "path")
COLUMNS = ("event_id", "organization_id", "device_id", "user_id", "batch_id", "occurred_at", "received_at",
           "event_type", "path", "dest_path", "file_name", "size", "sha256", "category", "mime_type", "vector",
           "entropy", "os_user", "process")


class BatchRefused(Exception):
    """The batch is refused whole; `status` and `code` are the HTTP answer."""

    def __init__(self, status: int, code: str, detail: str, *, index: int | None = None, field: str | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.index, self.field = status, code, detail, index, field


@dataclass
class IngestResult:
    batch_id: str
    accepted: int
    duplicate: bool


def batch_decode(raw: bytes, *, content_encoding: str = "") -> dict:
    """The request body as JSON, gunzipped when the agent says so, never past MAX_DECOMPRESSED."""
    encoding = content_encoding.strip().lower()
    if encoding == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(raw, MAX_DECOMPRESSED + 1)
        except zlib.error as error:
            raise BatchRefused(400, "parse_error", f"The body is not valid gzip: {error}") from None
        if len(raw) > MAX_DECOMPRESSED or inflater.unconsumed_tail:
            raise BatchRefused(413, "batch_too_large",
                               f"The batch decompresses to more than {MAX_DECOMPRESSED} bytes")
        if not inflater.eof:
            raise BatchRefused(400, "parse_error", "The gzip body is truncated")
    elif encoding not in ("", "identity"):
        raise BatchRefused(415, "unsupported_encoding", f"Content-Encoding {content_encoding!r} is not accepted; "
                                                        "send gzip or nothing")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise BatchRefused(400, "parse_error", f"The body is not JSON: {str(error)[:200]}") from None
    if not isinstance(body, dict):
        raise BatchRefused(400, "invalid_batch", "The body must be a JSON object", field="")
    return body


def _bad(index: int, field: str, problem: str) -> BatchRefused:
    return BatchRefused(400, "invalid_events", f"events[{index}].{field}: {problem}", index=index, field=field)


def _text(value, index: int, field: str, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise _bad(index, field, "must be a non-empty string" if required else "must be a string or null")
    if len(value) > _STRINGS.get(field, 4096):
        raise _bad(index, field, f"longer than {_STRINGS.get(field, 4096):,} characters")
    # PostgreSQL text holds neither NUL nor lone surrogates (JSON can carry both).
    if "\x00" in value:
        raise _bad(index, field, "contains a NUL character")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise _bad(index, field, "is not valid Unicode (lone surrogate)") from None
    return value


def _event_row(event, index: int, *, oldest: datetime, newest: datetime) -> tuple:
    """One event checked against the contract, as the values of COLUMNS it supplies."""
    if not isinstance(event, dict):
        raise _bad(index, "", "must be an object")
    unknown = event.keys() - _FIELDS
    if unknown:
        raise _bad(index, sorted(unknown)[0], "unknown field")
    for field in _REQUIRED:
        if field not in event:
            raise _bad(index, field, "is required")
    event_id = event["event_id"]
    if not isinstance(event_id, str) or not _UUID.fullmatch(event_id):
        try:  # not in canonical form: any form Python reads, made canonical
            event_id = str(uuid.UUID(event_id)) if isinstance(event_id, str) else None
        except ValueError:
            event_id = None
    if event_id is None:
        raise _bad(index, "event_id", "must be a UUID")
    when = event["occurred_at"]
    try:
        occurred = datetime.fromisoformat(when) if isinstance(when, str) and len(when) <= 40 else None
    except ValueError:
        occurred = None
    if occurred is None or occurred.tzinfo is None:
        raise _bad(index, "occurred_at", "must be an ISO 8601 time with a time zone")
    if occurred < oldest:
        raise _bad(index, "occurred_at", f"older than {MAX_AGE.days} days")
    if occurred > newest:
        raise _bad(index, "occurred_at", "in the future (more than 5 minutes past the server's clock)")
    kind = event["type"]
    if kind not in _TYPES:
        raise _bad(index, "type", f"must be one of {', '.join(sorted(_TYPES))}")
    path = _text(event["path"], index, "path", required=True)
    dest = _text(event.get("dest_path"), index, "dest_path")
    if (kind == EventType.RENAMED) != bool(dest):
        raise _bad(index, "dest_path", "is required for a rename and only for a rename")
    size = event.get("size")
    if size is not None and (type(size) is not int or not 0 <= size <= _MAX_BIGINT):
        raise _bad(index, "size", "must be a non-negative integer or null")
    sha256 = event.get("sha256") or ""
    if sha256 and (not isinstance(sha256, str) or not _SHA256.fullmatch(sha256)):
        raise _bad(index, "sha256", "must be 64 lowercase hex digits or null")
    category = event.get("category") or EventCategory.OTHER
    if category not in _CATEGORIES:
        raise _bad(index, "category", f"must be one of {', '.join(sorted(_CATEGORIES))}")
    vector = event.get("vector") or ""
    if vector and vector not in AGENT_VECTORS:
        raise _bad(index, "vector", f"must be null or one of {', '.join(sorted(AGENT_VECTORS))}")
    entropy = event.get("entropy")
    if entropy is not None and (type(entropy) not in (int, float) or not math.isfinite(entropy)
                                or not 0 <= entropy <= 8):
        raise _bad(index, "entropy", "must be a number of bits per byte, 0 to 8, or null")
    name = (dest or path).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1][:255] or path[:255]
    return (event_id, occurred, kind, path, dest, name, size, sha256, category,
            _text(event.get("mime_type"), index, "mime_type"), vector, entropy,
            _text(event.get("os_user"), index, "os_user"), _text(event.get("process"), index, "process"))


def batch_validate(body: dict, *, now: datetime) -> tuple[uuid.UUID, int, list[tuple]]:
    unknown = body.keys() - {"batch_id", "events", "dropped"}
    if unknown:
        field = sorted(unknown)[0]
        raise BatchRefused(400, "invalid_batch", f"{field}: unknown field (events are filed under the "
                                                 "authenticated device only)", field=field)
    try:
        batch_id = uuid.UUID(body["batch_id"]) if isinstance(body.get("batch_id"), str) else None
    except ValueError:
        batch_id = None
    if batch_id is None:
        raise BatchRefused(400, "invalid_batch", "batch_id: must be a UUID", field="batch_id")
    events = body.get("events")
    if not isinstance(events, list):
        raise BatchRefused(400, "invalid_batch", "events: must be a list", field="events")
    if len(events) > MAX_EVENTS:
        raise BatchRefused(413, "batch_too_large", f"{len(events)} events; a batch holds at most {MAX_EVENTS:,}")
    dropped = body.get("dropped", 0)
    if type(dropped) is not int or not 0 <= dropped <= _MAX_BIGINT:
        raise BatchRefused(400, "invalid_batch", "dropped: must be a non-negative integer", field="dropped")
    oldest, newest = now - MAX_AGE, now + MAX_AHEAD
    rows = [_event_row(event, index, oldest=oldest, newest=newest) for index, event in enumerate(events)]
    seen: set[str] = set()
    for index, row in enumerate(rows):
        if row[0] in seen:
            raise _bad(index, "event_id", "appears twice in the batch")
        seen.add(row[0])
    return batch_id, dropped, rows


def events_ingest(*, device: Device, body: dict, source: str = "agent") -> IngestResult:
    """Validate and store one batch of `device`: all of it, or nothing (BatchRefused)."""
    now = timezone.now()
    batch_id, dropped, rows = batch_validate(body, now=now)
    for attempt in range(2):
        try:
            return _store(device=device, batch_id=batch_id, rows=rows, now=now, source=source,
                          dropped=dropped)
        except IntegrityError:
            # Another request stored one of these event ids between our check and our insert:
            # the second attempt sees it and skips it (or refuses, if another device's).
            if attempt == 1:
                raise
    raise AssertionError("unreachable")


@transaction.atomic
def _store(*, device: Device, batch_id: uuid.UUID, rows: list[tuple], now: datetime, source: str,
           dropped: int) -> IngestResult:
    batch = EventBatch.objects.filter(batch_id=batch_id).only("id", "device_id").first()
    if batch is not None:
        if batch.device_id != device.id:
            raise BatchRefused(409, "batch_conflict", "This batch_id was sent by another device")
        return IngestResult(str(batch_id), 0, True)
    try:
        with transaction.atomic():  # a concurrent first delivery of the same batch_id loses here
            batch = EventBatch.objects.create(batch_id=batch_id, organization_id=device.organization_id,
                                              device=device, source=source, event_count=len(rows),
                                              dropped_events=dropped)
    except IntegrityError:
        return _store_raced(device=device, batch_id=batch_id)
    fixed = (device.organization_id, device.id, device.owner_id, batch.id)
    try:
        # The usual case, every event new: written at once, no lookup first. An agent seals a
        # batch once, so a known event id means a batch re-sent under a new id, which is rare.
        with transaction.atomic():
            _insert(fixed, rows, now)
        return IngestResult(str(batch_id), len(rows), False)
    except IntegrityError:
        pass
    known = dict(FileEvent.objects.filter(event_id__in=[row[0] for row in rows]).values_list("event_id", "device_id"))
    if any(owner != device.id for owner in known.values()):
        raise BatchRefused(409, "event_conflict", "An event_id of this batch was sent by another device")
    known_ids = {str(event_id) for event_id in known}
    fresh = [row for row in rows if row[0] not in known_ids]
    _insert(fixed, fresh, now)
    EventBatch.objects.filter(pk=batch.pk).update(event_count=len(fresh))
    return IngestResult(str(batch_id), len(fresh), False)


def _insert(fixed: tuple, rows: list[tuple], now: datetime) -> None:
    if connection.vendor == "postgresql":
        _copy(fixed, rows, now)
    else:
        _bulk_create(fixed, rows, now)


def _store_raced(*, device: Device, batch_id: uuid.UUID) -> IngestResult:
    owner = EventBatch.objects.filter(batch_id=batch_id).values_list("device_id", flat=True).first()
    if owner != device.id:
        raise BatchRefused(409, "batch_conflict", "This batch_id was sent by another device")
    return IngestResult(str(batch_id), 0, True)


def _copy(fixed: tuple, rows: list[tuple], now: datetime) -> None:
    org, dev, user, batch = fixed
    received = now.isoformat()  # times as text: psycopg adapts a str faster than a datetime
    # The raw psycopg cursor raises psycopg's errors: wrapped, a duplicate id is an IntegrityError.
    with connection.wrap_database_errors, connection.cursor() as cursor, cursor.copy(
            f"COPY {FileEvent._meta.db_table} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row((row[0], org, dev, user, batch, row[1].isoformat(), received, *row[2:]))


def _bulk_create(fixed: tuple, rows: list[tuple], now: datetime) -> None:
    org, dev, user, batch = fixed
    names = COLUMNS[7:]
    FileEvent.objects.bulk_create(
        [FileEvent(event_id=row[0], organization_id=org, device_id=dev, user_id=user, batch_id=batch,
                   occurred_at=row[1], received_at=now, **dict(zip(names, row[2:], strict=True))) for row in rows],
        batch_size=500)


def batch_encode(body: dict) -> bytes:
    """What the agent sends (tests and bench use it): compact JSON, gzipped."""
    return gzip.compress(json.dumps(body, separators=(",", ":")).encode(), compresslevel=5)

"""Test factory for file-activity events: FileEvent rows inserted in bulk, as ingestion stores them
(a stand-in for POST /api/v1/events, which another piece of work builds)."""
import uuid
from datetime import timedelta
from pathlib import PurePosixPath

from django.utils import timezone

from activity.models import EventBatch, FileEvent


def file_events_insert(*, device, events: list[dict], received_ago: timedelta = timedelta(minutes=1)) -> list:
    """Store `events` (dicts of FileEvent fields; path required) for `device` and its owner."""
    now = timezone.now()
    batch = EventBatch.objects.create(batch_id=uuid.uuid4(), organization_id=device.organization_id, device=device,
                                      event_count=len(events))
    rows = []
    for fields in events:
        fields = dict(fields)
        path = fields.pop("path")
        rows.append(FileEvent(
            event_id=uuid.uuid4(), organization_id=device.organization_id, device=device,
            user_id=fields.pop("user_id", device.owner_id), batch=batch,
            occurred_at=fields.pop("occurred_at", now - timedelta(minutes=2)), received_at=now - received_ago,
            event_type=fields.pop("event_type", "created"), path=path,
            file_name=fields.pop("file_name", PurePosixPath(path).name), **fields))
    return FileEvent.objects.bulk_create(rows)


def device_of(user, name="laptop"):
    from accounts.models import Device

    return Device.objects.create(organization=user.organization, owner=user, name=name)

"""Cloud-service connectors (issue 13 item 6): pull a service's audit log on a schedule and store
it as file events (vector `cloud_service`, no device), so rules, search and export treat them as
an endpoint's. One small folder per service behind `base.Connector`; adding one touches its
folder and the CONNECTORS line.

A pull is incremental (the connector's cursor, saved with the events it produced, in one
transaction) and idempotent (an event's id is derived from the service's own record id, so a
record pulled twice is stored once). A 429 puts the next pull off by the service's Retry-After; any
other failure by a doubling delay (1 minute up to 1 hour). Credentials are sealed
(`keystore/sealing.py`, bound to the connector's row).
"""
import json
import uuid
from datetime import timedelta
from pathlib import PurePosixPath

from django.db import transaction
from django.utils import timezone

from accounts.models import Organization, User
from accounts.services import audit_record
from activity.connectors.base import RateLimited
from activity.connectors.google_drive import GoogleDriveConnector
from activity.connectors.m365 import M365Connector
from activity.models import CloudConnector, EventBatch, FileEvent, Vector
from keystore.sealing import SealedIn, seal, unseal

CONNECTORS = {c.kind: c for c in (M365Connector, GoogleDriveConnector)}
EVENT_NAMESPACE = uuid.UUID("6a1f3c52-7d0e-4b8a-9c61-2f4e8d7b0a13")
MAX_PAGES_PER_RUN = 20


def _owner(connector: CloudConnector) -> SealedIn:
    return SealedIn(table="activity.cloudconnector", organization=connector.organization.uuid, row=connector.uuid)


@transaction.atomic
def cloud_connector_create(*, organization: Organization, kind: str, name: str, base_url: str, credentials: dict,
                           settings: dict | None = None, actor: User | None = None,
                           actor_label: str = "") -> CloudConnector:
    if kind not in CONNECTORS:
        raise ValueError(f"kind must be one of {', '.join(sorted(CONNECTORS))}")
    connector = CloudConnector(organization=organization, kind=kind, name=name, base_url=base_url,
                               settings=settings or {})
    connector.credentials_sealed = seal("connector-credentials", json.dumps(credentials).encode(),
                                        owner=_owner(connector))
    connector.full_clean()
    connector.save()
    audit_record(organization=organization, actor=actor, actor_label=actor_label or None,
                 action="activity.connector_create", target_type="cloud_connector", target_uuid=connector.uuid,
                 detail={"kind": kind, "name": name})
    return connector


def cloud_connector_pull(*, connector_id: int) -> dict:
    """Pull the connector's new records (up to MAX_PAGES_PER_RUN pages) unless it is backing off."""
    stored = 0
    for _page in range(MAX_PAGES_PER_RUN):
        with transaction.atomic():
            connector = (CloudConnector.objects.select_for_update(skip_locked=True).select_related("organization")
                         .filter(pk=connector_id, enabled=True).first())
            now = timezone.now()
            if connector is None or (connector.next_pull_at and connector.next_pull_at > now):
                return {"stored": stored, "skipped": True}
            credentials = json.loads(unseal("connector-credentials", connector.credentials_sealed,
                                            owner=_owner(connector)))
            try:
                page = CONNECTORS[connector.kind]().pull(base_url=connector.base_url, settings=connector.settings,
                                                         credentials=credentials, cursor=connector.cursor)
            except RateLimited as limited:
                _failed(connector, str(limited), timedelta(seconds=limited.retry_after))
                return {"stored": stored, "rate_limited": limited.retry_after}
            except Exception as error:  # noqa: BLE001 - any failure of the service backs off and is shown
                delay = timedelta(minutes=min(2 ** connector.failures, 60))
                _failed(connector, f"{type(error).__name__}: {error}", delay)
                return {"stored": stored, "error": str(error)[:200]}
            stored += _store(connector, page.events)
            connector.cursor, connector.failures, connector.last_error = page.cursor, 0, ""
            connector.last_pull_at, connector.next_pull_at = now, None
            connector.save(update_fields=["cursor", "failures", "last_error", "last_pull_at", "next_pull_at"])
        if not page.more:
            break
    return {"stored": stored}


def _failed(connector: CloudConnector, error: str, delay: timedelta) -> None:
    connector.failures += 1
    connector.last_error = error[:500]
    connector.next_pull_at = timezone.now() + delay
    connector.save(update_fields=["failures", "last_error", "next_pull_at"])


def _store(connector: CloudConnector, pulled: list) -> int:
    if not pulled:
        return 0
    emails = {event.user_email.lower() for event in pulled if event.user_email}
    users = dict((email.lower(), pk) for email, pk in User.objects.filter(
        organization=connector.organization, email__in=emails).values_list("email", "pk"))
    now = timezone.now()
    batch = EventBatch.objects.create(batch_id=uuid.uuid4(), organization=connector.organization, device=None,
                                      source=connector.kind, event_count=len(pulled))
    rows = [FileEvent(
        event_id=uuid.uuid5(EVENT_NAMESPACE, f"{connector.organization.uuid}/{connector.kind}/{event.native_id}"),
        organization=connector.organization, device=None, user_id=users.get(event.user_email.lower()), batch=batch,
        occurred_at=event.occurred_at, received_at=now, event_type=event.event_type, path=event.path[:4096],
        dest_path=event.dest_path[:4096], file_name=(event.file_name or PurePosixPath(event.path).name)[:255],
        size=event.size, vector=Vector.CLOUD_SERVICE, process=event.process[:255]) for event in pulled]
    created = FileEvent.objects.bulk_create(rows, ignore_conflicts=True)
    stored = FileEvent.objects.filter(batch=batch).count()
    EventBatch.objects.filter(pk=batch.pk).update(event_count=stored)
    return stored if created is not None else 0


def cloud_connectors_pull_all() -> dict:
    return {str(pk): cloud_connector_pull(connector_id=pk)
            for pk in CloudConnector.objects.filter(enabled=True).values_list("pk", flat=True)}

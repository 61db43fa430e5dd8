"""Export of alerts (and, per target, events) to SIEMs: syslog and signed webhooks (DESIGN §8,
issue 13 item 5; the wire formats in docs/siem-export.md).

Each target reads its organization's alerts and events in id order from its own cursors and
turns them into `ExportDelivery` rows (one an alert, one a chunk of events) in the same
transaction that moves the cursor; deliveries are then sent, retried with growing delays, and
after MAX_ATTEMPTS kept as dead letters the console lists (and can retry). A delivery is claimed
with a conditional UPDATE, so two workers never send the same one at once.
"""
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from activity.export import syslog, webhook
from activity.export.records import alert_record, event_record
from activity.export.targets import webhook_secret
from activity.models import Alert, ExportDelivery, ExportTarget, FileEvent

MAX_ATTEMPTS = 6
RETRY_DELAYS = [timedelta(minutes=m) for m in (1, 5, 15, 60, 240)]
EVENT_CHUNK, EVENTS_PER_RUN, ALERTS_PER_RUN = 500, 20_000, 1000
CLAIM_SECONDS = 120  # a claimed delivery whose worker died is due again after this


def _send(target: ExportTarget, delivery: ExportDelivery) -> None:
    """The vendor registry: adding a kind touches its module and this line."""
    if target.kind == ExportTarget.Kind.SYSLOG:
        syslog.send(target, delivery.records, delivery_id=str(delivery.uuid))
    else:
        webhook.send(target, delivery.records, delivery_id=str(delivery.uuid), secret=webhook_secret(target))


@transaction.atomic
def export_enqueue(*, target_id: int) -> int:
    """New alerts (and events) past the target's cursors become deliveries; returns how many."""
    target = ExportTarget.objects.select_for_update(skip_locked=True).filter(pk=target_id, enabled=True).first()
    if target is None:
        return 0
    now, made = timezone.now(), []
    alerts = list(Alert.objects.filter(organization_id=target.organization_id, id__gt=target.alert_cursor)
                  .select_related("subject_user", "device").order_by("id")[:ALERTS_PER_RUN])
    made += [ExportDelivery(target=target, subject="alert", records=[alert_record(a)], next_attempt_at=now)
             for a in alerts]
    if alerts:
        target.alert_cursor = alerts[-1].id
    if target.include_events:
        cutoff = now - timedelta(seconds=settings.HAVEN_DETECTION_LAG_SECONDS)
        events = list(FileEvent.objects.filter(organization_id=target.organization_id, id__gt=target.event_cursor,
                                               received_at__lte=cutoff)
                      .select_related("user", "device").order_by("id")[:EVENTS_PER_RUN])
        for start in range(0, len(events), EVENT_CHUNK):
            chunk = events[start:start + EVENT_CHUNK]
            made.append(ExportDelivery(target=target, subject="events", records=[event_record(e) for e in chunk],
                                       next_attempt_at=now))
        if events:
            target.event_cursor = events[-1].id
    ExportDelivery.objects.bulk_create(made)
    target.save(update_fields=["alert_cursor", "event_cursor"])
    return len(made)


def export_send_due(*, limit: int = 200) -> dict:
    counts = {"sent": 0, "failed": 0, "dead": 0}
    due = ExportDelivery.objects.filter(status=ExportDelivery.Status.PENDING, next_attempt_at__lte=timezone.now(),
                                        target__enabled=True).order_by("next_attempt_at", "id")
    for delivery_id in list(due.values_list("id", flat=True)[:limit]):
        outcome = export_delivery_send(delivery_id=delivery_id)
        if outcome:
            counts[outcome] += 1
    return counts


def export_delivery_send(*, delivery_id: int) -> str | None:
    """Claim one due delivery and send it: "sent", "failed" (retried later), "dead", or None if
    another worker has it."""
    now = timezone.now()
    claimed = ExportDelivery.objects.filter(pk=delivery_id, status=ExportDelivery.Status.PENDING,
                                            next_attempt_at__lte=now).update(
        next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS))
    if not claimed:
        return None
    delivery = ExportDelivery.objects.select_related("target__organization").get(pk=delivery_id)
    try:
        _send(delivery.target, delivery)
    except Exception as error:  # noqa: BLE001 - any failure of a remote end is retried, then a dead letter
        attempts = delivery.attempts + 1
        dead = attempts >= MAX_ATTEMPTS
        delay = RETRY_DELAYS[min(attempts - 1, len(RETRY_DELAYS) - 1)]
        ExportDelivery.objects.filter(pk=delivery_id).update(
            attempts=attempts, last_error=f"{type(error).__name__}: {error}"[:500],
            status=ExportDelivery.Status.DEAD if dead else ExportDelivery.Status.PENDING,
            next_attempt_at=timezone.now() + delay)
        return "dead" if dead else "failed"
    ExportDelivery.objects.filter(pk=delivery_id).update(status=ExportDelivery.Status.SENT, sent_at=timezone.now(),
                                                         attempts=delivery.attempts + 1, last_error="")
    return "sent"


SENT_KEPT = timedelta(days=7)


def export_run_all() -> dict:
    ExportDelivery.objects.filter(status=ExportDelivery.Status.SENT, sent_at__lt=timezone.now() - SENT_KEPT).delete()
    queued = sum(export_enqueue(target_id=pk) for pk in
                 ExportTarget.objects.filter(enabled=True).values_list("pk", flat=True))
    return {"queued": queued, **export_send_due()}

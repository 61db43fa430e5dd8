"""Detection rules over file-activity events (DESIGN §8, issue 13 item 3).

`detection_run` reads an organization's events past its cursor (`DetectionSettings.last_event_id`)
in id order, a pass at a time; every rule looks at the pass's new events to find the (user,
device, window) groups they touch, recounts each group's window from the database, and raises an
alert when it crosses the organization's threshold. The alert's dedup_key names rule, user,
device and window, so a group seen again in a later run is the same unresolved alert (its
occurrences grow) and a run redone after a crash raises nothing twice. The cursor moves in the
same transaction as the alerts; the settings row, locked with SKIP LOCKED, keeps two workers from
running one organization at once.

Events are read only once they are `DETECTION_LAG_SECONDS` old: ids are assigned when a row is
inserted, not when its transaction commits, so a cursor that ran right up to the newest id could
step over an ingestion transaction still in flight.
"""
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from activity.detection.rules import RULES, Context
from activity.detection_settings import detection_settings_for
from activity.models import DetectionSettings, FileEvent

PASS_SIZE = 20_000
TIME_BUDGET_SECONDS = 40
FIELDS = ("id", "user_id", "device_id", "occurred_at", "event_type", "vector", "size", "entropy", "category",
          "file_name", "path")


def detection_run(*, organization: Organization) -> dict:
    """Run every rule over the organization's new events; returns counts for the log."""
    detection_settings_for(organization)
    started, totals = time.monotonic(), {"events": 0, "raised": 0, "seen_again": 0, "passes": 0}
    while time.monotonic() - started < TIME_BUDGET_SECONDS:
        done = _one_pass(organization, totals)
        if done:
            break
    return totals


def detection_run_all() -> dict:
    """Every organization in turn (the beat task)."""
    return {org.name: detection_run(organization=org) for org in Organization.objects.order_by("pk")}


@transaction.atomic
def _one_pass(organization: Organization, totals: dict) -> bool:
    """One pass of up to PASS_SIZE events; True when nothing more is waiting (or another worker has it)."""
    config = (DetectionSettings.objects.select_for_update(skip_locked=True)
              .filter(organization=organization).first())
    if config is None:
        return True
    cutoff = timezone.now() - timedelta(seconds=settings.HAVEN_DETECTION_LAG_SECONDS)
    fresh = list(FileEvent.objects.filter(organization=organization, id__gt=config.last_event_id,
                                          received_at__lte=cutoff).order_by("id").values(*FIELDS)[:PASS_SIZE])
    config.last_run_at = timezone.now()
    if not fresh:
        config.save(update_fields=["last_run_at"])
        return True
    context = Context(organization=organization, config=config, upto=fresh[-1]["id"])
    for rule in RULES:
        rule(context, fresh)
    config.last_event_id = fresh[-1]["id"]
    config.save(update_fields=["last_event_id", "last_run_at"])
    totals["events"] += len(fresh)
    totals["raised"] += context.raised
    totals["seen_again"] += context.seen_again
    totals["passes"] += 1
    return len(fresh) < PASS_SIZE

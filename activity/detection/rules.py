"""The rules. Each takes the pass's new events, finds the (user, device, window) groups they touch
and recounts those windows in the database (so an alert's figures cover the whole window, however
many runs its events arrived over). Windows are fixed, aligned to the epoch (an hour-long window
starts on the hour), which keeps a group's dedup_key the same in every run."""
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase

from django.db.models import Count, Q, Sum
from django.template.defaultfilters import filesizeformat

from accounts.models import Device, Organization, User
from activity.alerts import alert_raise
from activity.models import Alert, DetectionSettings, EventType, FileEvent, Vector, WatchedUser

MAX_FILES = 20  # an alert names at most this many files (the biggest or newest), and counts them all
EXFILTRATION = {Vector.REMOVABLE_MEDIA, Vector.CLOUD_SYNC, Vector.CLOUD_SERVICE}
ENCRYPTED_ENTROPY = 7.5  # bits per byte: ciphertext is ~8, documents and code are well below 7
ALREADY_COMPRESSED = {"archive", "image", "audio", "video"}  # high entropy by nature
WATCH_WINDOW_MINUTES = 24 * 60


@dataclass
class Context:
    organization: Organization
    config: DetectionSettings
    upto: int
    raised: int = 0
    seen_again: int = 0

    def events(self) -> "FileEvent.objects":
        return FileEvent.objects.filter(organization=self.organization, id__lte=self.upto)


def window_of(moment: datetime, minutes: int) -> tuple[datetime, datetime]:
    span = max(minutes, 1) * 60
    start = int(moment.timestamp()) // span * span
    return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(start + span, UTC)


def _groups(events, minutes: int) -> set:
    return {(e["user_id"], e["device_id"], window_of(e["occurred_at"], minutes)) for e in events}


def _file(event: FileEvent) -> dict:
    return {"path": event.path, "file_name": event.file_name, "size": event.size, "sha256": event.sha256,
            "event_type": event.event_type, "vector": event.vector, "occurred_at": event.occurred_at.isoformat()}


def _raise(context: Context, *, rule: str, user_id, device_id, window, title: str, vector: str, files: list,
           severity: str, **facts) -> None:
    user = User.objects.filter(pk=user_id).first() if user_id else None
    device = Device.objects.filter(pk=device_id).first() if device_id else None
    who = user.email if user else "an unknown user"
    where = device.name if device else "a cloud service"
    key = f"{rule}:{user.uuid if user else '-'}:{device.uuid if device else '-'}:{window[0]:%Y%m%dT%H%M}"
    detail = {"rule": rule, "user": user.email if user else None, "device": device.name if device else None,
              "vector": vector, "window_start": window[0].isoformat(), "window_end": window[1].isoformat(),
              "files": [_file(event) for event in files[:MAX_FILES]], **facts}
    _, created = alert_raise(organization=context.organization, kind=rule, dedup_key=key,
                             title=f"{title.format(who=who)} on {where}", detail=detail, severity=severity,
                             subject_user=user, device=device)
    if created:
        context.raised += 1
    else:
        context.seen_again += 1


def removable_media(context: Context, fresh: list) -> None:
    limit = context.config.removable_media_mb * 1_000_000
    if not limit:
        return
    touched = [e for e in fresh if e["vector"] == Vector.REMOVABLE_MEDIA and e["event_type"] != EventType.DELETED]
    for user_id, device_id, window in _groups(touched, context.config.window_minutes):
        events = context.events().filter(user_id=user_id, device_id=device_id, vector=Vector.REMOVABLE_MEDIA,
                                         occurred_at__gte=window[0], occurred_at__lt=window[1]).exclude(
            event_type=EventType.DELETED)
        totals = events.aggregate(bytes=Sum("size"), files=Count("id"))
        if (totals["bytes"] or 0) > limit:
            _raise(context, rule="removable_media", user_id=user_id, device_id=device_id, window=window,
                   title=f"{{who}} copied {filesizeformat(totals['bytes'])} to removable media",
                   vector=Vector.REMOVABLE_MEDIA, files=list(events.order_by("-size", "id")[:MAX_FILES]),
                   severity=Alert.Severity.HIGH, total_bytes=totals["bytes"], file_count=totals["files"])


def _sensitive(name: str, patterns: list[str]) -> bool:
    name = name.lower()
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def sensitive_cloud_upload(context: Context, fresh: list) -> None:
    patterns = context.config.patterns()
    if not patterns:
        return
    touched = [e for e in fresh if e["vector"] == Vector.CLOUD_SYNC and e["event_type"] != EventType.DELETED
               and _sensitive(e["file_name"], patterns)]
    for user_id, device_id, window in _groups(touched, context.config.window_minutes):
        events = context.events().filter(user_id=user_id, device_id=device_id, vector=Vector.CLOUD_SYNC,
                                         occurred_at__gte=window[0], occurred_at__lt=window[1]).exclude(
            event_type=EventType.DELETED).order_by("occurred_at", "id")
        matched = [event for event in events[:5000] if _sensitive(event.file_name, patterns)]
        if matched:
            _raise(context, rule="sensitive_cloud_upload", user_id=user_id, device_id=device_id, window=window,
                   title=f"{{who}} put {len(matched)} sensitive file(s) in a cloud-sync folder",
                   vector=Vector.CLOUD_SYNC, files=matched, severity=Alert.Severity.HIGH, file_count=len(matched),
                   patterns=patterns)


def _archive_created(event: dict) -> bool:
    return event["vector"] == Vector.ARCHIVE_CREATED or (
        event["category"] == "archive" and event["event_type"] == EventType.CREATED and not event["vector"])


def archive_exfiltration(context: Context, fresh: list) -> None:
    """An archive created, then within the window an exfiltration vector on the same device."""
    minutes = context.config.archive_exfil_minutes
    if not minutes:
        return
    span = timedelta(minutes=minutes)
    exits = [e for e in fresh if e["vector"] in EXFILTRATION and e["event_type"] != EventType.DELETED]
    archives = {e["id"]: e for e in fresh if _archive_created(e)}
    for user_id, device_id in {(e["user_id"], e["device_id"]) for e in exits}:
        times = [e["occurred_at"] for e in exits if (e["user_id"], e["device_id"]) == (user_id, device_id)]
        earlier = context.events().filter(user_id=user_id, device_id=device_id, occurred_at__gte=min(times) - span,
                                          occurred_at__lte=max(times)).filter(
            Q(vector=Vector.ARCHIVE_CREATED) | Q(category="archive", event_type=EventType.CREATED, vector=""))
        archives.update({row["id"]: row for row in earlier.values(*_FIELDS)[:1000]})
    for user_id, device_id, window in _groups(archives.values(), minutes):
        made = sorted((a for a in archives.values() if (a["user_id"], a["device_id"]) == (user_id, device_id)
                       and window_of(a["occurred_at"], minutes) == window), key=lambda a: a["occurred_at"])
        after = context.events().filter(user_id=user_id, device_id=device_id, vector__in=EXFILTRATION,
                                        occurred_at__gte=made[0]["occurred_at"],
                                        occurred_at__lte=made[-1]["occurred_at"] + span).exclude(
            event_type=EventType.DELETED).order_by("occurred_at", "id")
        leaving = list(after[:MAX_FILES])
        if leaving:
            archive_events = list(context.events().filter(id__in=[a["id"] for a in made[:MAX_FILES]]))
            _raise(context, rule="archive_exfiltration", user_id=user_id, device_id=device_id, window=window,
                   title=f"{{who}} created an archive, then moved files out ({leaving[0].get_vector_display()})",
                   vector=leaving[0].vector, files=archive_events + leaving, severity=Alert.Severity.HIGH,
                   archives=[a["file_name"] for a in made[:MAX_FILES]], exfiltration_vectors=sorted(
                       {event.vector for event in leaving}))


_FIELDS = ("id", "user_id", "device_id", "occurred_at", "event_type", "vector", "category", "file_name")


def mass_deletion(context: Context, fresh: list) -> None:
    threshold = context.config.mass_deletion_count
    if not threshold:
        return
    touched = [e for e in fresh if e["event_type"] == EventType.DELETED]
    for user_id, device_id, window in _groups(touched, context.config.window_minutes):
        events = context.events().filter(user_id=user_id, device_id=device_id, event_type=EventType.DELETED,
                                         occurred_at__gte=window[0], occurred_at__lt=window[1])
        count = events.count()
        if count >= threshold:
            _raise(context, rule="mass_deletion", user_id=user_id, device_id=device_id, window=window,
                   title=f"{{who}} deleted {count} files", vector="", severity=Alert.Severity.HIGH,
                   files=list(events.order_by("-occurred_at", "-id")[:MAX_FILES]), file_count=count)


def _encrypted_looking(event: dict) -> bool:
    if event["vector"] == Vector.MASS_ENCRYPTION:
        return True
    return (event["event_type"] != EventType.DELETED and event["entropy"] is not None
            and event["entropy"] >= ENCRYPTED_ENTROPY and event["category"] not in ALREADY_COMPRESSED)


def mass_encryption(context: Context, fresh: list) -> None:
    threshold = context.config.mass_encryption_count
    if not threshold:
        return
    touched = [e for e in fresh if _encrypted_looking(e)]
    for user_id, device_id, window in _groups(touched, context.config.window_minutes):
        events = context.events().filter(user_id=user_id, device_id=device_id, occurred_at__gte=window[0],
                                         occurred_at__lt=window[1]).filter(
            Q(vector=Vector.MASS_ENCRYPTION) | Q(entropy__gte=ENCRYPTED_ENTROPY) & ~Q(
                category__in=ALREADY_COMPRESSED) & ~Q(event_type=EventType.DELETED))
        count = events.count()
        if count >= threshold:
            _raise(context, rule="mass_encryption", user_id=user_id, device_id=device_id, window=window,
                   title=f"{{who}}'s files are being encrypted ({count} rewritten)", vector=Vector.MASS_ENCRYPTION,
                   severity=Alert.Severity.CRITICAL, files=list(events.order_by("-occurred_at", "-id")[:MAX_FILES]),
                   file_count=count)


def watched_user_activity(context: Context, fresh: list) -> None:
    """Any activity of someone on the departing-employee watch list: one alert per person, device and day."""
    watched = set(WatchedUser.objects.filter(organization=context.organization).values_list("user_id", flat=True))
    touched = [e for e in fresh if e["user_id"] in watched]
    for user_id, device_id, window in _groups(touched, WATCH_WINDOW_MINUTES):
        events = context.events().filter(user_id=user_id, device_id=device_id, occurred_at__gte=window[0],
                                         occurred_at__lt=window[1])
        count = events.count()
        vectors = sorted(set(events.exclude(vector="").values_list("vector", flat=True).distinct()[:10]))
        _raise(context, rule="watched_user_activity", user_id=user_id, device_id=device_id, window=window,
               title=f"Watched user {{who}}: {count} file event(s)", vector=",".join(vectors),
               severity=Alert.Severity.HIGH, files=list(events.order_by("-occurred_at", "-id")[:MAX_FILES]),
               file_count=count, vectors=vectors)


RULES = [removable_media, sensitive_cloud_upload, archive_exfiltration, mass_deletion, mass_encryption,
         watched_user_activity]

"""Keystore disaster recovery: raft snapshots of Haven's keystore, kept on the pack storage.

Seeds 001 and 004: the keystore is "regularly snapshotted" ("Back up your Vault!"). Every
HAVEN_KEYSTORE_SNAPSHOT_HOURS the key worker (the only one holding the privileged token) takes a
snapshot of the active node, checks it is a whole raft snapshot, and writes it once to the pack
storage under the reserved prefix `keystore-snapshots/` (pack keys start with an organization's
UUID, and `.snap` is not `.pack`, so neither the orphan sweep nor rebuild-index ever sees one),
with a small record beside it (sha256, size, raft index, source cluster) that outlives a database
restore. The newest HAVEN_KEYSTORE_SNAPSHOT_KEEP are kept.

Snapshots are sealed by the keystore's barrier: they restore only with the unseal shares of the
cluster they were taken from, so they need no further encryption — and the shares must never be
stored beside them. Each snapshot is in the audit log of every organization whose keys it holds;
those organizations get an alert when one fails or when the newest is older than two intervals.
The embedded keystore is raft-backed and snapshotted like a production one; a keystore on other
storage (an `-dev` server's inmem) cannot be, and each attempt records why instead.
"""
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from accounts.services import audit_record
from activity.alerts import alert_raise, alerts_resolve_cleared
from activity.models import Alert
from archives.storage import pack_storage
from keystore import raft_snapshots
from keystore.models import KeystoreSnapshot
from keystore.raft_snapshots import SnapshotInvalid
from keystore.selectors import haven_keys_oldest_escrow, keystore_snapshot_newest, organizations_with_haven_keys
from keystore.vault import KeystoreUnavailable

logger = logging.getLogger(__name__)

SNAPSHOT_PREFIX = "keystore-snapshots"
RECORD_VERSION = 1
ALERT_FAILED, ALERT_STALE = "keystore_snapshot_failed", "keystore_snapshot_stale"
# A daily snapshot checked hourly is taken at the first check at least this much before its time.
DUE_SLACK = timedelta(minutes=30)
# A row still running after this was interrupted (the take task's hard limit is 15 minutes).
INTERRUPTED_AFTER = timedelta(hours=1)
State = KeystoreSnapshot.State


def snapshot_record_name(name: str) -> str:
    return f"{SNAPSHOT_PREFIX}/{name}.json"


def snapshot_interval() -> timedelta | None:
    hours = settings.HAVEN_KEYSTORE_SNAPSHOT_HOURS
    return timedelta(hours=hours) if hours else None


def keystore_snapshot_take(*, started_by: str) -> KeystoreSnapshot:
    """Take, check and store one snapshot; record, audit and alert either way. Never raises for a
    keystore or storage failure: the returned row says `failed` and why (and an alert is open)."""
    now = timezone.now()
    name = f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    backend = raft_snapshots.storage_type()
    if backend is not None and backend != "raft":
        reason = (f"the keystore's storage is {backend!r}, not raft: it cannot be snapshotted through the API; "
                  "back up its storage yourself (or run it on raft)")
        logger.warning("keystore snapshot skipped: %s", reason)
        row = KeystoreSnapshot.objects.create(name=name, state=State.SKIPPED, taken_at=now, finished_at=now,
                                              started_by=started_by, error=reason[:500])
        _prune_quietly()
        return row
    row = KeystoreSnapshot.objects.create(name=name, storage_key=f"{SNAPSHOT_PREFIX}/{name}.snap", taken_at=now,
                                          started_by=started_by)
    try:
        fetched = raft_snapshots.snapshot_fetch()
        meta = raft_snapshots.snapshot_check(fetched.data)
        storage = pack_storage()
        storage.put(row.storage_key, [fetched.data])
        row.sha256, row.size, row.node = fetched.sha256, len(fetched.data), fetched.node
        row.raft_index, row.cluster_id = meta.get("Index"), fetched.cluster_id
        storage.meta_write(snapshot_record_name(name), snapshot_record_encode(row))
    except (KeystoreUnavailable, SnapshotInvalid, OSError) as error:
        return _failed(row, getattr(error, "reason", None) or str(error) or type(error).__name__)
    except Exception as error:
        _failed(row, f"{type(error).__name__}: {error}")
        raise
    row.state, row.finished_at = State.SUCCEEDED, timezone.now()
    row.save(update_fields=["state", "finished_at", "sha256", "size", "node", "raft_index", "cluster_id"])
    detail = {"snapshot": row.name, "sha256": row.sha256, "size": row.size, "raft_index": row.raft_index,
              "cluster_id": row.cluster_id}
    for organization in organizations_with_haven_keys():
        audit_record(organization=organization, actor=None, actor_label=f"keystore snapshot ({started_by})",
                     action="keystore.snapshot", target_type="keystore_snapshot", detail=detail)
        alerts_resolve_cleared(organization=organization, kind=ALERT_FAILED, still_active_keys=set())
        alerts_resolve_cleared(organization=organization, kind=ALERT_STALE, still_active_keys=set())
    logger.info("keystore snapshot %s: %d bytes, sha256 %s, raft index %s", row.name, row.size, row.sha256,
                row.raft_index)
    _prune_quietly()
    return row


def _prune_quietly() -> None:
    """Pruning after a take never turns it into a failure; the next take prunes again."""
    try:
        keystore_snapshots_prune(keep=settings.HAVEN_KEYSTORE_SNAPSHOT_KEEP)
    except OSError as error:
        logger.error("could not remove old keystore snapshots: %s", error)


def _failed(row: KeystoreSnapshot, reason: str) -> KeystoreSnapshot:
    row.state, row.finished_at, row.error = State.FAILED, timezone.now(), reason[:500]
    row.save(update_fields=["state", "finished_at", "error"])
    logger.error("keystore snapshot %s failed: %s", row.name, reason)
    title = f"Haven's keystore could not be backed up: {reason}"
    for organization in organizations_with_haven_keys():
        audit_record(organization=organization, actor=None, actor_label=f"keystore snapshot ({row.started_by})",
                     action="keystore.snapshot_failed", target_type="keystore_snapshot",
                     detail={"snapshot": row.name, "error": row.error})
        alert_raise(organization=organization, kind=ALERT_FAILED, dedup_key=ALERT_FAILED, title=title,
                    severity=Alert.Severity.HIGH, detail={"snapshot": row.name, "error": row.error,
                                                          "see": "docs/operations.md, Keystore disaster recovery"})
    _prune_quietly()
    return row


def snapshot_record_encode(row: KeystoreSnapshot) -> bytes:
    """The record kept beside the snapshot on the storage (docs/operations.md)."""
    return json.dumps({"version": RECORD_VERSION, "name": row.name, "storage_key": row.storage_key,
                       "sha256": row.sha256, "size": row.size, "raft_index": row.raft_index,
                       "cluster_id": row.cluster_id, "node": row.node, "taken_at": row.taken_at.isoformat()},
                      sort_keys=True).encode()


def keystore_snapshots_prune(*, keep: int) -> list[str]:
    """Keep the newest `keep` snapshots; delete older ones (blob, record, row — in that order, so
    an interruption leaves a row that the next prune finishes), and the failed, skipped and
    interrupted attempts older than the oldest one kept."""
    storage = pack_storage()
    kept = list(KeystoreSnapshot.objects.filter(state=State.SUCCEEDED).order_by("-taken_at", "-id")[:keep])
    doomed = KeystoreSnapshot.objects.filter(state=State.SUCCEEDED).exclude(pk__in=[row.pk for row in kept])
    # Attempts are history worth as long as the snapshots kept (or `keep` intervals while fewer are).
    cutoff = kept[-1].taken_at if len(kept) == keep else timezone.now() - keep * (snapshot_interval() or timedelta(days=1))
    attempts = KeystoreSnapshot.objects.filter(state__in=[State.FAILED, State.SKIPPED], taken_at__lt=cutoff)
    interrupted = KeystoreSnapshot.objects.filter(state=State.RUNNING,
                                                  taken_at__lt=timezone.now() - INTERRUPTED_AFTER)
    removed = []
    for row in [*doomed, *attempts, *interrupted]:
        if row.storage_key:
            storage.delete(row.storage_key)
            storage.meta_delete(snapshot_record_name(row.name))
        KeystoreSnapshot.objects.filter(pk=row.pk).delete()
        removed.append(row.name)
    if removed:
        logger.info("keystore snapshots removed (keeping the newest %d): %s", keep, ", ".join(removed))
    return removed


@dataclass
class SnapshotCheck:
    due: bool
    stale: bool
    note: str
    newest: KeystoreSnapshot | None = None


def keystore_snapshot_state(*, now: datetime | None = None) -> SnapshotCheck:
    """Is a snapshot due, and is the newest older than two intervals? Reads the database only."""
    now = now or timezone.now()
    interval = snapshot_interval()
    if interval is None:
        return SnapshotCheck(due=False, stale=False, note="keystore snapshots are off (HAVEN_KEYSTORE_SNAPSHOT_HOURS=0)")
    latest = keystore_snapshot_newest(State.SUCCEEDED, State.SKIPPED)
    newest = keystore_snapshot_newest(State.SUCCEEDED)
    due = latest is None or now - latest.taken_at >= interval - DUE_SLACK
    if KeystoreSnapshot.objects.filter(state=State.RUNNING, taken_at__gte=now - INTERRUPTED_AFTER).exists():
        due = False  # one is being taken
    if latest is not None and latest.state == State.SKIPPED:
        return SnapshotCheck(due=due, stale=False, note=latest.error, newest=newest)
    since = newest.taken_at if newest else haven_keys_oldest_escrow()
    stale = since is not None and now - since > 2 * interval
    if newest is None:
        note = "no snapshot yet" + (" and the keystore holds keys" if since else "")
    else:
        note = f"newest snapshot {newest.name}, {(now - newest.taken_at).total_seconds() / 3600:.1f} h old"
    return SnapshotCheck(due=due, stale=stale, note=note, newest=newest)


def keystore_snapshot_check(*, now: datetime | None = None) -> SnapshotCheck:
    """The hourly check (it runs where no token is): the state, and the stale alert raised or
    resolved in every organization whose keys Haven's keystore holds."""
    check = keystore_snapshot_state(now=now)
    interval, newest = snapshot_interval(), check.newest
    for organization in organizations_with_haven_keys() if interval else []:
        if check.stale:
            alert_raise(organization=organization, kind=ALERT_STALE, dedup_key=ALERT_STALE,
                        title=f"Haven's keystore has not been backed up for over {2 * interval.total_seconds() / 3600:.0f} "
                              f"hours ({check.note})", severity=Alert.Severity.HIGH,
                        detail={"newest": newest.name if newest else None, "interval_hours": interval.total_seconds() / 3600,
                                "see": "docs/operations.md, Keystore disaster recovery"})
        else:
            alerts_resolve_cleared(organization=organization, kind=ALERT_STALE, still_active_keys=set())
    return check

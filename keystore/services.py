"""Key escrow and retrieval, one key per call, every access in a hash-chained audit log.

The only way to read a key is `key_retrieve(...)`: there is no list or bulk call. Each access
appends a `KeyAccess` row *before* the keystore is called and another with the outcome; each row's
hash covers the row before it, and every hash is also written (create-only) to the keystore, so
a database-only attacker can neither edit nor truncate the history unnoticed. Keys never appear in
logs, exceptions or task arguments.
"""
import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Device, User
from formats.keys import KEY_SIZE, key_id_for
from keystore.engines import engine_for_new_keys, engine_named
from keystore.models import AuditChainHead, KeyAccess, UserKey
from keystore.vault import KeystorePathExists, KeystoreUnavailable, kv_create, kv_list, kv_read

logger = logging.getLogger(__name__)


class KeyConflict(Exception):
    """The user already escrowed a different key; nothing was overwritten."""


class KeyInvalid(ValueError):
    """Not a 256-bit key, or its key_id does not match it."""


class KeyNotEscrowed(Exception):
    """The user has no escrowed key (yet)."""


def key_path(user: User) -> str:
    """KV v1 path under secret/: tenant and user by immutable UUID, never email or name."""
    return f"haven/{user.organization.uuid}/{user.uuid}"


# --- the audit chain ---------------------------------------------------------------------------

def _record_hash(prev_hash: str, fields: dict) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def _hashed_fields(access: KeyAccess) -> dict:
    return {
        "seq": access.seq, "uuid": str(access.uuid), "organization": str(access.organization.uuid),
        "subject": str(access.subject.uuid), "actor": str(access.actor.uuid) if access.actor else None,
        "actor_label": access.actor_label, "purpose": access.purpose, "job": access.job,
        "outcome": access.outcome, "detail": access.detail, "occurred_at": access.occurred_at.isoformat(),
    }


def key_access_record(*, subject: User, purpose: str, outcome: str, actor: User | None, actor_label: str,
                      job: str = "", detail: str = "") -> KeyAccess:
    """Append one line to the chain (serialized on the head row), then anchor it in the keystore."""
    with transaction.atomic():
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(pk=1)
        access = KeyAccess(
            seq=head.seq + 1, organization=subject.organization, subject=subject, actor=actor,
            actor_label=actor_label[:254], purpose=purpose, job=job[:100], outcome=outcome, detail=detail[:500],
            occurred_at=timezone.now(), prev_hash=head.hash,
        )
        access.hash = _record_hash(head.hash, _hashed_fields(access))
        access.save()
        head.seq, head.hash = access.seq, access.hash
        head.save(update_fields=["seq", "hash"])
    try:
        kv_create(f"{settings.HAVEN_AUDIT_ANCHOR_PREFIX}/{access.seq:012d}", {"hash": access.hash})
    except (KeystoreUnavailable, KeystorePathExists) as error:
        # The access itself is still recorded; verify-audit reports the gap in anchors.
        logger.warning("could not anchor key-access record %s: %s", access.seq, error)
    return access


@dataclass
class AuditVerification:
    records: int
    anchors: int
    problems: list[str]
    unanchored_tail: int = 0  # records after the newest anchor: protected only once a later one is anchored

    @property
    def ok(self) -> bool:
        return not self.problems


def key_access_verify() -> AuditVerification:
    """Recompute the chain and compare it with the anchors kept in the keystore.

    Detects an edited record (its hash), a deleted one (a gap or a broken link), a truncated log
    (anchors beyond the last record) and a rewritten chain (hashes that differ from the anchors).
    """
    problems: list[str] = []
    previous, expected_seq, count = "0" * 64, 1, 0
    hashes: dict[int, str] = {}
    for access in KeyAccess.objects.select_related("organization", "subject", "actor").order_by("seq").iterator():
        count += 1
        if access.seq != expected_seq:
            problems.append(f"records {expected_seq}..{access.seq - 1} are missing")
        if access.prev_hash != previous:
            problems.append(f"record {access.seq} does not follow the record before it")
        if _record_hash(access.prev_hash, _hashed_fields(access)) != access.hash:
            problems.append(f"record {access.seq} was altered (its hash does not match its content)")
        hashes[access.seq] = access.hash
        previous, expected_seq = access.hash, access.seq + 1
    prefix = settings.HAVEN_AUDIT_ANCHOR_PREFIX
    anchors = kv_list(f"{prefix}/")
    last = max(hashes) if hashes else 0
    newest_anchor = 0
    for name in anchors:
        if not name.isdigit():
            problems.append(f"an unexpected entry {name!r} sits among the anchors")
            continue
        seq = int(name)
        newest_anchor = max(newest_anchor, seq)
        anchored = (kv_read(f"{prefix}/{name}") or {}).get("hash")
        if seq > last:
            problems.append(f"record {seq} is anchored in the keystore but missing: the log was truncated")
        elif seq in hashes and hashes[seq] != anchored:
            problems.append(f"record {seq} differs from its anchor in the keystore: the log was rewritten")
    # Each anchor commits to every record before it (the chain), so records whose own anchor
    # failed are still covered by any later anchor; only the tail after the newest one is not.
    return AuditVerification(records=count, anchors=len(anchors), problems=problems,
                             unanchored_tail=max(last - newest_anchor, 0))


# --- escrow and retrieval ----------------------------------------------------------------------

def _device_label(device: Device) -> str:
    return f"device {device.uuid} ({device.name})"


def key_escrow(*, user: User, key: bytes, key_id: str, device: Device) -> UserKey:
    """Escrow the user's key from one of their devices. Idempotent for the same key.

    The unique (user) row is created first: a second device racing with a different key gets
    KeyConflict and the first key is never overwritten (the keystore policy forbids it too).
    """
    if len(key) != KEY_SIZE or key_id_for(key) != key_id:
        raise KeyInvalid("the key must be 32 bytes and match its key_id")
    label = _device_label(device)
    try:
        with transaction.atomic():
            row, _ = UserKey.objects.get_or_create(
                user=user, defaults={"organization": user.organization, "key_id": key_id})
    except IntegrityError:  # the racing device's row won
        row = UserKey.objects.get(user=user)
    if row.key_id != key_id and _stale_pending(row):
        # The device that started this escrow died before the keystore write: nothing is stored
        # under that key, so another of the user's devices may escrow its own (audited).
        UserKey.objects.filter(pk=row.pk, state=UserKey.State.PENDING).update(key_id=key_id)
        key_access_record(subject=user, purpose=KeyAccess.Purpose.ESCROW, outcome=KeyAccess.Outcome.STARTED,
                          actor=user, actor_label=label, detail=f"abandoned escrow of key {row.key_id} replaced")
        row.refresh_from_db()
    if row.key_id != key_id:
        key_access_record(subject=user, purpose=KeyAccess.Purpose.ESCROW, outcome=KeyAccess.Outcome.REFUSED,
                          actor=user, actor_label=label, detail=f"a different key ({row.key_id}) is escrowed")
        raise KeyConflict(f"a different key is already escrowed for {user.email}")
    if row.state == UserKey.State.ESCROWED:
        return row
    key_access_record(subject=user, purpose=KeyAccess.Purpose.ESCROW, outcome=KeyAccess.Outcome.STARTED,
                      actor=user, actor_label=label, detail=f"key {key_id}")
    engine = None
    try:
        engine = engine_for_new_keys(user.organization)
        engine.create(key_path(user), {"key": base64.b64encode(key).decode(), "key_id": key_id})
    except KeystorePathExists:
        # A retry after a crash between the keystore write and the row update: same key is fine.
        stored = engine.read(key_path(user))
        if (stored or {}).get("key_id") != key_id:
            key_access_record(subject=user, purpose=KeyAccess.Purpose.ESCROW, outcome=KeyAccess.Outcome.REFUSED,
                              actor=user, actor_label=label, detail="the keystore holds a different key")
            raise KeyConflict(f"the keystore holds a different key for {user.email}") from None
    except KeystoreUnavailable as error:
        key_access_record(subject=user, purpose=KeyAccess.Purpose.ESCROW, outcome=KeyAccess.Outcome.FAILED,
                          actor=user, actor_label=label, detail=error.reason)
        raise
    UserKey.objects.filter(pk=row.pk).update(state=UserKey.State.ESCROWED, escrowed_at=timezone.now(),
                                             location=engine.name)
    key_access_record(subject=user, purpose=KeyAccess.Purpose.ESCROW, outcome=KeyAccess.Outcome.SUCCEEDED,
                      actor=user, actor_label=label, detail=f"key {key_id}")
    row.refresh_from_db()
    return row


PENDING_ESCROW_TIMEOUT = timedelta(minutes=10)


def _stale_pending(row: UserKey) -> bool:
    if row.state != UserKey.State.PENDING or timezone.now() - row.created_at < PENDING_ESCROW_TIMEOUT:
        return False
    return engine_named(row.organization, row.location).read(key_path(row.user)) is None


def key_retrieve(*, user: User, purpose: str, actor: User | None, actor_label: str, job: str = "") -> bytes:
    """Read one user's key from the keystore. The only read path; audited before and after."""
    row = UserKey.objects.filter(user=user, state=UserKey.State.ESCROWED).first()
    if row is None:
        raise KeyNotEscrowed(f"{user.email} has no escrowed key")
    key_access_record(subject=user, purpose=purpose, outcome=KeyAccess.Outcome.STARTED, actor=actor,
                      actor_label=actor_label, job=job)
    try:
        stored = engine_named(user.organization, row.location).read(key_path(user))
    except KeystoreUnavailable as error:
        key_access_record(subject=user, purpose=purpose, outcome=KeyAccess.Outcome.FAILED, actor=actor,
                          actor_label=actor_label, job=job, detail=error.reason)
        raise
    key = base64.b64decode(stored["key"]) if stored else b""
    if len(key) != KEY_SIZE or key_id_for(key) != row.key_id:
        key_access_record(subject=user, purpose=purpose, outcome=KeyAccess.Outcome.FAILED, actor=actor,
                          actor_label=actor_label, job=job, detail="the keystore's copy is missing or damaged")
        raise KeyNotEscrowed(f"the keystore has no valid key for {user.email}")
    key_access_record(subject=user, purpose=purpose, outcome=KeyAccess.Outcome.SUCCEEDED, actor=actor,
                      actor_label=actor_label, job=job, detail=f"key {row.key_id}")
    return key


def key_deliver_to_device(*, device: Device) -> bytes:
    """Computer replacement: the user, authenticated on a new device, receives their key.
    The user is told by email, and the access shows in their key-access history."""
    user = device.owner
    key = key_retrieve(user=user, purpose=KeyAccess.Purpose.DEVICE_RETRIEVAL, actor=user,
                       actor_label=_device_label(device), job=str(device.uuid))
    send_mail(
        subject="Your Haven backup key was sent to a device",
        message=(f"Your archive encryption key was sent to the device \"{device.name}\" "
                 f"at {timezone.now():%Y-%m-%d %H:%M} UTC after you signed in there.\n\n"
                 "If this was not you, tell your administrator at once: they can deauthorize the device."),
        from_email=settings.DEFAULT_FROM_EMAIL, recipient_list=[user.email], fail_silently=True,
    )
    return key

"""Key escrow and retrieval, one key per call, every access in the hash-chained audit log.

Every read of a key path goes through `key_path_read(...)`: a `KeyAccess` record is written
*before* the keystore is called and another with the outcome (keystore/audit.py keeps the chain).
There is no list or bulk call. Keys never appear in logs, exceptions or task arguments.

Escrow is a sequence of short state transitions of the user's `UserKey` row, each one locked
(`select_for_update`) and committed before the keystore is called, as healthchecks' `Check.ping`:
claim the row for this key_id (or take over an abandoned claim) → write the key to the keystore
with no lock held → mark the row escrowed with a conditional update on (pk, key_id, pending) and
a row-count check. The keystore's create-only write settles a race: the first key written there
is the user's key, and the row follows the keystore.
"""
import base64
import logging
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Device, User
from accounts.selectors import org_admin_emails
from formats.keys import KEY_SIZE, key_id_for
from keystore.audit import (  # noqa: F401 - the chain's names stay importable from here
    AuditVerification,
    _hashed_fields,
    _record_hash,
    key_access_record,
    key_access_verify,
)
from keystore.engines import engine_for_new_keys, engine_named
from keystore.models import KeyAccess, UserKey
from keystore.vault import KeystorePathExists, KeystoreUnavailable

logger = logging.getLogger(__name__)

# A pending escrow this old whose key never reached the keystore was abandoned (its device died
# between creating the row and the keystore write): another device of the user may take it over.
PENDING_ESCROW_TIMEOUT = timedelta(minutes=10)

Outcome = KeyAccess.Outcome
PENDING, ESCROWED = UserKey.State.PENDING, UserKey.State.ESCROWED


class KeyConflict(Exception):
    """The user already escrowed a different key; nothing was overwritten."""


class KeyInvalid(ValueError):
    """Not a 256-bit key, or its key_id does not match it."""


class KeyNotEscrowed(Exception):
    """The user has no escrowed key (yet)."""


def key_path(user: User) -> str:
    """KV v1 path under secret/: tenant and user by immutable UUID, never email or name."""
    return f"haven/{user.organization.uuid}/{user.uuid}"


def key_path_read(*, user: User, location: str, purpose: str, actor: User | None, actor_label: str,
                  job: str = "", detail: str = "") -> dict | None:
    """Read the user's key path in the keystore named `location`: the only way to.

    The access is recorded before the keystore is called, and an unavailable keystore is recorded
    as its outcome; the caller records the outcome of a read that answered (it alone knows whether
    the answer was what it needed).
    """
    key_access_record(subject=user, purpose=purpose, outcome=Outcome.STARTED, actor=actor, actor_label=actor_label,
                      job=job, detail=detail)
    try:
        return engine_named(user.organization, location).read(key_path(user))
    except KeystoreUnavailable as error:
        key_access_record(subject=user, purpose=purpose, outcome=Outcome.FAILED, actor=actor,
                          actor_label=actor_label, job=job, detail=error.reason)
        raise


# --- escrow ------------------------------------------------------------------------------------

def _device_label(device: Device) -> str:
    return f"device {device.uuid} ({device.name})"


def _escrow_audit(user: User, outcome: str, label: str, detail: str) -> None:
    key_access_record(subject=user, purpose=KeyAccess.Purpose.ESCROW, outcome=outcome, actor=user,
                      actor_label=label, detail=detail)


def key_escrow(*, user: User, key: bytes, key_id: str, device: Device) -> UserKey:
    """Escrow the user's key from one of their devices. Idempotent for the same key.

    A device racing with a different key gets KeyConflict and the first key is never overwritten
    (the keystore policy forbids it too). The row returned names this key, escrowed.
    """
    if len(key) != KEY_SIZE or key_id_for(key) != key_id:
        raise KeyInvalid("the key must be 32 bytes and match its key_id")
    label = _device_label(device)
    row = _escrow_claim(user=user, key_id=key_id, label=label)
    if row.state == ESCROWED:
        return row
    _escrow_audit(user, Outcome.STARTED, label, f"key {key_id}")
    location = _escrow_write(user=user, key=key, key_id=key_id, label=label)
    row = _escrow_confirm(row=row, user=user, key_id=key_id, location=location, label=label)
    _escrow_audit(user, Outcome.SUCCEEDED, label, f"key {key_id}")
    return row


def _escrow_claim(*, user: User, key_id: str, label: str) -> UserKey:
    """First transition: the user's row names this key (pending or escrowed), or KeyConflict."""
    try:
        with transaction.atomic():
            row, _ = UserKey.objects.get_or_create(
                user=user, defaults={"organization": user.organization, "key_id": key_id})
    except IntegrityError:  # the racing device's row won
        row = UserKey.objects.get(user=user)
    if row.key_id != key_id and _escrow_abandoned(row=row, user=user, label=label):
        row = _escrow_take_over(row=row, user=user, key_id=key_id, label=label)
    if row.key_id != key_id:
        _escrow_audit(user, Outcome.REFUSED, label, f"a different key ({row.key_id}) is escrowed or being escrowed")
        raise KeyConflict(f"a different key is already escrowed for {user.email}")
    return row


def _escrow_abandoned(*, row: UserKey, user: User, label: str) -> bool:
    """A pending escrow past the timeout whose key never reached the keystore. Reading the key
    path to find out is a key access like any other: recorded before, outcome after."""
    if row.state != PENDING or timezone.now() - row.created_at < PENDING_ESCROW_TIMEOUT:
        return False
    stored = key_path_read(user=user, location=row.location, purpose=KeyAccess.Purpose.ESCROW, actor=user,
                           actor_label=label, detail=f"did the stale pending escrow of key {row.key_id} store a key?")
    _escrow_audit(user, Outcome.SUCCEEDED, label,
                  "nothing is stored: that escrow was abandoned" if stored is None else "a key is stored")
    return stored is None


def _escrow_take_over(*, row: UserKey, user: User, key_id: str, label: str) -> UserKey:
    """Transition: the abandoned pending escrow becomes this device's, under the row's lock and
    only if the row is still the very attempt found abandoned (same key_id, state and start).
    Its start is reset, so no third device takes it over while this one writes."""
    with transaction.atomic():
        current = UserKey.objects.select_for_update().get(pk=row.pk)
        taken = 0
        if current.created_at == row.created_at:
            taken = UserKey.objects.filter(pk=row.pk, key_id=row.key_id, state=PENDING).update(
                key_id=key_id, created_at=timezone.now())
        if taken:
            current.refresh_from_db()
    if taken != 1:
        return current  # another device took it over, or finished, first
    _escrow_audit(user, Outcome.STARTED, label, f"abandoned escrow of key {row.key_id} taken over")
    return current


def _escrow_write(*, user: User, key: bytes, key_id: str, label: str) -> str:
    """The keystore write, with no database lock held. Create-only: a key already there must be
    this one (a retry after a crash between the write and the row update). Returns where it lives."""
    try:
        engine = engine_for_new_keys(user.organization)
        try:
            engine.create(key_path(user), {"key": base64.b64encode(key).decode(), "key_id": key_id})
        except KeystorePathExists:
            # This read is part of the escrow access whose "started" record was just written.
            if (engine.read(key_path(user)) or {}).get("key_id") != key_id:
                _escrow_audit(user, Outcome.REFUSED, label, "the keystore holds a different key")
                raise KeyConflict(f"the keystore holds a different key for {user.email}") from None
    except KeystoreUnavailable as error:
        _escrow_audit(user, Outcome.FAILED, label, error.reason)
        raise
    return engine.name


def _escrow_confirm(*, row: UserKey, user: User, key_id: str, location: str, label: str) -> UserKey:
    """Last transition: pending → escrowed for this key only — a conditional update on
    (pk, key_id, state=pending) under the row's lock, checked by its row count.

    The keystore holds this key now, so it is the user's key whatever happened to the row
    meanwhile: if another device took the row over while this write was in flight (this one
    paused past the timeout), the row follows the keystore, and that device's own create-only
    write finds this key and gets a conflict.
    """
    now = timezone.now()
    escrowed = {"state": ESCROWED, "escrowed_at": now, "location": location}
    taken_over_by = None
    with transaction.atomic():
        current = UserKey.objects.select_for_update().get(pk=row.pk)
        marked = UserKey.objects.filter(pk=row.pk, key_id=key_id, state=PENDING).update(**escrowed)
        if marked == 0 and current.state == PENDING:
            taken_over_by = current.key_id
            marked = UserKey.objects.filter(pk=row.pk, key_id=taken_over_by, state=PENDING).update(
                key_id=key_id, **escrowed)
        current.refresh_from_db()
    if taken_over_by is not None and marked == 1:
        _escrow_audit(user, Outcome.SUCCEEDED, label, f"the keystore holds key {key_id}: the escrow of key "
                                                      f"{taken_over_by} that took this one over will be refused")
    if (current.state, current.key_id) != (ESCROWED, key_id):
        # Only if the keystore let a key be written twice: say so instead of confirming either.
        _escrow_audit(user, Outcome.FAILED, label, f"key {current.key_id} is recorded as escrowed, "
                                                   f"but the keystore accepted key {key_id}")
        raise KeyConflict(f"a different key is already escrowed for {user.email}")
    return current


# --- retrieval ---------------------------------------------------------------------------------

def key_retrieve(*, user: User, purpose: str, actor: User | None, actor_label: str, job: str = "") -> bytes:
    """Read one user's key from the keystore, audited before and after."""
    row = UserKey.objects.filter(user=user, state=ESCROWED).first()
    if row is None:
        raise KeyNotEscrowed(f"{user.email} has no escrowed key")
    stored = key_path_read(user=user, location=row.location, purpose=purpose, actor=actor, actor_label=actor_label,
                           job=job)
    key = base64.b64decode(stored["key"]) if stored else b""
    if len(key) != KEY_SIZE or key_id_for(key) != row.key_id:
        key_access_record(subject=user, purpose=purpose, outcome=Outcome.FAILED, actor=actor,
                          actor_label=actor_label, job=job, detail="the keystore's copy is missing or damaged")
        raise KeyNotEscrowed(f"the keystore has no valid key for {user.email}")
    key_access_record(subject=user, purpose=purpose, outcome=Outcome.SUCCEEDED, actor=actor,
                      actor_label=actor_label, job=job, detail=f"key {row.key_id}")
    return key


def key_deliver_to_device(*, device: Device) -> bytes:
    """Computer replacement: the user, authenticated on a new device, receives their key.
    The user and the organization's administrators are told by email (a guessed password must
    not hand the key over unnoticed), and the access shows in the key-access history."""
    user = device.owner
    key = key_retrieve(user=user, purpose=KeyAccess.Purpose.DEVICE_RETRIEVAL, actor=user,
                       actor_label=_device_label(device), job=str(device.uuid))
    when = f"{timezone.now():%Y-%m-%d %H:%M} UTC"
    send_mail(
        subject="Your Haven backup key was sent to a device",
        message=(f"Your archive encryption key was sent to the device \"{device.name}\" "
                 f"at {when} after you signed in there.\n\n"
                 "If this was not you, tell your administrator at once: they can deauthorize the device."),
        from_email=settings.DEFAULT_FROM_EMAIL, recipient_list=[user.email], fail_silently=True,
    )
    admins = [email for email in org_admin_emails(user.organization_id) if email != user.email]
    if admins:
        send_mail(
            subject=f"Haven: {user.email}'s backup key was sent to a new device",
            message=(f"The archive encryption key of {user.email} was sent to their device \"{device.name}\" "
                     f"({device.uuid}) at {when}. If {user.email} did not expect this, deauthorize the device in "
                     "the console and reset the user's password."),
            from_email=settings.DEFAULT_FROM_EMAIL, recipient_list=admins, fail_silently=True,
        )
    return key

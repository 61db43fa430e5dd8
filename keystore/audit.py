"""The key-access audit log: one hash-chained line per key access, anchored in the keystore.

Each row's hash covers the row before it, and every hash is also written (create-only) to the
keystore, so a database-only attacker can neither edit nor truncate the history unnoticed.
Appends are serialized on the chain head row; the anchor is written after that short
transaction commits, so no keystore call ever runs while the head is locked.
"""
import hashlib
import json
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from keystore.models import AuditChainHead, KeyAccess
from keystore.vault import KeystorePathExists, KeystoreUnavailable, kv_create, kv_list, kv_read

logger = logging.getLogger(__name__)


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

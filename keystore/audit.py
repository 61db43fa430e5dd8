"""The key-access audit log: one hash-chained line per key access, anchored in the keystore.

Each row's hash covers the row before it, and every hash is also written (create-only) to the
keystore, so a database-only attacker can neither edit nor truncate the history unnoticed.
Each organization has its own chain (DESIGN §10): appends are serialized on that chain's head
row only, so organizations never wait on each other; the anchor is written after that short
transaction commits, so no keystore call ever runs while a head is locked. Records written before
chains were per organization stay in the single chain `global` and verify as they always did.
"""
import hashlib
import json
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from keystore.models import LEGACY_CHAIN, AuditChainHead, KeyAccess
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


def _anchor_path(chain: str, seq: int) -> str:
    prefix = settings.HAVEN_AUDIT_ANCHOR_PREFIX
    return f"{prefix}/{seq:012d}" if chain == LEGACY_CHAIN else f"{prefix}/{chain}/{seq:012d}"


def key_access_record(*, subject: User, purpose: str, outcome: str, actor: User | None, actor_label: str,
                      job: str = "", detail: str = "") -> KeyAccess:
    """Append one line to the subject's organization's chain, then anchor it in the keystore."""
    return _append(str(subject.organization.uuid), subject=subject, purpose=purpose, outcome=outcome, actor=actor,
                   actor_label=actor_label, job=job, detail=detail)


def _append(chain: str, *, subject: User, purpose: str, outcome: str, actor: User | None, actor_label: str,
            job: str, detail: str) -> KeyAccess:
    with transaction.atomic():
        # get_or_create retries its get on a concurrent create, under the same row lock.
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(chain=chain)
        access = KeyAccess(
            chain=chain, seq=head.seq + 1, organization=subject.organization, subject=subject, actor=actor,
            actor_label=actor_label[:254], purpose=purpose, job=job[:100], outcome=outcome, detail=detail[:500],
            occurred_at=timezone.now(), prev_hash=head.hash,
        )
        access.hash = _record_hash(head.hash, _hashed_fields(access))
        access.save()
        head.seq, head.hash = access.seq, access.hash
        head.save(update_fields=["seq", "hash"])
    try:
        kv_create(_anchor_path(chain, access.seq), {"hash": access.hash})
    except (KeystoreUnavailable, KeystorePathExists) as error:
        # The access itself is still recorded; verify-audit reports the gap in anchors.
        logger.warning("could not anchor key-access record %s/%s: %s", chain, access.seq, error)
    return access


@dataclass
class AuditVerification:
    records: int
    anchors: int
    problems: list[str]
    unanchored_tail: int = 0  # records after the newest anchor: protected only once a later one is anchored
    chains: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def key_access_verify() -> AuditVerification:
    """Recompute every chain and compare it with the anchors kept in the keystore.

    Detects an edited record (its hash), a deleted one (a gap or a broken link), a truncated log
    (anchors beyond the last record, even of a chain whose records are all gone), a rewritten chain
    (hashes that differ from the anchors), and a record moved into another organization's chain.
    """
    prefix = settings.HAVEN_AUDIT_ANCHOR_PREFIX
    entries = kv_list(f"{prefix}/")
    folders = {name.rstrip("/") for name in entries if name.endswith("/")}
    legacy_anchors = [name for name in entries if not name.endswith("/")]
    chains = set(KeyAccess.objects.values_list("chain", flat=True).distinct()) | folders
    if legacy_anchors:
        chains.add(LEGACY_CHAIN)
    total = AuditVerification(records=0, anchors=0, problems=[], chains=len(chains))
    for chain in sorted(chains):
        anchors = legacy_anchors if chain == LEGACY_CHAIN else kv_list(f"{prefix}/{chain}/")
        part = _verify_chain(chain, anchors)
        label = "" if len(chains) == 1 else f"chain {chain}: "
        total.records += part.records
        total.anchors += part.anchors
        total.unanchored_tail += part.unanchored_tail
        total.problems += [label + problem for problem in part.problems]
    return total


def _verify_chain(chain: str, anchors: list[str]) -> AuditVerification:
    problems: list[str] = []
    previous, expected_seq, count = "0" * 64, 1, 0
    hashes: dict[int, str] = {}
    rows = KeyAccess.objects.filter(chain=chain).select_related("organization", "subject", "actor").order_by("seq")
    for access in rows.iterator():
        count += 1
        if access.seq != expected_seq:
            problems.append(f"records {expected_seq}..{access.seq - 1} are missing")
        if access.prev_hash != previous:
            problems.append(f"record {access.seq} does not follow the record before it")
        if _record_hash(access.prev_hash, _hashed_fields(access)) != access.hash:
            problems.append(f"record {access.seq} was altered (its hash does not match its content)")
        if chain != LEGACY_CHAIN and str(access.organization.uuid) != chain:
            problems.append(f"record {access.seq} belongs to another organization's chain")
        hashes[access.seq] = access.hash
        previous, expected_seq = access.hash, access.seq + 1
    last = max(hashes) if hashes else 0
    newest_anchor = 0
    for name in anchors:
        if not name.isdigit():
            problems.append(f"an unexpected entry {name!r} sits among the anchors")
            continue
        seq = int(name)
        newest_anchor = max(newest_anchor, seq)
        anchored = (kv_read(_anchor_path(chain, seq)) or {}).get("hash")
        if seq > last:
            problems.append(f"record {seq} is anchored in the keystore but missing: the log was truncated")
        elif seq in hashes and hashes[seq] != anchored:
            problems.append(f"record {seq} differs from its anchor in the keystore: the log was rewritten")
    # Each anchor commits to every record before it (the chain), so records whose own anchor
    # failed are still covered by any later anchor; only the tail after the newest one is not.
    return AuditVerification(records=count, anchors=len(anchors), problems=problems,
                             unanchored_tail=max(last - newest_anchor, 0))

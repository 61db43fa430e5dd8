"""Restoring Haven's keystore from a snapshot on the pack storage (docs/operations.md, "Keystore
disaster recovery").

Nothing reaches the keystore before the snapshot is proven to be the one recorded: its size and
sha256 match both the database row and the record beside it on the storage (the record alone
serves when the database was restored from an older backup), and its own SHA256SUMS hold. The
snapshot is installed on the active node with `snapshot-force` (a new cluster's unseal shares are
not the snapshot's); the keystore then seals itself and opens only with the ORIGINAL shares.
"""
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime

from accounts.services import audit_record
from archives.storage import pack_storage
from keystore import raft_snapshots
from keystore.models import KeystoreSnapshot, UserKey
from keystore.raft_snapshots import SnapshotInvalid
from keystore.selectors import haven_keys_escrowed_since, organizations_with_haven_keys
from keystore.snapshots import snapshot_record_name
from keystore.vault import KeystoreUnavailable, vault_client_reset

logger = logging.getLogger(__name__)

NAME = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")


class RestoreRefused(Exception):
    """Nothing was restored: the snapshot is unknown, damaged or altered, or the target is not ready."""


@dataclass(frozen=True)
class StoredSnapshot:
    name: str
    storage_key: str
    sha256: str
    size: int
    taken_at: datetime
    cluster_id: str
    raft_index: int | None


@dataclass
class RestoreOutcome:
    snapshot: StoredSnapshot
    node: str
    sealed: bool
    missing: list[UserKey] = field(default_factory=list)  # escrowed after the snapshot: not in it


def snapshot_find(name: str) -> StoredSnapshot:
    """The snapshot as recorded in the database and beside it on the storage; the two must agree."""
    if not NAME.match(name or ""):
        raise RestoreRefused(f"no snapshot named {name!r} (names look like 20261201T154935Z-3f2a1c)")
    row = KeystoreSnapshot.objects.filter(name=name, state=KeystoreSnapshot.State.SUCCEEDED).first()
    try:
        raw = pack_storage().meta_read(snapshot_record_name(name))
        record = json.loads(raw) if raw is not None else None
    except (OSError, ValueError) as error:
        raise RestoreRefused(f"cannot read the record of snapshot {name}: {error}") from None
    from_row = row and StoredSnapshot(name=row.name, storage_key=row.storage_key, sha256=row.sha256, size=row.size,
                                      taken_at=row.taken_at, cluster_id=row.cluster_id, raft_index=row.raft_index)
    try:
        from_record = record and StoredSnapshot(
            name=record["name"], storage_key=record["storage_key"], sha256=record["sha256"], size=int(record["size"]),
            taken_at=datetime.fromisoformat(record["taken_at"]), cluster_id=record.get("cluster_id") or "",
            raft_index=record.get("raft_index"))
    except (KeyError, TypeError, ValueError):
        raise RestoreRefused(f"the record of snapshot {name} on the storage is damaged") from None
    if from_row and from_record and (from_row.storage_key, from_row.sha256, from_row.size) != (
            from_record.storage_key, from_record.sha256, from_record.size):
        raise RestoreRefused(f"the database and the storage disagree about snapshot {name}: nothing restored")
    found = from_row or from_record
    if not found or found.name != name:
        raise RestoreRefused(f"no snapshot named {name}")
    return found


def snapshot_load(snapshot: StoredSnapshot) -> bytes:
    """The snapshot's bytes, once they match the record and are a whole raft snapshot."""
    try:
        data = pack_storage().read_all(snapshot.storage_key)
    except OSError as error:
        raise RestoreRefused(f"cannot read snapshot {snapshot.name} from the storage: {error}") from None
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != snapshot.size or digest != snapshot.sha256:
        raise RestoreRefused(f"snapshot {snapshot.name} was altered or damaged on the storage: sha256 {digest}, "
                             f"{len(data)} bytes; recorded {snapshot.sha256}, {snapshot.size} bytes. Nothing restored")
    try:
        raft_snapshots.snapshot_check(data)
    except SnapshotInvalid as error:
        raise RestoreRefused(f"snapshot {snapshot.name}: {error}") from None
    return data


def keystore_snapshot_verify(name: str) -> StoredSnapshot:
    """Check a stored snapshot without touching the keystore."""
    snapshot = snapshot_find(name)
    snapshot_load(snapshot)
    return snapshot


def keystore_snapshot_restore(*, name: str, token: str, addresses: list[str], actor_label: str) -> RestoreOutcome:
    """Install snapshot `name` on the active node among `addresses` (initialized and unsealed with
    its own, new shares), with a token allowed `snapshot-force` (its root token)."""
    snapshot = snapshot_find(name)
    data = snapshot_load(snapshot)
    states = raft_snapshots.node_states(addresses)
    active = [address for address, state in states.items() if state == "active"]
    if not active:
        described = ", ".join(f"{address}: {state}" for address, state in states.items())
        raise RestoreRefused(f"no active node to restore to ({described}). A new keystore must be initialized "
                             "(`bao operator init`) and unsealed with its NEW shares before the restore")
    try:
        raft_snapshots.snapshot_force_restore(active[0], token, data)
    except KeystoreUnavailable as error:
        raise RestoreRefused(error.reason) from None
    vault_client_reset()  # this process's clients point at the keystore as it was
    sealed = raft_snapshots.wait_sealed(active[0], timeout=15)
    missing = list(haven_keys_escrowed_since(snapshot.taken_at))
    logger.warning("keystore snapshot %s (sha256 %s) restored on %s by %s; %d key(s) escrowed after it are not in it",
                   snapshot.name, snapshot.sha256, active[0], actor_label, len(missing))
    for organization in organizations_with_haven_keys():
        audit_record(organization=organization, actor=None, actor_label=actor_label, action="keystore.snapshot_restore",
                     target_type="keystore_snapshot",
                     detail={"snapshot": snapshot.name, "sha256": snapshot.sha256, "node": active[0],
                             "keys_escrowed_after": sum(1 for key in missing if key.organization_id == organization.pk)})
    return RestoreOutcome(snapshot=snapshot, node=active[0], sealed=sealed, missing=missing)

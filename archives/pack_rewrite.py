"""What compaction and aggregation share: copying indexed frames out of old packs (checksums
checked), the intent record that makes a crash before the switch leave only an orphan the next run
deletes, the one-transaction switch of index rows to the new pack, and the retirement of old packs
after the grace period (docs/maintenance.md, "Compaction" and "Aggregation").

A new pack is written once with `PackStorage.put`; nothing here appends to, truncates or rewrites
an existing pack.
"""
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from archives.faults import fault_point
from archives.gc import WATERMARK, _watermark_write
from archives.ingest import _pack_key
from archives.maintenance_models import MaintenanceLease
from archives.models import Archive, Block, FileVersion, Pack
from archives.selectors import MAX_MANIFEST_FRAME_PAYLOAD
from archives.storage import PackStorage
from formats.frames import PACK_MAGIC, frame_decode


class LeaseLost(RuntimeError):
    """Another maintenance run holds the archive's lease now: this one must stop writing."""


@contextmanager
def lease_fenced(archive: Archive, holder: str | None) -> Iterator[None]:
    """A transaction in which this run still holds the archive's maintenance lease, row-locked, so
    no other run can take the lease over until it ends (lease_claim's update waits for the lock).

    The intent record is one per archive: a run whose lease lapsed (a worker paused past the TTL)
    and a run that took the lease over would otherwise each take the other's new pack for a crash
    leftover and delete it, or switch rows to a pack the other deleted. Every intent clean-up and
    every switch runs fenced; `holder` None (a direct call, no lease) fences nothing. Each fence
    also renews the lease: a long step (the first aggregation of thousands of small packs) keeps
    it as long as it makes progress, and only a run that stalls past the TTL loses it.
    """
    with transaction.atomic():
        if holder is not None:
            if not MaintenanceLease.objects.select_for_update().filter(archive=archive, holder=holder).exists():
                raise LeaseLost(f"the maintenance lease of archive {archive.uuid} was taken over; stopping")
            MaintenanceLease.objects.filter(archive=archive, holder=holder).update(
                expires_at=timezone.now() + timedelta(seconds=settings.HAVEN_MAINTENANCE_LEASE_SECONDS))
        yield


def rewrite_intent_name(archive: Archive) -> str:
    """One record per archive, shared by compaction and aggregation (one rewrite at a time under
    the archive's lease). The name predates aggregation; it stays so an older release's record is
    still found."""
    return f"compact-intent/{archive.uuid}.json"


def rewrite_intent_record(*, storage: PackStorage, archive: Archive, key: str, holder: str | None = None) -> None:
    """Before a new pack is written: name it, so a crash before its switch leaves a known orphan.
    Fenced: a run that lost its lease must not overwrite the record of the run that took over."""
    with lease_fenced(archive, holder):
        storage.meta_write(rewrite_intent_name(archive), json.dumps({"storage_key": key}).encode())


def rewrite_intent_clear(*, storage: PackStorage, archive: Archive, holder: str | None = None) -> int:
    """Delete the new pack of a rewrite that crashed before its switch committed (1 if any)."""
    with lease_fenced(archive, holder):
        record = storage.meta_read(rewrite_intent_name(archive))
        if record is None:
            return 0
        key = json.loads(record)["storage_key"]
        removed = 0
        if not Pack.objects.filter(storage_key=key).exists():
            storage.delete(key)
            removed = 1
        storage.meta_delete(rewrite_intent_name(archive))
        return removed


def rewrite_intent_done(*, storage: PackStorage, archive: Archive, holder: str | None = None) -> None:
    """After the switch committed: the record goes (fenced, as it is written)."""
    with lease_fenced(archive, holder):
        storage.meta_delete(rewrite_intent_name(archive))


def pack_live_bytes(archive: Archive) -> dict[int, int]:
    """Bytes of frames still indexed, per pack id (block rows, manifest frames of kept versions)."""
    live = dict(Block.objects.filter(archive=archive).values("pack_id").annotate(n=Sum("frame_size"))
                .values_list("pack_id", "n"))
    live.update(FileVersion.objects.filter(archive=archive).values("manifest_pack_id")
                .annotate(n=Sum("manifest_frame_size")).values_list("manifest_pack_id", "n"))
    return live


def _index_of(kind: str):
    return ((Block, "pack", "offset", "frame_size") if kind == Pack.Kind.BLOCKS
            else (FileVersion, "manifest_pack", "manifest_offset", "manifest_frame_size"))


def pack_rows(pack: Pack) -> list[tuple[int, int, int]]:
    """(row id, offset, frame size) of every index row pointing into the pack, in offset order.
    For a manifest pack that is every version row, directory listings (`is_listing`) included."""
    model, pack_field, offset_field, size_field = _index_of(pack.kind)
    return list(model.objects.filter(**{pack_field: pack}).order_by(offset_field)
                .values_list("pk", offset_field, size_field))


def pack_frames_read(storage: PackStorage, pack: Pack, rows: list[tuple[int, int, int]], *,
                     whole: bool) -> list[bytes]:
    """The raw frames the rows point at, each checksum-checked (never copy damage: FormatError, or
    OSError for a pack shorter than its index). `whole`: one read of the pack, then slices (a small
    pack on S3: one GET instead of one per frame); otherwise one ranged read per frame."""
    frames = []
    if whole:
        data = storage.read_all(pack.storage_key)
        for _pk, offset, size in rows:
            if offset + size > len(data):
                raise OSError(f"pack {pack.storage_key} is shorter than its index says ({offset}+{size})")
            frames.append(data[offset:offset + size])
    else:
        with storage.open_reader(pack.storage_key) as reader:
            frames = [reader.read_at(offset, size) for _pk, offset, size in rows]
    for raw in frames:
        frame_decode(raw, max_payload=MAX_MANIFEST_FRAME_PAYLOAD)
    return frames


def _rows_move(model, pack_field: str, offset_field: str, pack_id: int | None, pairs: list[tuple[int, int]]) -> None:
    """UPDATE … FROM (VALUES …): one statement per thousand rows (bulk_update's CASE is quadratic)."""
    meta = model._meta
    table, pack_column, offset_column = (meta.db_table, meta.get_field(pack_field).column,
                                         meta.get_field(offset_field).column)
    quote = connection.ops.quote_name
    for start in range(0, len(pairs), 1000):
        chunk = pairs[start:start + 1000]
        values = ", ".join(["(%s, %s)"] * len(chunk))
        with connection.cursor() as cursor:
            cursor.execute(  # the CTE form runs on PostgreSQL and on SQLite (3.33+) alike
                f"WITH moved(row_id, new_offset) AS (VALUES {values}) "
                f"UPDATE {quote(table)} SET {quote(pack_column)} = %s, {quote(offset_column)} = moved.new_offset "
                f"FROM moved WHERE {quote(table)}.id = moved.row_id",
                [*[value for pair in chunk for value in pair], pack_id])


def packs_switch(packs: list[Pack], new_pack: Pack | None, moved: dict[int, tuple[int, int, int]],
                 now: datetime) -> bool:
    """In the caller's (`lease_fenced`) transaction: point every row of `packs` (one kind) at `new_pack`, and mark
    the old packs retiring. `moved`: row id → (old pack id, old offset, new offset).

    A row moves only if it is still where it was copied from; if any row of the packs is not (a
    racing prune, compaction or rebuild), nothing moves and False tells the caller to roll back.
    """
    model, pack_field, offset_field, _size = _index_of(packs[0].kind)
    # Rows are locked in one statement, block rows in block-id order across every pack, the order
    # backups lock them in (blocks_touch): a switch and a commit never deadlock.
    order = "block_id" if model is Block else "pk"
    rows = list(model.objects.select_for_update(no_key=True).filter(**{f"{pack_field}__in": packs})
                .order_by(order).values_list("pk", f"{pack_field}_id", offset_field))
    if any(pk not in moved or (pack_id, offset) != moved[pk][:2] for pk, pack_id, offset in rows):
        return False
    _rows_move(model, pack_field, offset_field, new_pack.pk if new_pack else None,
               [(pk, moved[pk][2]) for pk, _pack_id, _offset in rows])
    updated = Pack.objects.filter(pk__in=[pack.pk for pack in packs], state=Pack.State.LIVE).update(
        state=Pack.State.RETIRING, retiring_since=now)
    return updated == len(packs)


def frames_rewrite(*, storage: PackStorage, archive: Archive, packs: list[Pack],
                   copies: list[tuple[Pack, list[tuple[int, int, int]], list[bytes]]], now: datetime,
                   step: str, lease_holder: str | None = None) -> int | None:
    """Write `copies` — (pack, its rows, their checksum-checked frames) — into one new pack and
    switch every row of `packs` (one kind) to it in one fenced transaction; the old packs retire.
    No frames to copy: no new pack, the packs just retire. Bytes written, or None if nothing
    was switched (a row moved under us, or rebuild-index gave the new pack a row first: the new
    pack is an orphan the intent record removes). `step` names the fault points (`compact`,
    `aggregate`): `.pack_durable`, `.before_switch_commit`, `.switched`.
    """
    parts, moved, offset = [PACK_MAGIC], {}, len(PACK_MAGIC)
    for pack, rows, frames in copies:
        for (pk, old_offset, size), raw in zip(rows, frames, strict=True):
            parts.append(raw)
            moved[pk] = (pack.pk, old_offset, offset)
            offset += size
    if moved:
        new_uuid = uuid.uuid4()
        key = _pack_key(archive, new_uuid)
        rewrite_intent_record(storage=storage, archive=archive, key=key, holder=lease_holder)
        storage.put(key, parts)
        fault_point(f"{step}.pack_durable")
    try:
        with lease_fenced(archive, lease_holder):
            new_pack = (Pack.objects.create(uuid=new_uuid, archive=archive, kind=packs[0].kind, storage_key=key,
                                            size=offset, frame_count=len(moved)) if moved else None)
            switched = packs_switch(packs, new_pack, moved, now)
            if switched:
                fault_point(f"{step}.before_switch_commit")
            else:
                transaction.set_rollback(True)
    except IntegrityError:
        switched = False
    if not switched:
        rewrite_intent_clear(storage=storage, archive=archive, holder=lease_holder)
        return None
    rewrite_intent_done(storage=storage, archive=archive, holder=lease_holder)
    fault_point(f"{step}.switched")
    return offset if moved else 0


def packs_retire(*, storage: PackStorage, archive: Archive, grace: timedelta, now: datetime) -> tuple[int, int]:
    """Retire packs `retiring` for longer than `grace` (compacted or aggregated alike): the file
    goes to quarantine first (the orphan sweep deletes it later; rebuild-index still reads it),
    then the row. (count, bytes)"""
    count = size = 0
    for pack in Pack.objects.filter(archive=archive, state=Pack.State.RETIRING, retiring_since__lt=now - grace):
        if storage.exists(pack.storage_key):
            storage.quarantine(pack.storage_key, at=now)
        fault_point("compact.before_retire_row")
        with transaction.atomic():
            if Block.objects.filter(pack=pack).exists() or FileVersion.objects.filter(manifest_pack=pack).exists():
                raise RuntimeError(f"retiring pack {pack.storage_key} has index rows")  # never: see packs_switch
            Pack.objects.filter(pk=pack.pk).delete()
        count, size = count + 1, size + pack.size
        fault_point("compact.retired")
    if count:
        record = storage.meta_read(WATERMARK)
        if record and not Pack.objects.filter(storage_key=json.loads(record)["storage_key"]).exists():
            _watermark_write(storage, now)  # the sweep must not take a retired pack for a forgotten one
    return count, size

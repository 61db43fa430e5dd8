"""Aggregation: merge an archive's small packs into packs of about the target size, so an object
store holds tens of MiB per object rather than one small object per incremental backup or commit
call (docs/maintenance.md, "Aggregation").

The small packs are the spool: each upload stays durable as its own immutable pack, as before.
Aggregation seals them: it copies the indexed frames of a group of small packs (one archive, one
kind) into one new pack written once with `PackStorage.put`, then in one transaction points every
row at the new pack and marks the old packs retiring; they are retired after the grace period,
as compaction's are. The intent record, the switch and the retirement are compaction's
(archives/pack_rewrite.py), so the crash rule is the same: a crash before the switch commits
leaves one orphan that the next run deletes, after it the index is consistent.
"""
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max

from archives.models import Archive, Pack
from archives.pack_rewrite import (
    frames_rewrite,
    pack_frames_read,
    pack_live_bytes,
    pack_rows,
    rewrite_intent_clear,
)
from archives.storage import PackStorage, pack_storage
from formats.errors import FormatError
from formats.frames import PACK_MAGIC


@dataclass(frozen=True)
class AggregationPolicy:
    """Which packs are merged, and when (the settings are documented in docs/maintenance.md)."""

    target: int  # bytes: a merged pack is at most this big
    small: int  # bytes: packs smaller than this are candidates
    count: int  # a group of at least this many small packs is merged even if its total is small
    settle: timedelta  # packs younger than this are left alone
    quiet: timedelta  # an archive with no new pack for this long has all its small packs merged

    @classmethod
    def from_settings(cls) -> "AggregationPolicy":
        target = settings.HAVEN_PACK_TARGET_MIB * 1024 * 1024
        return cls(target=target, small=target * settings.HAVEN_PACK_SMALL_PERCENT // 100,
                   count=settings.HAVEN_PACK_MERGE_COUNT,
                   settle=timedelta(seconds=settings.HAVEN_PACK_SETTLE_SECONDS),
                   quiet=timedelta(days=settings.HAVEN_PACK_QUIET_DAYS))


@dataclass
class AggregationResult:
    groups: list[tuple[str, int, int]] = field(default_factory=list)  # planned: (kind, packs, live bytes)
    packs_merged: int = 0  # small packs switched out (now retiring)
    packs_written: int = 0
    bytes_written: int = 0
    bytes_merged: int = 0  # stored size of the packs switched out
    orphans_removed: int = 0
    skipped: list[str] = field(default_factory=list)


def size_class(size: int, policy: AggregationPolicy) -> int:
    """0 for [small/count, small), 1 for the next factor of `count` down, and so on: packs are
    merged with packs of about their own size, so each byte is rewritten about log_count(small /
    its first pack's size) times, not once per later merge (an LSM tree's size tiers)."""
    level, bound = 0, policy.small // max(2, policy.count)
    while size < bound and bound > 0:
        level, bound = level + 1, bound // max(2, policy.count)
    return level


def aggregation_plan(candidates: list[tuple[Pack, int]], *, quiet: bool,
                     policy: AggregationPolicy) -> list[list[tuple[Pack, int]]]:
    """Groups to merge, from (pack, live bytes) of one archive and kind, oldest first.

    Within a size class, packs are taken oldest first until the next would pass the target. A
    group is merged if it has two packs or more and either its live bytes reach `small` (the new
    pack is not small: it is never rewritten by aggregation again) or it has `count` packs. A
    quiet archive (no new pack for `quiet`) pools every class, so a device that stopped backing up
    does not keep up to count − 1 small packs per class for ever. A single pack is never merged.
    """
    pools: dict[int, list[tuple[Pack, int]]] = {}
    for pack, live in candidates:
        pools.setdefault(0 if quiet else size_class(pack.size, policy), []).append((pack, live))
    groups: list[list[tuple[Pack, int]]] = []
    for pool in pools.values():
        group: list[tuple[Pack, int]] = []
        for item in pool:
            if group and sum(live for _, live in group) + item[1] > policy.target:
                groups.append(group)
                group = []
            group.append(item)
        groups.append(group)
    return [group for group in groups if len(group) >= 2 and (
        quiet or len(group) >= policy.count or sum(live for _, live in group) >= policy.small)]


def aggregation_candidates(*, archive: Archive, kind: str, live: dict[int, int], policy: AggregationPolicy,
                           now: datetime) -> list[list[tuple[Pack, int]]]:
    """The groups, as (pack, live bytes), aggregation would merge now for one archive and kind.
    `live`: `pack_live_bytes(archive)`."""
    newest = Pack.objects.filter(archive=archive, kind=kind).aggregate(newest=Max("created_at"))["newest"]
    quiet = newest is not None and now - newest >= policy.quiet
    packs = Pack.objects.filter(archive=archive, kind=kind, state=Pack.State.LIVE, size__lt=policy.small,
                                created_at__lt=now - policy.settle).order_by("created_at", "pk")
    # A pack with no indexed frame is compaction's (it goes straight to retiring), not ours.
    candidates = [(pack, live[pack.pk]) for pack in packs if live.get(pack.pk)]
    return aggregation_plan(candidates, quiet=quiet, policy=policy)


def packs_merge(*, storage: PackStorage, archive: Archive, group: list[Pack], now: datetime,
                skipped: list[str], lease_holder: str | None = None) -> tuple[int, list[Pack]] | None:
    """Copy the indexed frames of `group` (checksums checked) into one new pack, then switch every
    row to it in one transaction; (bytes written, packs merged), or None if nothing was switched.

    A damaged pack is left out of the group (verification's business), noted in `skipped`.
    `lease_holder`: see lease_fenced.
    """
    rewrite_intent_clear(storage=storage, archive=archive, holder=lease_holder)  # one intent record at a time
    copies = []
    for pack in group:
        rows = pack_rows(pack)
        try:
            copies.append((pack, rows, pack_frames_read(storage, pack, rows, whole=True)))
        except (FormatError, OSError) as error:
            skipped.append(f"{pack.storage_key}: {error}")
    merged = [pack for pack, _, _ in copies]
    if len(merged) < 2 or not any(rows for _, rows, _ in copies):
        return None
    written = frames_rewrite(storage=storage, archive=archive, packs=merged, copies=copies, now=now,
                             step="aggregate", lease_holder=lease_holder)
    if written is None:
        skipped.append(f"{len(merged)} pack(s) from {merged[0].storage_key}: their rows changed during "
                       "aggregation; next run")
        return None
    return written, merged


def archive_aggregate(*, archive: Archive, now: datetime, policy: AggregationPolicy | None = None,
                      dry_run: bool = False, lease_holder: str | None = None) -> AggregationResult:
    """Merge the archive's small packs (or, dry-run, say which groups would be merged)."""
    policy = policy or AggregationPolicy.from_settings()
    storage = pack_storage()
    result = AggregationResult()
    if not dry_run:
        result.orphans_removed = rewrite_intent_clear(storage=storage, archive=archive, holder=lease_holder)
    live = pack_live_bytes(archive)
    for kind in (Pack.Kind.BLOCKS, Pack.Kind.MANIFESTS):
        for pairs in aggregation_candidates(archive=archive, kind=kind, live=live, policy=policy, now=now):
            group, live_bytes = [pack for pack, _ in pairs], sum(n for _, n in pairs)
            result.groups.append((kind, len(group), live_bytes))
            if dry_run:
                result.packs_merged += len(group)
                result.packs_written += 1
                result.bytes_written += len(PACK_MAGIC) + live_bytes
                result.bytes_merged += sum(pack.size for pack in group)
                continue
            done = packs_merge(storage=storage, archive=archive, group=group, now=now, skipped=result.skipped,
                               lease_holder=lease_holder)
            if done is None:
                continue
            written, merged = done
            result.packs_merged += len(merged)
            result.packs_written += 1
            result.bytes_written += written
            result.bytes_merged += sum(pack.size for pack in merged)
    return result

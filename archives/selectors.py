"""Reads of the archives app and the archive access helpers (org-scoped; 404 for not-yours)."""
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from itertools import groupby

from django.db.models import F, OuterRef, QuerySet, Subquery

from accounts.models import Device, Role, User
from accounts.selectors import one_or_404
from archives.models import Archive, BackupRun, Block, FileVersion
from archives.storage import pack_storage
from formats.frames import frame_decode
from formats.manifest_frames import manifest_frame_blob

# Roles that may see (and later restore) every archive of their organization.
ARCHIVE_WIDE_ROLES = {Role.ORG_ADMIN, Role.RESTORE_OPERATOR}


def archives_visible_to(actor: User) -> QuerySet[Archive]:
    archives = Archive.objects.filter(organization_id=actor.organization_id).select_related("device", "user")
    if actor.role in ARCHIVE_WIDE_ROLES:
        return archives
    return archives.filter(user=actor)


def archive_for_user(actor: User, archive_uuid) -> Archive:
    return one_or_404(archives_visible_to(actor), archive_uuid, kind="archive")


def archives_visible_to_device(device: Device) -> QuerySet[Archive]:
    """A device reads every archive of its own user (same key: computer replacement)."""
    return Archive.objects.filter(organization_id=device.organization_id, user_id=device.owner_id).select_related("device")


def archive_for_device(device: Device, archive_uuid, *, write: bool = False) -> Archive:
    """A device writes only its own archive; reads its user's archives; 404 otherwise."""
    archives = archives_visible_to_device(device)
    if write:
        archives = archives.filter(device=device)
    return one_or_404(archives, archive_uuid, kind="archive")


archives_readable_by_device = archives_visible_to_device  # the name agentapi used first


# --- versions and blocks ----------------------------------------------------------------------

MAX_MANIFEST_FRAME_PAYLOAD = 512 * 1024 * 1024  # manifests of very large files exceed the frame default
QUERY_CHUNK = 2000  # ids per IN (...) query: well under SQLite's and PostgreSQL's parameter limits


class BlocksNotFound(Exception):
    def __init__(self, block_ids: list[bytes]):
        super().__init__(f"{len(block_ids)} block(s) are not stored in this archive")
        self.block_ids = block_ids


class FetchTooLarge(Exception):
    pass


def versions_at(archive: Archive, *, at: datetime, after: tuple[datetime, int] | None = None, limit: int = 1000
                ) -> tuple[list, tuple[datetime, int] | None]:
    """One page of the newest version of each path committed at or before `at`, deleted paths
    left out, in commit order (committed_at, id); and where the next page starts (None after
    the last).

    "Newest" is by the server's commit time, never by row id: an index rebuilt from the packs
    inserts rows in whatever order it reads the packs.

    The page walks the (archive, committed_at) index from the cursor and stops at `limit` rows,
    so a page costs the rows it passes, however large the archive; commit order keeps a page's
    manifests together in their manifest packs (one coalesced read each). Paging by row id made
    SQLite walk the archive's whole time range and sort it once per page: a restore of 200,000
    files spent 60 s of server CPU there.
    """
    newest = (FileVersion.objects.filter(archive=archive, path_id=OuterRef("path_id"), committed_at__lte=at)
              .order_by("-committed_at", "-id").values("id")[:1])
    rows = FileVersion.objects.filter(archive=archive, committed_at__lte=at)
    if after is not None:
        rows = rows.filter(committed_at__gte=after[0]).exclude(committed_at=after[0], id__lte=after[1])
    page = _version_rows(rows.filter(deleted=False, id=Subquery(newest)).order_by("committed_at", "id")[:limit])
    return page, ((page[-1].committed_at, page[-1].pk) if len(page) == limit else None)


# What a listing needs of a version, as named tuples (`.pk`, `.uuid`, `.path_id`, ...,
# `.storage_key` of its manifest pack): a restore lists every version of an archive, and a model
# instance per row (with its pack's) cost more than the query.
VERSION_ROW_FIELDS = ("pk", "uuid", "path_id", "committed_at", "deleted", "stored_size", "storage_key",
                      "manifest_offset", "manifest_frame_size")


def _version_rows(versions: QuerySet) -> list:
    return list(versions.annotate(storage_key=F("manifest_pack__storage_key"))
                .values_list(*VERSION_ROW_FIELDS, named=True))


def versions_at_pages(archive: Archive, *, at: datetime, limit: int = 1000) -> Iterator[list]:
    """Every page of `versions_at`."""
    versions, after = versions_at(archive, at=at, limit=limit)
    while versions:
        yield versions
        if after is None:
            return
        versions, after = versions_at(archive, at=at, after=after, limit=limit)


def versions_of_path(archive: Archive, *, path_id: str, limit: int = 1000) -> list:
    """Every version of one path (rows as `versions_at`'s), oldest first."""
    return _version_rows(FileVersion.objects.filter(archive=archive, path_id=path_id)
                         .order_by("committed_at", "id")[:limit])


def manifests_read(versions: list, *, verify_checksums: bool = True) -> dict[int, bytes]:
    """Encrypted manifest blobs of the given versions (rows of `versions_at`: anything with
    `.pk`, `.storage_key` and the manifest's offset and size), read from their manifest packs:
    the frames of one pack in coalesced ranged reads (a page in commit order is one or two
    reads, not one per version: on S3 each read is a request).

    `verify_checksums=False` only for a reader that authenticates every blob itself: the agent,
    which decrypts each manifest with GCM bound to its archive, path and version (as block
    frames are streamed to it unhashed); the frames' structure is checked all the same."""
    storage = pack_storage()
    by_pack: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for version in versions:
        by_pack[version.storage_key].append((version.manifest_offset, version.manifest_frame_size, version.pk))
    blobs: dict[int, bytes] = {}
    for key, members in by_pack.items():
        members.sort()
        position = 0  # members and runs are both in offset order: each run takes the next members
        with storage.open_reader(key) as reader:
            for _, offset, length, _ in read_runs([(key, start, size) for start, size, _ in members]):
                view = memoryview(reader.read_at(offset, length))
                while position < len(members) and members[position][0] < offset + length:
                    start, size, pk = members[position]
                    frame = frame_decode(view[start - offset:start - offset + size],
                                         max_payload=MAX_MANIFEST_FRAME_PAYLOAD, verify_checksums=verify_checksums)
                    blobs[pk] = manifest_frame_blob(frame.payload)
                    position += 1
    return blobs


def blocks_read(archive: Archive, block_ids: list[bytes], *, max_bytes: int) -> list[bytes]:
    """The stored frames of the given blocks, in the order asked (checked against the index)."""
    unique = list(dict.fromkeys(block_ids))
    rows: dict[bytes, Block] = {}
    for start in range(0, len(unique), QUERY_CHUNK):
        for block in (Block.objects.filter(archive=archive, block_id__in=unique[start:start + QUERY_CHUNK])
                      .select_related("pack")):
            rows[bytes(block.block_id)] = block
    absent = [block_id for block_id in unique if block_id not in rows]
    if absent:
        raise BlocksNotFound(absent)
    if sum(rows[b].frame_size for b in unique) > max_bytes:
        raise FetchTooLarge(f"the blocks asked for exceed {max_bytes} bytes; ask for fewer at once")
    storage = pack_storage()
    data: dict[bytes, bytes] = {}
    by_pack: dict[str, list[Block]] = defaultdict(list)
    for block in rows.values():
        by_pack[block.pack.storage_key].append(block)
    for key, members in by_pack.items():
        with storage.open_reader(key) as reader:
            for block in sorted(members, key=lambda b: b.offset):
                data[bytes(block.block_id)] = reader.read_at(block.offset, block.frame_size)
    return [data[block_id] for block_id in block_ids]


def last_completed_run(archive: Archive) -> BackupRun | None:
    return (BackupRun.objects.filter(archive=archive, status=BackupRun.Status.COMPLETED)
            .order_by("-finished_at").first())


COALESCE_GAP = 256 * 1024  # frames of one pack this close are read together (the gap is read and dropped)
COALESCE_MAX = 8 * 1024 * 1024  # but no single read larger than this: the server's memory stays bounded


def blocks_locate(archive: Archive, block_ids: list[bytes], *, max_bytes: int) -> list[tuple[str, int, int]]:
    """(pack key, offset, frame size) of each distinct block asked for, in pack order; every
    check of `blocks_read` (BlocksNotFound, FetchTooLarge) is made here, before anything is read."""
    unique = list(dict.fromkeys(block_ids))
    rows: dict[bytes, tuple[str, int, int]] = {}
    for start in range(0, len(unique), QUERY_CHUNK):
        for block_id, key, offset, size in (
                Block.objects.filter(archive=archive, block_id__in=unique[start:start + QUERY_CHUNK])
                .values_list("block_id", "pack__storage_key", "offset", "frame_size")):
            rows[bytes(block_id)] = (key, offset, size)
    absent = [block_id for block_id in unique if block_id not in rows]
    if absent:
        raise BlocksNotFound(absent)
    if sum(size for _, _, size in rows.values()) > max_bytes:
        raise FetchTooLarge(f"the blocks asked for exceed {max_bytes} bytes; ask for fewer at once")
    return sorted(rows.values())


def read_runs(located: list[tuple[str, int, int]], *, gap: int = COALESCE_GAP,
              max_read: int = COALESCE_MAX) -> list[tuple[str, int, int, list[tuple[int, int]]]]:
    """Coalesce frames (sorted by pack and offset) into ranged reads: (pack key, offset, length,
    [(start, end) of each span of wanted bytes within the read, adjacent frames merged])."""
    runs: list[tuple[str, int, int, list[tuple[int, int]]]] = []
    for key, offset, size in located:
        if runs:
            run_key, run_offset, run_length, spans = runs[-1]
            end = run_offset + run_length
            if run_key == key and 0 <= offset - end <= gap and offset + size - run_offset <= max_read:
                start = offset - run_offset
                if spans[-1][1] == start:
                    spans[-1] = (spans[-1][0], start + size)
                else:
                    spans.append((start, start + size))
                runs[-1] = (run_key, run_offset, offset + size - run_offset, spans)
                continue
        runs.append((key, offset, size, [(0, size)]))
    return runs


def frames_stream(located: list[tuple[str, int, int]]) -> Iterator[bytes]:
    """The located frames back to back, in pack order: one ranged read per coalesced run."""
    storage = pack_storage()
    for key, runs in groupby(read_runs(located), key=lambda run: run[0]):
        with storage.open_reader(key) as reader:
            for _, offset, length, spans in runs:
                data = reader.read_at(offset, length)
                if len(spans) == 1 and spans[0] == (0, length):
                    yield data
                else:
                    view = memoryview(data)
                    for start, end in spans:
                        yield bytes(view[start:end])

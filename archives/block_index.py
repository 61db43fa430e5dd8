"""Set-based SQL for the rows a backup writes: block index rows and file-version rows.

A first backup of many small files writes two rows per file (its block, its version); through
the ORM each cost a model instance, per-field preparation and, for lookups, one bound parameter
per id. Here a batch is one statement (PostgreSQL: arrays bound once, `= ANY(%s)`, `unnest`; SQLite:
one IN list or one `executemany`), rows are tuples, and the number of statements per upload or
commit does not grow with its number of files (tests/archives/test_commit_queries.py).

Only the archives services call these; the rules (locks, order, what is durable when) are theirs
(archives/ingest.py).
"""
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from django.db import connection

from archives.models import Block, FileVersion

SQLITE_CHUNK = 30_000  # below SQLite's default 32,766 bound parameters


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    if _postgres():  # an array is one parameter, however long
        yield items
        return
    if connection.connection is not None:
        size = min(size, connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) - 8)
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _in(column: str, count: int) -> str:
    if _postgres():
        return f"{_q(column)} = ANY(%s)"
    return f"{_q(column)} IN ({', '.join(['%s'] * count)})"


def _in_params(values: Sequence) -> list:
    return [list(values)] if _postgres() else list(values)


def _time(value: datetime):
    return connection.ops.adapt_datetimefield_value(value)


BLOCK = Block._meta.db_table
VERSION = FileVersion._meta.db_table


def block_sizes(*, archive_pk: int, block_ids: Sequence[bytes]) -> dict[bytes, int]:
    """{block id: frame size} of the given ids that the archive's index holds; no lock."""
    found: dict[bytes, int] = {}
    connection.ensure_connection()
    with connection.cursor() as cursor:
        for chunk in _chunks(block_ids, SQLITE_CHUNK):
            cursor.execute(f"SELECT block_id, frame_size FROM {_q(BLOCK)} "
                           f"WHERE archive_id = %s AND {_in('block_id', len(chunk))}",
                           [archive_pk, *_in_params(chunk)])
            found.update((bytes(block_id), size) for block_id, size in cursor.fetchall())
    return found


def blocks_lock_touch(*, archive_pk: int, block_ids: Sequence[bytes], now: datetime,
                      stale_before: datetime) -> dict[bytes, int]:
    """Lock the archive's rows of these ids in block-id order, set `last_referenced_at = now` on
    those referenced before `stale_before`; {block id: frame size} of the rows that exist.

    Must run inside a transaction (the lock lasts until it ends). PostgreSQL: FOR NO KEY UPDATE
    (an insert of another block, a FK check, is not blocked); SQLite: the transaction's
    BEGIN IMMEDIATE already holds the database's one write lock.
    """
    found: dict[bytes, int] = {}
    stale: list[int] = []
    lock = " FOR NO KEY UPDATE" if _postgres() else ""
    ordered = sorted(set(block_ids))
    connection.ensure_connection()
    with connection.cursor() as cursor:
        for chunk in _chunks(ordered, SQLITE_CHUNK):
            cursor.execute(f"SELECT id, block_id, frame_size, last_referenced_at < %s FROM {_q(BLOCK)} "
                           f"WHERE archive_id = %s AND {_in('block_id', len(chunk))} ORDER BY block_id{lock}",
                           [_time(stale_before), archive_pk, *_in_params(chunk)])
            for pk, block_id, size, is_stale in cursor.fetchall():
                found[bytes(block_id)] = size
                if is_stale:
                    stale.append(pk)
        for chunk in _chunks(stale, SQLITE_CHUNK):
            cursor.execute(f"UPDATE {_q(BLOCK)} SET last_referenced_at = %s WHERE {_in('id', len(chunk))}",
                           [_time(now), *_in_params(chunk)])
    return found


def block_rows_insert(*, archive_pk: int, pack_pk: int, rows: Sequence[tuple[bytes, int, int]], now: datetime) -> None:
    """Index rows (block id, offset, frame size) pointing into one pack, in one statement; a row
    a concurrent batch inserted first is kept (its copy wins), as `ignore_conflicts` did."""
    if not rows:
        return
    columns = "archive_id, block_id, pack_id, " + _q("offset") + ", frame_size, last_referenced_at"
    at = _time(now)
    with connection.cursor() as cursor:
        if _postgres():
            cursor.execute(f"INSERT INTO {_q(BLOCK)} ({columns}) SELECT %s, t.b, %s, t.o, t.s, %s "
                           "FROM unnest(%s::bytea[], %s::bigint[], %s::integer[]) AS t(b, o, s) ON CONFLICT DO NOTHING",
                           [archive_pk, pack_pk, at, [r[0] for r in rows], [r[1] for r in rows],
                            [r[2] for r in rows]])
        else:
            cursor.executemany(f"INSERT INTO {_q(BLOCK)} ({columns}) VALUES (%s, %s, %s, %s, %s, %s) "
                               "ON CONFLICT DO NOTHING",
                               [(archive_pk, block_id, pack_pk, offset, size, at) for block_id, offset, size in rows])


def version_owners(version_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """{version id: archive pk} of the given ids already committed, in any archive."""
    owners: dict[uuid.UUID, int] = {}
    connection.ensure_connection()
    with connection.cursor() as cursor:
        for chunk in _chunks(version_ids, SQLITE_CHUNK):
            values = list(chunk) if _postgres() else [v.hex for v in chunk]
            cursor.execute(f"SELECT uuid, archive_id FROM {_q(VERSION)} WHERE {_in('uuid', len(chunk))}",
                           _in_params(values))
            owners.update((value if isinstance(value, uuid.UUID) else uuid.UUID(value), archive_pk)
                          for value, archive_pk in cursor.fetchall())
    return owners


# (uuid, raw 32-byte path id, deleted, is_listing, concatenated block ids, stored size, manifest offset,
# frame size)
VersionRow = tuple[uuid.UUID, bytes, bool, bool, bytes, int, int, int]


def version_rows_insert(*, archive_pk: int, pack_pk: int, run_pk: int | None, committed_at: datetime,
                        rows: Sequence[VersionRow]) -> None:
    """File-version rows of one manifest pack, in one statement. A version id committed
    concurrently fails the statement (IntegrityError): nothing of it is inserted."""
    if not rows:
        return
    columns = ("uuid, archive_id, path_id, committed_at, deleted, is_listing, block_ids, stored_size, "
               "manifest_pack_id, manifest_offset, manifest_frame_size, run_id")
    at = _time(committed_at)
    with connection.cursor() as cursor:
        if _postgres():
            arrays = [list(column) for column in zip(*rows, strict=True)]
            cursor.execute(f"INSERT INTO {_q(VERSION)} ({columns}) "
                           "SELECT t.u, %s, t.p, %s, t.d, t.l, t.b, t.s, %s, t.o, t.f, %s "
                           "FROM unnest(%s::uuid[], %s::bytea[], %s::boolean[], %s::boolean[], %s::bytea[], "
                           "%s::bigint[], %s::bigint[], %s::integer[]) AS t(u, p, d, l, b, s, o, f)",
                           [archive_pk, at, pack_pk, run_pk, *arrays])
        else:
            cursor.executemany(f"INSERT INTO {_q(VERSION)} ({columns}) "
                               "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                               [(u.hex, archive_pk, path_id, at, deleted, listing, block_ids, size, pack_pk, offset,
                                 frame_size, run_pk)
                                for u, path_id, deleted, listing, block_ids, size, offset, frame_size in rows])

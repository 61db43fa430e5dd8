"""Which table layout keeps file-activity search fast at 10 million events per organization?
(issue 13; the figures are in docs/activity.md)

Three layouts of the FileEvent table, each filled with the same rows (`--events` for one large
organization plus a tenth as many spread over 49 small ones, interleaved in arrival order over 12
months, as a fleet sends them), in a database of its own (`--database`, dropped and made again):

* `btree`: one table, B-tree on (organization, occurred_at) — what activity/models.py declares;
* `brin`: one table, BRIN on occurred_at (plus B-tree on organization only);
* `monthly`: declarative partitions by month of occurred_at, B-tree on (organization, occurred_at)
  in each partition.

For each: load time, index size, then the console's searches (newest page of the last day, a
count over a week three months ago, path-contains over the last week) for the large and for a
small organization, median of `--repeat` warm runs; and retention (drop the oldest month).

    .venv/bin/python bench/events_layout.py                    # 10,000,000 events (slow)
    .venv/bin/python bench/events_layout.py --events 1000000   # a quick run
"""
from __future__ import annotations

import argparse
import statistics
import time

COLUMNS = """id bigint NOT NULL, event_id uuid NOT NULL, organization_id bigint NOT NULL, device_id bigint,
 user_id bigint, batch_id bigint NOT NULL, occurred_at timestamptz NOT NULL, received_at timestamptz NOT NULL,
 event_type varchar(16) NOT NULL, path varchar(4096) NOT NULL, dest_path varchar(4096) NOT NULL,
 file_name varchar(255) NOT NULL, size bigint, sha256 varchar(64) NOT NULL, category varchar(16) NOT NULL,
 mime_type varchar(127) NOT NULL, vector varchar(32) NOT NULL, entropy double precision, os_user varchar(128) NOT NULL,
 process varchar(255) NOT NULL"""
START = "2026-01-01"

QUERIES = {
    "newest 100 of the last day": "SELECT id FROM {t} WHERE organization_id = %(org)s AND occurred_at >= "
                                  "%(end)s::timestamptz - interval '1 day' ORDER BY occurred_at DESC LIMIT 100",
    "count of a week 3 months ago": "SELECT count(*) FROM {t} WHERE organization_id = %(org)s AND occurred_at >= "
                                    "%(end)s::timestamptz - interval '97 days' AND occurred_at < "
                                    "%(end)s::timestamptz - interval '90 days'",
    "path contains, last 7 days": "SELECT id FROM {t} WHERE organization_id = %(org)s AND occurred_at >= "
                                  "%(end)s::timestamptz - interval '7 days' AND path LIKE '%%secret%%' "
                                  "ORDER BY occurred_at DESC LIMIT 100",
}


def fill_sql(table: str, events: int) -> str:
    # Row n arrives at START + n * (a year / total); one in 11 belongs to a small organization.
    total = events + events // 10
    return f"""
    INSERT INTO {table}
    SELECT n, gen_random_uuid(), CASE WHEN n % 11 = 0 THEN 2 + (n / 11) % 49 ELSE 1 END, 1 + n % 500, 1 + n % 400,
           n / 2000, ts, ts, (ARRAY['created','modified','modified','renamed','deleted'])[1 + n % 5],
           '/home/user' || (n % 400) || '/' || (ARRAY['Documents','Desktop','Downloads','src','secret'])[1 + n % 5]
               || '/file-' || n || '.docx',
           '', 'file-' || n || '.docx', n % 100000000, md5(n::text) || md5((n + 1)::text), 'document', '',
           CASE WHEN n % 17 = 0 THEN 'removable_media' ELSE '' END, 4.5, 'user' || (n % 400), ''
    FROM (SELECT n, timestamptz '{START}' + (n::float8 / {total}) * interval '365 days' AS ts
          FROM generate_series(1, {total}) AS n) AS g"""


def layout_create(cursor, name: str) -> None:
    if name == "monthly":
        cursor.execute(f"CREATE TABLE ev_monthly ({COLUMNS}) PARTITION BY RANGE (occurred_at)")
        for month in range(13):
            cursor.execute(f"CREATE TABLE ev_monthly_{month:02d} PARTITION OF ev_monthly FOR VALUES FROM "
                           f"(timestamptz '{START}' + interval '{month} month') TO "
                           f"(timestamptz '{START}' + interval '{month + 1} month')")
    else:
        cursor.execute(f"CREATE TABLE ev_{name} ({COLUMNS})")


def layout_index(cursor, name: str) -> None:
    table = f"ev_{name}"
    if name == "brin":
        cursor.execute(f"CREATE INDEX ON {table} USING brin (occurred_at) WITH (pages_per_range = 32)")
        cursor.execute(f"CREATE INDEX ON {table} (organization_id)")
    else:
        cursor.execute(f"CREATE INDEX ON {table} (organization_id, occurred_at)")
    # Both keep the unique event id the ingestion needs (on a partitioned table it must hold the
    # partition key: (event_id, occurred_at), which is what an idempotent re-send repeats anyway).
    cursor.execute(f"CREATE UNIQUE INDEX ON {table} (event_id{', occurred_at' if name == 'monthly' else ''})")


def timed(cursor, sql: str, params: dict, repeat: int) -> float:
    cursor.execute(sql, params)  # warm
    cursor.fetchall()
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        cursor.execute(sql, params)
        cursor.fetchall()
        runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs)


def main() -> int:
    import psycopg

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="haven_bench_layout")
    parser.add_argument("--events", type=int, default=10_000_000, help="events of the large organization")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--layouts", default="btree,brin,monthly")
    args = parser.parse_args()
    with psycopg.connect(f"{args.server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{args.database}"')
    end = f"timestamptz '{START}' + interval '365 days'"
    with psycopg.connect(f"{args.server}/{args.database}", autocommit=True) as connection:
        cursor = connection.cursor()
        cursor.execute(f"SELECT ({end})::text")
        end_value = cursor.fetchone()[0]
        for name in args.layouts.split(","):
            layout_create(cursor, name)
            started = time.perf_counter()
            cursor.execute(fill_sql(f"ev_{name}", args.events))
            loaded = time.perf_counter() - started
            started = time.perf_counter()
            layout_index(cursor, name)
            cursor.execute(f"VACUUM ANALYZE ev_{name}")
            indexed = time.perf_counter() - started
            cursor.execute(f"SELECT pg_total_relation_size(c.oid) - pg_relation_size(c.oid), pg_relation_size(c.oid) "
                           f"FROM pg_class c WHERE relname = 'ev_{name}'")
            if name == "monthly":
                cursor.execute("SELECT sum(pg_indexes_size(inhrelid)), sum(pg_relation_size(inhrelid)) "
                               "FROM pg_inherits WHERE inhparent = 'ev_monthly'::regclass")
            index_bytes, heap_bytes = cursor.fetchone()
            print(f"{name}: loaded in {loaded:.0f}s, indexed in {indexed:.0f}s; heap {heap_bytes / 2 ** 20:.0f} MiB, "
                  f"indexes {index_bytes / 2 ** 20:.0f} MiB", flush=True)
            for org, label in ((1, "large org"), (7, "small org")):
                for query, sql in QUERIES.items():
                    ms = timed(cursor, sql.format(t=f"ev_{name}"), {"org": org, "end": end_value}, args.repeat)
                    print(f"  {label:9} {query:30} {ms:8.1f} ms", flush=True)
            started = time.perf_counter()
            if name == "monthly":
                cursor.execute("ALTER TABLE ev_monthly DETACH PARTITION ev_monthly_00")
                cursor.execute("DROP TABLE ev_monthly_00")
            else:
                cursor.execute(f"DELETE FROM ev_{name} WHERE occurred_at < timestamptz '{START}' + interval '1 month'")
            print(f"  retention: the oldest month gone in {time.perf_counter() - started:.1f}s", flush=True)
            cursor.execute(f"DROP TABLE ev_{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Is the forensic file-activity search fast at 10 million events? One organization's events in
PostgreSQL, then each search shape of the console page timed (median of `--repeat` after a
warm-up) and its plan printed with EXPLAIN (ANALYZE, BUFFERS).

A database of its own (`--database`, default `haven_bench_event_search`, dropped and made again
unless `--reuse`); the events are written by INSERT … SELECT generate_series in the server (the
secondary indexes dropped during the load and rebuilt after, as a bulk load would). Run from the
repository root (PostgreSQL on 127.0.0.1 as in the tests):

    .venv/bin/python bench/event_search.py --events 10000000
    .venv/bin/python bench/event_search.py --events 1000000      # a quick run

Exit status 0 when every search is under `--budget-ms` (500), 1 when one is not.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEVICES, USERS, DAYS = 2000, 1500, 90


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def database_recreate(server_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


GENERATE = """
INSERT INTO activity_fileevent (event_id, organization_id, device_id, user_id, batch_id, occurred_at, received_at,
    event_type, path, dest_path, file_name, size, sha256, category, mime_type, vector, entropy, os_user, process)
SELECT gen_random_uuid(), %(org)s, d.device_id, d.user_id, %(batch)s,
       %(start)s::timestamptz + (i * (%(days)s * interval '1 day') / %(total)s),
       %(start)s::timestamptz + (i * (%(days)s * interval '1 day') / %(total)s) + interval '5 seconds',
       (ARRAY['deleted','created','created','renamed','modified','modified','modified','modified','modified',
              'modified'])[1 + i %% 10],
       CASE WHEN i %% 50 = 1 THEN '/home/u' || d.n || '/Dropbox/p' ELSE '/home/u' || d.n || '/projects/p' END
         || (i / 1000 %% 500) || '/file-' || i || (ARRAY['.docx','.xlsx','.pdf','.py','.jpg','.zip','.txt'])[1 + i %% 7],
       '', 'file-' || i || (ARRAY['.docx','.xlsx','.pdf','.py','.jpg','.zip','.txt'])[1 + i %% 7],
       (i * 7919) %% 10000000, md5(i::text) || md5((i + 1)::text),
       (ARRAY['document','spreadsheet','pdf','source_code','image','archive','other'])[1 + i %% 7], '',
       CASE WHEN i %% 50 = 0 THEN 'removable_media' WHEN i %% 50 = 1 THEN 'cloud_sync'
            WHEN i %% 500 = 2 THEN 'archive_created' ELSE '' END, NULL, '', ''
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i JOIN bench_device d ON d.n = i %% %(devices)s
"""


def events_generate(total: int) -> None:
    import uuid
    from datetime import UTC, datetime, timedelta

    from django.db import connection

    from accounts.models import Device, Organization, User
    from activity.models import EventBatch

    org = Organization.objects.create(name="Bench", slug="bench")
    User.objects.create_user(email="admin@bench.example", password=None, organization=org, role="org_admin")
    users = User.objects.bulk_create([User(organization=org, email=f"user-{n:04d}@bench.example", role="user",
                                           password="!") for n in range(USERS)])
    devices = Device.objects.bulk_create([Device(organization=org, owner=users[n % USERS], name=f"host-{n:05d}")
                                          for n in range(DEVICES)])
    batch = EventBatch.objects.create(batch_id=uuid.uuid4(), organization=org, event_count=total, source="bench")
    start = datetime.now(UTC) - timedelta(days=DAYS)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_device (n int PRIMARY KEY, device_id bigint, user_id bigint)")
        cursor.executemany("INSERT INTO bench_device VALUES (%s, %s, %s)",
                           [(n, device.pk, device.owner_id) for n, device in enumerate(devices)])
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'activity_fileevent' "
                       "AND indexname NOT LIKE '%%pkey' AND indexdef NOT LIKE 'CREATE UNIQUE%%'")
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                       "WHERE conrelid = 'activity_fileevent'::regclass AND contype = 'u'")
        uniques = cursor.fetchall()
        for name, _ in uniques:
            cursor.execute(f'ALTER TABLE activity_fileevent DROP CONSTRAINT "{name}"')
        chunk = 1_000_000
        for first in range(0, total, chunk):
            last = min(first + chunk, total) - 1
            began = time.monotonic()
            cursor.execute(GENERATE, {"org": org.pk, "batch": batch.pk, "start": start, "days": DAYS,
                                      "total": total, "first": first, "last": last, "devices": DEVICES})
            log(f"events {first:,}–{last:,} written in {time.monotonic() - began:.0f} s")
        for name, definition in uniques:
            cursor.execute(f'ALTER TABLE activity_fileevent ADD CONSTRAINT "{name}" {definition}')
        for name, definition in indexes:
            began = time.monotonic()
            cursor.execute(definition)
            log(f"index {name} built in {time.monotonic() - began:.0f} s")
        cursor.execute("VACUUM ANALYZE activity_fileevent")


def searches(total: int) -> list[tuple[str, dict]]:
    from datetime import timedelta

    from django.utils import timezone

    from activity.models import FileEvent
    from activity.search import cursor_encode

    middle = FileEvent.objects.order_by("id").only("id", "occurred_at")[total // 2]
    day_ago = timezone.now() - timedelta(days=1)
    rare = total // 3
    return [
        ("no filter, first page", {}),
        ("no filter, a page half-way down (cursor)", {"cursor": cursor_encode(middle)}),
        ("user", {"user": "user-0042@bench.example"}),
        ("device", {"device": "host-01234"}),
        ("path contains (rare)", {"path": f"file-{rare}."}),
        ("path contains (common)", {"path": "/dropbox/p4"}),
        ("file name", {"file_name": f"file-{rare + 1}.xlsx"}),
        ("sha256", {"sha256": __import__("hashlib").md5(str(rare).encode()).hexdigest()
                    + __import__("hashlib").md5(str(rare + 1).encode()).hexdigest()}),
        ("vector removable_media", {"vector": "removable_media"}),
        ("vector archive_created + user", {"vector": "archive_created", "user": "user-0007@"}),
        ("category pdf", {"category": "pdf"}),
        ("last 24 hours, deleted", {"since": day_ago, "event_type": "deleted"}),
        ("user + path contains", {"user": "user-0100@", "path": "dropbox"}),
        ("a week, 60 days ago", {"since": timezone.now() - timedelta(days=60),
                                 "until": timezone.now() - timedelta(days=53)}),
    ]


def measure(total: int, repeat: int, plans: Path) -> dict[str, float]:
    from django.db import connection

    from accounts.models import User
    from activity.search import events_after, file_events_filtered, file_events_page

    admin = User.objects.get(email="admin@bench.example")
    medians, text = {}, []
    for label, filters in searches(total):
        cursor = filters.pop("cursor", "")
        times = []
        for _ in range(repeat + 1):
            began = time.perf_counter()
            rows, _ = file_events_page(file_events_filtered(admin, filters), cursor=cursor)
            times.append((time.perf_counter() - began) * 1000)
        medians[label] = statistics.median(times[1:])
        queryset = events_after(file_events_filtered(admin, filters), cursor)
        sql, params = queryset.select_related("user", "device")[:51].query.sql_with_params()
        with connection.cursor() as db:
            db.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            plan = "\n".join(row[0] for row in db.fetchall())
        text.append(f"== {label}: {medians[label]:.1f} ms, {len(rows)} rows\n{sql % tuple(repr(p) for p in params)}"
                    f"\n{plan}\n")
    plans.write_text("\n".join(text))
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="haven_bench_event_search")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--budget-ms", type=float, default=500.0)
    parser.add_argument("--plans", default=str(REPO / "var" / "bench-event-search-plans.txt"))
    parser.add_argument("--reuse", action="store_true", help="measure the database a previous run filled")
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = f"{args.server}/{args.database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("HAVEN_DATA_DIR", str(REPO / "var" / "bench-events"))
    if not args.reuse:
        database_recreate(args.server, args.database)
    import django

    django.setup()
    from django.core.management import call_command

    if not args.reuse:
        call_command("migrate", verbosity=0)
        began = time.monotonic()
        events_generate(args.events)
        log(f"{args.events:,} events loaded and indexed in {time.monotonic() - began:.0f} s")
    Path(args.plans).parent.mkdir(parents=True, exist_ok=True)
    medians = measure(args.events, args.repeat, Path(args.plans))
    width = max(len(label) for label in medians)
    for label, median in medians.items():
        flag = "" if median < args.budget_ms else "  OVER BUDGET"
        print(f"{label:<{width}}  {median:8.1f} ms{flag}")
    print(f"plans: {args.plans}")
    slowest = max(medians.values())
    print(f"search at {args.events:,} events: slowest median {slowest:.1f} ms (budget {args.budget_ms:.0f} ms)")
    return 0 if slowest < args.budget_ms else 1


if __name__ == "__main__":
    sys.exit(main())

"""Do the console's fleet pages stay fast at fleet scale? 10,000 devices and 1,000,000 file
versions in PostgreSQL, then the server time of the dashboard and the device list.

A database of its own (`--database`, default `haven_bench_console`, dropped and made again
unless `--reuse`), filled with COPY; then each page is rendered in-process through Django's test
client `--repeat` times after one warm-up, and the median must stay under `--budget-ms`.
Run from the repository root (PostgreSQL on 127.0.0.1 as in the tests):

    .venv/bin/python bench/console.py
    .venv/bin/python bench/console.py --devices 2000 --versions 200000   # a quick run

Exit status 0 when every page is under budget, 1 when one is not.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RUN_STATUSES = ["completed"] * 8 + ["failed", "interrupted"]
PAGES = [
    ("dashboard", "/", {}),
    ("devices", "/devices/", {}),
    ("devices sorted by size", "/devices/", {"sort": "size", "dir": "desc"}),
    ("devices sorted by last backup", "/devices/", {"sort": "last_backup"}),
    ("devices, stale filter", "/devices/", {"health": "stale"}),
    ("devices, search", "/devices/", {"q": "user-0042"}),
    ("devices, page 100", "/devices/", {"page": 100}),
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def database_recreate(server_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def _copy(cursor, table: str, columns: list[str], rows) -> int:
    count = 0
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def fleet_generate(*, devices: int, versions: int, users: int, seed: int) -> str:
    """Write the fleet; returns the administrator's email."""
    from django.db import connection

    from accounts.models import Organization, User

    rng = random.Random(seed)
    now = datetime.now(UTC)
    org = Organization.objects.create(name="Bench", slug="bench")
    admin = User.objects.create_user(email="admin@bench.example", password=None, organization=org, role="org_admin")
    User.objects.bulk_create([User(organization=org, email=f"user-{index:04d}@bench.example", role="user",
                                   password="!") for index in range(users)], batch_size=2000)
    user_ids = list(User.objects.filter(organization=org, role="user").order_by("pk").values_list("pk", flat=True))
    raw = connection.connection
    per_device = max(versions // devices, 1)
    with raw.cursor() as cursor:
        oses = ["macOS 14.5", "Windows 11 23H2", "Ubuntu 24.04", "Debian 12", "Fedora 40"]
        device_rows = []
        for index in range(devices):
            seen = None if index % 50 == 0 else now - timedelta(minutes=rng.randint(1, 60 * 24 * 10))
            device_rows.append((str(uuid.uuid4()), org.pk, user_ids[index % len(user_ids)], f"host-{index:05d}",
                                oses[index % len(oses)], "0.9.0", now - timedelta(days=60), seen,
                                index % 97 != 0, None if index % 97 else now))
        _copy(cursor, "accounts_device", ["uuid", "organization_id", "owner_id", "name", "os", "agent_version",
                                          "enrolled_at", "last_seen_at", "authorized", "deauthorized_at"], device_rows)
        cursor.execute("SELECT id, owner_id FROM accounts_device WHERE organization_id = %s ORDER BY id", [org.pk])
        device_owner = cursor.fetchall()
        _copy(cursor, "archives_archive", ["uuid", "organization_id", "user_id", "device_id", "created_at"],
              ((str(uuid.uuid4()), org.pk, owner, device, now - timedelta(days=60)) for device, owner in device_owner))
        cursor.execute("SELECT a.id FROM archives_archive a WHERE a.organization_id = %s ORDER BY a.device_id",
                       [org.pk])
        archive_ids = [row[0] for row in cursor.fetchall()]
        log(f"{len(device_rows)} devices and archives written")

        # Per archive: runs over the last 30 days (a tenth of the devices never completed one),
        # a block pack per completed run and one manifest pack.
        pack_rows, run_rows = [], []
        for position, archive in enumerate(archive_ids):
            never = position % 10 == 9
            for run in range(5):
                started = now - timedelta(days=rng.uniform(0, 30 if position % 3 else 5))
                status = "failed" if never else rng.choice(RUN_STATUSES)
                if position % 500 == 0 and run == 4:
                    status = "running"
                finished = None if status == "running" else started + timedelta(minutes=rng.randint(1, 90))
                size = rng.randint(10_000, 50_000_000)
                run_rows.append((str(uuid.uuid4()), archive, status, started, finished, 1000, size, 10, size, 10,
                                 size, 10, '["/home/user/locked.db: Permission denied"]' if status == "failed" else "[]"))
                if status == "completed":
                    pack_rows.append((str(uuid.uuid4()), archive, "blocks", f"bench/{uuid.uuid4()}", size, 10,
                                      finished))
            pack_rows.append((str(uuid.uuid4()), archive, "manifests", f"bench/{uuid.uuid4()}", 100_000, per_device,
                              now - timedelta(days=30)))
        _copy(cursor, "archives_backuprun", ["uuid", "archive_id", "status", "started_at", "finished_at",
                                             "files_scanned", "bytes_scanned", "files_changed", "bytes_sent",
                                             "blocks_received", "bytes_received", "versions_committed", "errors"],
              run_rows)
        _copy(cursor, "archives_pack", ["uuid", "archive_id", "kind", "storage_key", "size", "frame_count",
                                        "created_at"], pack_rows)
        log(f"{len(run_rows)} runs and {len(pack_rows)} packs written")
        cursor.execute("SELECT archive_id, id FROM archives_pack WHERE kind = 'manifests'")
        manifest_pack = dict(cursor.fetchall())
        block = bytes(32)

        def version_rows():
            written = 0
            for archive in archive_ids:
                pack = manifest_pack[archive]
                for index in range(per_device):
                    if written >= versions:
                        return
                    written += 1
                    # a quarter of the paths have two versions; one in 20 newest is a deletion
                    path = index if index % 4 else index - 1
                    yield (str(uuid.uuid4()), archive, bytes.fromhex(f"{path:064x}"), now - timedelta(hours=index),
                           index % 20 == 0, block, 4096, pack, index * 100, 100)

        count = _copy(cursor, "archives_fileversion", ["uuid", "archive_id", "path_id", "committed_at", "deleted",
                                                       "block_ids", "stored_size", "manifest_pack_id",
                                                       "manifest_offset", "manifest_frame_size"], version_rows())
        log(f"{count} versions written")
        cursor.execute("ANALYZE")
    raw.commit()
    return admin.email


def measure(admin_email: str, repeat: int) -> dict[str, float]:
    from django.test import Client

    from accounts.models import User

    client = Client()
    client.force_login(User.objects.get(email=admin_email))
    medians = {}
    for label, url, params in PAGES:
        response = client.get(url, params)  # warm-up: connection, templates, the cached keystore status
        assert response.status_code == 200, (label, response.status_code)
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get(url, params)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        medians[label] = statistics.median(times)
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432",
                        help="PostgreSQL server URL without a database name")
    parser.add_argument("--database", default="haven_bench_console", help="dropped and created unless --reuse")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--versions", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--budget-ms", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reuse", action="store_true", help="measure the database a previous run filled")
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = f"{args.server}/{args.database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("HAVEN_DATA_DIR", str(REPO / "var" / "bench-console"))
    started = time.monotonic()
    if not args.reuse:
        database_recreate(args.server, args.database)
    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    setup_test_environment()  # the test client's host name; DEBUG stays off, so no query log
    if args.reuse:
        admin = "admin@bench.example"
    else:
        call_command("migrate", verbosity=0)
        call_command("createcachetable", verbosity=0)
        admin = fleet_generate(devices=args.devices, versions=args.versions, users=args.users, seed=args.seed)
    log(f"data ready in {time.monotonic() - started:.0f}s; measuring (median of {args.repeat})")
    medians = measure(admin, args.repeat)
    over = False
    for label, median in medians.items():
        verdict = "ok" if median < args.budget_ms else "OVER BUDGET"
        over |= median >= args.budget_ms
        print(f"{label:32s} {median:7.1f} ms  {verdict}")
    print(f"budget {args.budget_ms:.0f} ms; {args.devices} devices, {args.versions} versions; "
          f"total {time.monotonic() - started:.0f}s")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())

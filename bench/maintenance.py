"""How fast is archive maintenance? Prune time and compaction throughput on one archive.

Builds an archive of `--versions` file versions holding `--size` bytes of encrypted blocks
(through the real ingest and commit services: packs durable, rows committed), ten versions a
path, eight of them 200 days old in one week (so 70 % expire); then times, with the default retention
policy: expiring the versions it does not keep, sweeping the blocks they leave unreferenced
(after the grace period), compacting the packs left mostly dead, and retiring the old packs.
A database of its own (`--database`, dropped and made again) and a temporary pack directory.
Run from the repository root (PostgreSQL on 127.0.0.1 as in the tests):

    .venv/bin/python bench/maintenance.py                          # 1 GiB, 100,000 versions
    .venv/bin/python bench/maintenance.py --size 64M --versions 10000   # a quick run
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _size(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]?)i?B?", text.strip(), re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 64M or 1G")
    return int(float(match[1]) * 1024 ** " KMG".index((match[2] or " ").upper()))


def _setup(database_url: str, pack_dir: Path) -> None:
    import psycopg

    server, name = database_url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    os.environ.update(DATABASE_URL=database_url, HAVEN_PACK_DIR=str(pack_dir), HAVEN_TEST_DATABASE_NAME="",
                      DJANGO_SETTINGS_MODULE="config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _build(total: int, versions: int, batch_bytes: int):
    from django.db.models import F

    from accounts.models import Device, Organization, User
    from archives.models import Block
    from archives.services import VersionIn, archive_for_device_ensure, blocks_ingest, versions_commit
    from formats.blocks import block_encrypt, block_id_for
    from formats.frames import FRAME_BLOCK, frame_encode
    from formats.keys import derive_keys
    from formats.manifests import Manifest, manifest_encrypt, path_id_for
    from keystore.models import UserKey

    keys = derive_keys(os.urandom(32))
    org = Organization.objects.create(name="bench", slug="bench")
    user = User.objects.create_user(email="bench@example.com", password="x", organization=org)
    UserKey.objects.create(organization=org, user=user, key_id=keys.key_id, state=UserKey.State.ESCROWED)
    device = Device.objects.create(owner=user, organization=org, name="bench-laptop")
    archive = archive_for_device_ensure(device=device)
    chunk = max(64, total // versions)
    pending, batch, size = [], [], 0
    for index in range(versions):
        data = os.urandom(chunk)
        block_id = block_id_for(keys, data)
        batch.append(frame_encode(FRAME_BLOCK, archive.uuid, block_id, block_encrypt(keys, block_id, data)))
        size += len(batch[-1])
        path = f"/home/bench/file-{index // 10}"
        version_id = uuid.uuid4()
        path_id = path_id_for(keys, path)
        manifest = manifest_encrypt(keys, Manifest(path=path, size=chunk, mtime_ns=index, mode=0o644,
                                                   block_ids=[block_id], block_sizes=[chunk]),
                                    archive_id=archive.uuid, path_id=path_id, version_id=version_id)
        pending.append(VersionIn(version_id, path_id, False, [block_id], manifest))
        if size >= batch_bytes or index == versions - 1:
            blocks_ingest(archive=archive, body=b"".join(batch))
            for start in range(0, len(pending), 1000):
                versions_commit(archive=archive, versions=pending[start:start + 1000])
            batch, pending, size = [], [], 0
            log(f"  {index + 1:,} versions stored")
    # Ten versions a path: the first eight 200 days old, in one ISO week (the policy keeps one of
    # them), the last two fresh (kept) — 70 % of the versions, and of the bytes, expire.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("WITH m AS (SELECT min(id) AS low FROM archives_fileversion WHERE archive_id = %s) "
                       "UPDATE archives_fileversion SET committed_at = committed_at "
                       "- CASE WHEN (id - m.low) %% 10 < 8 THEN interval '200 days' ELSE interval '0' END "
                       "- ((id - m.low) %% 10) * interval '1 minute' FROM m WHERE archive_id = %s",
                       [archive.pk, archive.pk])
    Block.objects.filter(archive=archive).update(last_referenced_at=F("last_referenced_at") - timedelta(days=800))
    return archive


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=_size, default=_size("1G"), help="bytes of blocks (default 1G)")
    parser.add_argument("--versions", type=int, default=100_000, help="file versions (default 100,000)")
    parser.add_argument("--batch", type=_size, default=_size("32M"), help="upload batch, one pack each (32M)")
    parser.add_argument("--database", default="haven_bench_maintenance")
    parser.add_argument("--server", default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/x")
                        .rsplit("/", 1)[0])
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="haven-bench-maint-") as tmp:
        _setup(f"{args.server}/{args.database}", Path(tmp) / "packs")
        from django.utils import timezone

        from archives.compaction import archive_compact, packs_stored_bytes
        from archives.models import FileVersion, Pack
        from archives.prune import archive_prune
        from archives.retention import DEFAULT_RETENTION

        log(f"building an archive: {args.size / 2**20:.0f} MiB in {args.versions:,} versions")
        started = time.perf_counter()
        archive = _build(args.size, args.versions, args.batch)
        figures = {"size_bytes": args.size, "versions": args.versions, "build_s": time.perf_counter() - started,
                   "stored_bytes_before": packs_stored_bytes(archive)}
        grace = timedelta(days=1)
        now = timezone.now()

        started = time.perf_counter()
        expired = archive_prune(archive=archive, policy=DEFAULT_RETENTION, grace=grace, now=now)
        figures["expire_s"] = time.perf_counter() - started
        figures["versions_expired"] = expired.versions_expired
        later = now + grace + timedelta(seconds=1)
        started = time.perf_counter()
        swept = archive_prune(archive=archive, policy=DEFAULT_RETENTION, grace=grace, now=later)
        figures["sweep_s"] = time.perf_counter() - started
        figures["blocks_deleted"] = swept.blocks_deleted
        started = time.perf_counter()
        compacted = archive_compact(archive=archive, threshold=0.6, grace=grace, now=later)
        figures["compact_s"] = time.perf_counter() - started
        figures["compacted_packs"] = compacted.packs_compacted
        figures["compacted_bytes_written"] = compacted.bytes_written
        figures["compaction_mb_s"] = compacted.bytes_written / 1e6 / max(figures["compact_s"], 1e-9)
        source = sum(Pack.objects.filter(storage_key__in=[key for key, _ in compacted.candidates])
                     .values_list("size", flat=True))
        figures["compacted_packs_bytes"] = source  # read and checked (live frames) or retired outright
        figures["compaction_input_mb_s"] = source / 1e6 / max(figures["compact_s"], 1e-9)
        started = time.perf_counter()
        retired = archive_compact(archive=archive, threshold=0.6, grace=grace, now=later + grace + timedelta(seconds=1))
        figures["retire_s"] = time.perf_counter() - started
        figures["retired_bytes"] = retired.bytes_retired
        figures["stored_bytes_after"] = packs_stored_bytes(archive)
        figures["versions_kept"] = FileVersion.objects.filter(archive=archive).count()
        figures["prune_s"] = figures["expire_s"] + figures["sweep_s"]

    for name, value in figures.items():
        print(f"{name:>26}: {value:,.2f}" if isinstance(value, float) else f"{name:>26}: {value:,}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

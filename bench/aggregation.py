"""How many packs does an archive of incremental backups keep, and what does aggregation cost?

Makes `--runs` incremental backups of one archive through the real ingest and commit services
(each run: one data pack of a random size up to `--run-size`, and `--files` versions committed
1,000 per call, as the agent does: one manifest pack per call), then runs `manage.py maintenance`
on it and prints the packs (count, mean size, per kind) before and after, with the wall and CPU
seconds the run took — this process's CPU and the PostgreSQL backend's, read from /proc. Packs
are settled at once (HAVEN_PACK_SETTLE_SECONDS=0); the other aggregation settings are the
defaults unless set in the environment. A database of its own (`--database`, dropped and made
again) and a temporary pack directory. Run from the repository root:

    .venv/bin/python bench/aggregation.py                      # 60 runs of up to 3 MiB, 1,500 files each
    .venv/bin/python bench/aggregation.py --runs 20 --files 200    # a quick run
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from io import StringIO
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.maintenance import _setup, _size, log  # noqa: E402  (one database set-up for both)


def _incrementals(runs: int, run_size: int, files: int):
    from accounts.models import Device, Organization, User
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
    rng = random.Random(4711)
    for run in range(runs):
        changed = rng.randint(64 * 1024, run_size)  # this run's changed bytes
        chunks = [os.urandom(min(1024 * 1024, changed - offset)) for offset in range(0, changed, 1024 * 1024)]
        ids = [block_id_for(keys, data) for data in chunks]
        blocks_ingest(archive=archive, body=b"".join(
            frame_encode(FRAME_BLOCK, archive.uuid, block_id, block_encrypt(keys, block_id, data))
            for block_id, data in zip(ids, chunks, strict=True)))
        pending = []
        for index in range(files):
            path, version_id = f"/home/bench/file-{index}", uuid.uuid4()
            path_id = path_id_for(keys, path)
            named = [ids[index % len(ids)]]
            manifest = manifest_encrypt(keys, Manifest(path=path, size=1, mtime_ns=run, mode=0o644, block_ids=named,
                                                       block_sizes=[1]), archive_id=archive.uuid, path_id=path_id,
                                        version_id=version_id)
            pending.append(VersionIn(version_id, path_id, False, named, manifest))
        for start in range(0, len(pending), 1000):
            versions_commit(archive=archive, versions=pending[start:start + 1000])
        if (run + 1) % 10 == 0:
            log(f"  {run + 1} incremental runs stored")
    return archive


def _packs(archive) -> dict:
    from django.db.models import Avg, Count, Sum

    from archives.models import Pack

    figures = {}
    for kind in (Pack.Kind.BLOCKS, Pack.Kind.MANIFESTS):
        row = Pack.objects.filter(archive=archive, kind=kind, state=Pack.State.LIVE).aggregate(
            n=Count("pk"), mean=Avg("size"), total=Sum("size"))
        figures[kind] = {"packs": row["n"], "mean_bytes": round(row["mean"] or 0), "bytes": row["total"] or 0}
    return figures


def _backend_cpu_seconds(pid: int) -> float:
    """utime + stime of one PostgreSQL backend (same host), or NaN if /proc does not show it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=60, help="incremental backups (default 60)")
    parser.add_argument("--run-size", type=_size, default=_size("3M"), help="largest run's changed bytes (3M)")
    parser.add_argument("--files", type=int, default=1500, help="versions committed per run (default 1,500)")
    parser.add_argument("--database", default="haven_bench_aggregation")
    parser.add_argument("--server", default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/x")
                        .rsplit("/", 1)[0])
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()

    os.environ["HAVEN_PACK_SETTLE_SECONDS"] = "0"
    with tempfile.TemporaryDirectory(prefix="haven-bench-aggr-") as tmp:
        _setup(f"{args.server}/{args.database}", Path(tmp) / "packs")
        from django.core.management import call_command
        from django.db import connection
        from django.db.models import Sum

        from archives.maintenance_models import MaintenanceRun
        from archives.models import Pack

        log(f"making {args.runs} incremental backups (up to {args.run_size / 2**20:.1f} MiB, {args.files:,} files each)")
        archive = _incrementals(args.runs, args.run_size, args.files)
        figures = {"runs": args.runs, "files_per_run": args.files, "before": _packs(archive)}
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
        db_cpu, cpu, started = _backend_cpu_seconds(backend), time.process_time(), time.perf_counter()
        out = StringIO()
        call_command("maintenance", "--archive", str(archive.uuid), stdout=out)
        figures["maintenance_s"] = time.perf_counter() - started
        figures["maintenance_cpu_s"] = time.process_time() - cpu
        figures["database_cpu_s"] = _backend_cpu_seconds(backend) - db_cpu
        figures["after"] = _packs(archive)
        run = MaintenanceRun.objects.filter(archive=archive).latest("started_at")
        figures["packs_aggregated"], figures["packs_aggregated_into"] = run.packs_aggregated, run.packs_aggregated_into
        merged = Pack.objects.filter(archive=archive, state=Pack.State.RETIRING).aggregate(n=Sum("size"))["n"]
        figures["merged_mib"] = (merged or 0) / 2**20
        figures["merged_mib_s"] = figures["merged_mib"] / max(figures["maintenance_s"], 1e-9)
        print(out.getvalue(), end="")

    for name, value in figures.items():
        print(f"{name:>22}: {value:,.2f}" if isinstance(value, float) else f"{name:>22}: {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

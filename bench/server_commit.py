"""How much server CPU does a first backup of many small files cost? Missing-blocks questions,
block uploads and version commits, per 10,000 files, with SQLite and with PostgreSQL.

Replays the requests the agent sends (agent/backup.py, agent/client.py) for N small files of one
block each: `blocks/missing` per staging of 16 MiB or 4,000 ids, upload batches of 24 MiB, version
commits of 1,000, then the run's finish. The requests are built before they are sent (the agent's
crypto is not counted) and go through Django's WSGI handler in this process (middleware,
authentication, DRF, the services), so the CPU counted is the server's: this process's
user+sys while a request runs, plus for PostgreSQL the CPU of its backend process (from
/proc). Each database and each size runs in a fresh child process with a database of its own.

    .venv/bin/python bench/server_commit.py                            # 10k, 50k, 100k; both databases
    .venv/bin/python bench/server_commit.py --files 10000 --db sqlite --profile   # where the time goes
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

STAGING_BYTES, STAGING_IDS = 16 * 1024 * 1024, 4000  # agent/backup.py BackupEngine
BATCH_BYTES, COMMIT_VERSIONS = 24 * 1024 * 1024, 1000
STEPS = ("missing", "upload", "commit", "run")
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def _pg_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime, stime


def _setup_database(kind: str, tmp: Path, server: str) -> None:
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'haven.sqlite3'}"
    else:
        import psycopg

        name = f"haven_bench_server_commit_{os.getpid()}"
        with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{name}"')
        url = f"{server}/{name}"
    os.environ.update(DATABASE_URL=url, HAVEN_PACK_DIR=str(tmp / "packs"), HAVEN_DATA_DIR=str(tmp),
                      HAVEN_TEST_DATABASE_NAME="", HAVEN_DB_CONN_MAX_AGE="600",
                      DJANGO_SETTINGS_MODULE="config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _drop_database(kind: str, server: str) -> None:
    if kind != "postgres":
        return
    from django.db import connection

    name = connection.settings_dict["NAME"]
    connection.close()
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Meter:
    """CPU, wall time and queries of the server per step, and optionally a profile per step."""

    def __init__(self, profile: bool):
        from django.db import connection

        self.connection = connection
        self.cpu = defaultdict(float)
        self.db_cpu = defaultdict(float)
        self.wall = defaultdict(float)
        self.requests = defaultdict(int)
        self.queries = defaultdict(int)
        self.step = None
        self.profilers = {}
        if profile:
            from pyinstrument import Profiler

            self.profilers = {step: Profiler(interval=0.0005) for step in STEPS}
        connection.execute_wrappers.append(self._count)

    def _count(self, execute, sql, params, many, context):
        self.queries[self.step] += 1
        return execute(sql, params, many, context)

    def _backend(self) -> int | None:
        if self.connection.vendor != "postgresql":
            return None
        self.connection.ensure_connection()
        return self.connection.connection.info.backend_pid

    def call(self, step: str, send):
        self.step = step
        pid = self._backend()
        db0, cpu0, wall0 = _pg_cpu(pid), time.process_time(), time.perf_counter()
        if step in self.profilers:
            self.profilers[step].start()
        try:
            response = send()
        finally:
            if step in self.profilers:
                self.profilers[step].stop()
            self.cpu[step] += time.process_time() - cpu0
            self.wall[step] += time.perf_counter() - wall0
            self.db_cpu[step] += _pg_cpu(self._backend()) - db0 if pid == self._backend() else 0.0
            self.requests[step] += 1
            self.step = None
        if response.status_code >= 300:
            raise SystemExit(f"{step}: HTTP {response.status_code} {response.content[:500]!r}")
        return response


def _file_sizes(count: int, seed: int, low: int, high: int) -> list[int]:
    """Log-uniform sizes between low and high bytes (a system tree's docs, icons, locales)."""
    rng = random.Random(seed)
    ratio = high / low
    return [int(low * ratio ** rng.random()) for _ in range(count)]


def backup_replay(files: int, *, seed: int, low: int, high: int, meter: Meter, json_commits: bool = False) -> dict:
    from django.test import Client

    from accounts.models import Device, Organization, User
    from accounts.services import device_token_issue
    from agent.commits import version_uuid
    from archives.services import archive_for_device_ensure
    from formats.blocks import block_encrypt, block_id_for
    from formats.commit_body import MEDIA_TYPE as COMMIT_MEDIA_TYPE
    from formats.commit_body import CommitVersion, commit_body_encode
    from formats.frames import FRAME_BLOCK, frame_encode
    from formats.keys import derive_keys
    from formats.manifests import Manifest, manifest_encrypt, path_id_for
    from keystore.models import UserKey

    keys = derive_keys(random.Random(seed).randbytes(32))
    org = Organization.objects.create(name="bench", slug="bench")
    user = User.objects.create_user(email="bench@example.com", password="x", organization=org)
    UserKey.objects.create(organization=org, user=user, key_id=keys.key_id, state=UserKey.State.ESCROWED)
    device = Device.objects.create(owner=user, organization=org, name="bench-laptop")
    archive = archive_for_device_ensure(device=device)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {device_token_issue(device=device)}", HTTP_HOST="127.0.0.1")
    base = f"/api/v1/archives/{archive.uuid}"

    def post_json(step, path, body):
        data = json.dumps(body)
        return meter.call(step, lambda: client.post(path, data=data, content_type="application/json"))

    client.get("/api/v1/device")  # imports every URL module once: not a cost of the steps
    run_id = post_json("run", f"{base}/runs", {}).json()["run_id"]
    rng = random.Random(seed + 1)
    staging, staged_bytes = [], 0       # (block id, plaintext)
    batch, batch_bytes = [], 0          # encrypted frames
    waiting: list[tuple[str, int, bytes, int]] = []  # files whose block is in the open batch
    ready: list = []
    stored_bytes = 0

    def version_of(index: int, block_id: bytes, size: int) -> CommitVersion:
        path = f"/usr/share/bench/d{index // 40 % 500}/d{index // 20000}/file-{index}.txt"
        # As the agent makes them: time-ordered (docs/protocol.md), neighbours in the unique index.
        version_id, path_id = version_uuid(os.urandom(16), time.time_ns() // 1_000_000), path_id_for(keys, path)
        manifest = Manifest(path=path, size=size, mtime_ns=index, mode=0o644, block_ids=[block_id], block_sizes=[size])
        blob = manifest_encrypt(keys, manifest, archive_id=archive.uuid, path_id=path_id, version_id=version_id)
        return CommitVersion(version_id, path_id, False, [block_id], blob)

    def commit(final=False):
        while len(ready) >= COMMIT_VERSIONS or (final and ready):
            group, ready[:] = ready[:COMMIT_VERSIONS], ready[COMMIT_VERSIONS:]
            if json_commits:  # the body of agents before docs/formats.md §11
                post_json("commit", base + "/versions", {"run_id": run_id, "versions": [{
                    "version_id": str(v.version_id), "path_id": v.path_id, "deleted": False,
                    "block_ids": [b.hex() for b in v.block_ids],
                    "manifest": base64.b64encode(v.manifest).decode()} for v in group]})
            else:  # the agent's binary body
                body = commit_body_encode(uuid.UUID(run_id), group)
                meter.call("commit", lambda body=body: client.post(base + "/versions", data=body,
                                                                   content_type=COMMIT_MEDIA_TYPE))

    def send_batch():
        nonlocal batch, batch_bytes, stored_bytes
        if batch:
            body = b"".join(batch)
            stored_bytes += len(body)
            meter.call("upload", lambda: client.post(f"{base}/blocks?run={run_id}", data=body,
                                                     content_type="application/octet-stream"))
            batch, batch_bytes = [], 0
            ready.extend(version_of(*item) for item in ((i, b, s) for i, b, _, s in waiting))
            waiting.clear()
            commit()

    def resolve_staging():
        nonlocal staging, staged_bytes, batch_bytes
        answer = post_json("missing", base + "/blocks/missing", {"block_ids": [b.hex() for b, *_ in staging]})
        missing = {bytes.fromhex(b) for b in answer.json()["missing"]}
        for block_id, data, index in staging:
            if block_id in missing:
                frame = frame_encode(FRAME_BLOCK, archive.uuid, block_id, block_encrypt(keys, block_id, data))
                batch.append(frame)
                batch_bytes += len(frame)
                waiting.append((index, block_id, b"", len(data)))
                if batch_bytes >= BATCH_BYTES:
                    send_batch()
            else:
                ready.append(version_of(index, block_id, len(data)))
        staging, staged_bytes = [], 0
        commit()

    for index, size in enumerate(_file_sizes(files, seed, low, high)):
        data = rng.randbytes(size // 2) + bytes(size - size // 2)  # half random: compresses about 2x
        staging.append((block_id_for(keys, data), data, index))
        staged_bytes += size
        if staged_bytes >= STAGING_BYTES or len(staging) >= STAGING_IDS:
            resolve_staging()
    if staging:
        resolve_staging()
    send_batch()
    commit(final=True)
    post_json("run", f"{base}/runs/{run_id}/finish",
              {"status": "completed", "files_scanned": files, "files_changed": files})
    from archives.models import Block, FileVersion

    assert FileVersion.objects.filter(archive=archive).count() == files, "not every version was committed"
    return {"blocks": Block.objects.filter(archive=archive).count(), "pack_bytes": stored_bytes}


def _top(profiler, limit: int) -> dict:
    """Top functions by self time, and the project's own functions by inclusive time."""
    session = profiler.last_session
    own, total = defaultdict(float), defaultdict(float)

    def walk(frame, on_stack):
        name = f"{frame.function} ({frame.file_path_short}:{frame.line_no})"
        children = [child for child in frame.children if not child.is_synthetic]
        own[name] += frame.time - sum(child.time for child in children)
        project = (frame.file_path or "").startswith(str(REPO)) and not any(
            part in frame.file_path for part in ("/.venv/", "/bench/", "middleware", "monitoring.py", "mfa.py"))
        if project and name not in on_stack:
            total[name] += frame.time
            on_stack = on_stack | {name}
        for child in children:
            walk(child, on_stack)

    root = session.root_frame()
    if root is not None:
        walk(root, frozenset())
    best = lambda table: [(round(seconds, 3), name) for name, seconds in  # noqa: E731
                          sorted(table.items(), key=lambda item: -item[1])[:limit]]
    return {"self": best(own), "haven_inclusive": best(total), "sampled_s": round(session.duration, 3)}


def child(args) -> None:
    with tempfile.TemporaryDirectory(prefix="haven-bench-commit-") as tmp:
        _setup_database(args.db, Path(tmp), args.server)
        meter = Meter(profile=args.profile)
        try:
            wall = time.perf_counter()
            stored = backup_replay(args.child_files, seed=args.seed, low=args.min_size, high=args.max_size, meter=meter,
                                   json_commits=args.json_commits)
            wall = time.perf_counter() - wall
            from django.db import connection

            db_bytes = None
            if connection.vendor == "sqlite":
                db_bytes = sum(p.stat().st_size for p in Path(tmp).glob("haven.sqlite3*"))
            else:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_database_size(current_database())")
                    db_bytes = cursor.fetchone()[0]
        finally:
            _drop_database(args.db, args.server)
    result = {"db": args.db, "files": args.child_files, "replay_wall_s": round(wall, 1), "db_bytes": db_bytes, **stored,
              "steps": {step: {"cpu_s": round(meter.cpu[step], 3), "db_cpu_s": round(meter.db_cpu[step], 3),
                               "wall_s": round(meter.wall[step], 3), "requests": meter.requests[step],
                               "queries": meter.queries[step]} for step in STEPS}}
    if args.profile:
        result["profile"] = {step: _top(profiler, args.top) for step, profiler in meter.profilers.items()}
    print("RESULT " + json.dumps(result), flush=True)


def _print(result: dict) -> None:
    per = 10_000 / result["files"]
    print(f"\n{result['db']}, {result['files']:,} files ({result['blocks']:,} blocks, "
          f"{result['pack_bytes'] / 2**20:.0f} MiB of packs, database {result['db_bytes'] / 2**20:.1f} MiB, "
          f"replay {result['replay_wall_s']} s wall):")
    print(f"  {'step':<8} {'requests':>8} {'cpu s/10k':>10} {'db cpu s/10k':>13} {'wall s/10k':>11} {'queries/10k':>12}")
    for step, figures in result["steps"].items():
        print(f"  {step:<8} {figures['requests']:>8} {figures['cpu_s'] * per:>10.2f} {figures['db_cpu_s'] * per:>13.2f} "
              f"{figures['wall_s'] * per:>11.2f} {figures['queries'] * per:>12.0f}")
    cpu = sum(f["cpu_s"] + f["db_cpu_s"] for f in result["steps"].values())
    print(f"  server CPU in all: {cpu * per:.2f} s per 10k files ({1000 * cpu / result['files']:.3f} ms per file)")
    for step, top in result.get("profile", {}).items():
        print(f"  profile of {step} ({top['sampled_s']} s sampled), self time:")
        for seconds, name in top["self"]:
            print(f"    {seconds:>8.3f}  {name}")
        print("    Haven's functions, inclusive:")
        for seconds, name in top["haven_inclusive"]:
            print(f"    {seconds:>8.3f}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", default="10000,50000,100000", help="comma-separated file counts")
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both (comma-separated)")
    parser.add_argument("--server", default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/x")
                        .rsplit("/", 1)[0], help="PostgreSQL server URL (a database of its own is made)")
    parser.add_argument("--min-size", type=int, default=1024)
    parser.add_argument("--max-size", type=int, default=64 * 1024)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="pyinstrument each step (slower; top entries)")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--json-commits", action="store_true",
                        help="commit with JSON bodies, as agents before the binary body did (docs/formats.md §11)")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON")
    parser.add_argument("--child-files", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_files:
        child(args)
        return 0
    results = []
    for db in args.db.split(","):
        for files in (int(n) for n in args.files.split(",")):
            command = [sys.executable, __file__, "--db", db, "--child-files", str(files), "--server", args.server,
                       "--min-size", str(args.min_size), "--max-size", str(args.max_size), "--seed", str(args.seed),
                       "--top", str(args.top)] + (["--profile"] if args.profile else []) \
                + (["--json-commits"] if args.json_commits else [])
            done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if done.returncode or line is None:
                print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
                return 1
            results.append(json.loads(line[len("RESULT "):]))
            _print(results[-1])
    print("\n(CPU is user+sys of the server's own process while a request ran, plus PostgreSQL's backend; "
          "the machine is shared, so wall times are noisy)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

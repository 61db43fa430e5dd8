"""How many file-activity events per second does a real Haven server take in? (issue 13)

A database of its own (`--database`, default `haven_bench_events`, dropped and made again), a
real gunicorn (`--workers`, default 3: a sync worker waits on its PostgreSQL backend for most of a
request, so two would leave a CPU idle) on it, and a sender on the same machine posting gzip
JSON batches of `--batch` events (the agent's size) from `--senders` (6) concurrent connections,
as a fleet of agents would. The batches are built before the clock starts (an agent builds them over
minutes); the clock runs from the first request to the last answer, and every event is counted
back from PostgreSQL before the figure is printed. Run from the repository root:

    .venv/bin/python bench/events.py                      # 400,000 events
    .venv/bin/python bench/events.py --events 100000      # a quick run

The last line is `events/s: N`. Exit status 0 when every event was stored once, 1 otherwise.
"""
from __future__ import annotations

import argparse
import logging
import os
import queue
import random
import resource
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

EXTENSIONS = [("docx", "document"), ("xlsx", "spreadsheet"), ("pdf", "pdf"), ("png", "image"), ("py", "source_code"),
              ("zip", "archive"), ("txt", "other")]
VECTORS = [None] * 12 + ["removable_media", "cloud_sync", "archive_created", "mass_rename", "mass_encryption"]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def database_recreate(server_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def batches_build(*, events: int, size: int, seed: int) -> list[bytes]:
    from activity.ingest import batch_encode

    rng = random.Random(seed)
    now = datetime.now(UTC)
    bodies, left = [], events
    while left > 0:
        rows = []
        for _ in range(min(size, left)):
            ext, category = rng.choice(EXTENSIONS)
            folder = rng.choice(["Documents", "Desktop", "Downloads", "src/haven", "Dropbox/shared"])
            path = f"/home/alice/{folder}/file-{rng.randrange(10 ** 6):06d}.{ext}"
            kind = rng.choice(["created", "modified", "modified", "renamed", "deleted"])
            rows.append({
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "occurred_at": (now - timedelta(seconds=rng.randrange(3600))).isoformat().replace("+00:00", "Z"),
                "type": kind, "path": path, "dest_path": path + ".bak" if kind == "renamed" else None,
                "size": None if kind == "deleted" else rng.randrange(10 ** 8),
                "sha256": None if kind == "deleted" else f"{rng.getrandbits(256):064x}", "category": category,
                "mime_type": "application/octet-stream", "vector": rng.choice(VECTORS),
                "entropy": round(rng.uniform(3, 8), 3), "os_user": "alice", "process": None})
        bodies.append(batch_encode({"batch_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "events": rows}))
        left -= len(rows)
    return bodies


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime + stime of each live process (Linux /proc), in seconds."""
    tick, seen = os.sysconf("SC_CLK_TCK"), {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seen[pid] = (int(fields[11]) + int(fields[12])) / tick
    return seen


def server_pids(master: int, database: str) -> tuple[list[int], list[int]]:
    """The gunicorn master and workers, and the PostgreSQL backends serving the bench database."""
    import psycopg

    children = []
    for task in Path(f"/proc/{master}/task").iterdir():
        children += [int(p) for p in (task / "children").read_text().split()]
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as connection:
        backends = [row[0] for row in connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [database])]
    return [master, *children], backends


def send_all(url: str, token: str, bodies: list[bytes], senders: int) -> tuple[float, int, list[str]]:
    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    work: queue.Queue[bytes] = queue.Queue()
    for body in bodies:
        work.put(body)
    accepted, failures, lock = [0], [], threading.Lock()

    def sender() -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                   "Content-Encoding": "gzip"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            while True:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                response = client.post("/api/v1/events", content=body)
                with lock:
                    if response.status_code == 201:
                        accepted[0] += response.json()["accepted"]
                    else:
                        failures.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, accepted[0], failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    parser.add_argument("--database", default="haven_bench_events")
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--batch", type=int, default=5000, help="events per batch (the protocol's maximum)")
    parser.add_argument("--senders", type=int, default=6, help="concurrent connections")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    database_recreate(args.server, args.database)
    env = {**os.environ, "DATABASE_URL": f"{args.server}/{args.database}", "HAVEN_SECRET_KEY": "bench-events",
           "HAVEN_DATA_DIR": str(REPO / "var" / "bench-events"), "DJANGO_SETTINGS_MODULE": "config.settings",
           # persistent connections, as a production server runs (and their backends can be measured)
           "HAVEN_DB_CONN_MAX_AGE": "300"}
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.services import device_create, device_token_issue, organization_get_or_create, user_ensure
    from activity.models import FileEvent

    org = organization_get_or_create(name="Bench")[0]
    user = user_ensure(organization=org, email="alice@bench.example", role="user", password=None).user
    token = device_token_issue(device=device_create(owner=user, name="bench-laptop", os_name="Linux",
                                                    agent_version="bench"))
    log(f"building {args.events:,} events in batches of {args.batch:,}")
    bodies = batches_build(events=args.events, size=args.batch, seed=args.seed)
    log(f"{len(bodies)} batches, {sum(map(len, bodies)) / len(bodies) / 1024:.0f} KiB gzip each")

    from tests.support import free_port, http_ready, wait_until

    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "config.wsgi", "--bind",
                               f"127.0.0.1:{port}", "--workers", str(args.workers), "--timeout", "120"],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ready(f"{url}/login/"), timeout=60, what="gunicorn")
        # Warm-up: every worker imports and connects before the clock starts.
        send_all(url, token, batches_build(events=args.workers * 20, size=5, seed=args.seed + 1), args.workers * 2)
        gunicorn_pids, backend_pids = server_pids(server.pid, args.database)
        before = cpu_seconds(gunicorn_pids + backend_pids)
        sender_before = resource.getrusage(resource.RUSAGE_SELF)
        load_before = os.getloadavg()[0]
        log(f"sending with {args.senders} connections to {args.workers} gunicorn workers "
            f"(load average {load_before:.2f} on {os.cpu_count()} CPUs)")
        seconds, accepted, failures = send_all(url, token, bodies, args.senders)
        sender_after = resource.getrusage(resource.RUSAGE_SELF)
        # A worker the warm-up missed connects during the run: its backend counts from zero.
        backend_pids = sorted(set(backend_pids) | set(server_pids(server.pid, args.database)[1]))
        after = cpu_seconds(gunicorn_pids + backend_pids)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    stored = FileEvent.objects.count() - args.workers * 20
    log(f"{accepted:,} accepted, {stored:,} stored, {len(failures)} failed requests in {seconds:.2f}s "
        f"(load average {os.getloadavg()[0]:.2f} after)")
    for failure in failures[:5]:
        log(f"  {failure}")
    # What the run cost in CPU, whatever else the machine was doing: the figure that carries over
    # to an idle machine (on a shared one, events/s is mostly a measure of the other tenants).
    spent = {name: sum(after.get(p, 0) - before.get(p, 0) for p in pids)
             for name, pids in (("gunicorn", gunicorn_pids), ("postgres", backend_pids))}
    spent["sender"] = (sender_after.ru_utime + sender_after.ru_stime - sender_before.ru_utime
                       - sender_before.ru_stime)
    total = sum(spent.values())
    if accepted:
        log("CPU per event: " + ", ".join(f"{name} {cpu / accepted * 1e6:.1f} µs" for name, cpu in spent.items())
            + f"; total {total / accepted * 1e6:.1f} µs → {accepted / total * (os.cpu_count() or 1):,.0f} events/s "
              f"if the {os.cpu_count()} CPUs were ours alone")
    if accepted:
        server = spent["gunicorn"] + spent["postgres"]
        log(f"CPU seconds: gunicorn {spent['gunicorn']:.1f}, postgres {spent['postgres']:.1f}, sender "
            f"{spent['sender']:.1f} in {seconds:.1f} s wall; {accepted / server:,.0f} events per server CPU-second "
            "(gunicorn + postgres, load-independent)")
    print(f"events/s: {int(accepted / seconds)}")
    return 0 if accepted == stored == args.events and not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())

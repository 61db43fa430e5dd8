"""Haven scaled out on engines operators already run (issue 14, DESIGN §10), with faults.

nginx (TLS, deploy/nginx/haven.conf) in front of gunicorn with three workers; a Celery worker on
`celery,maintenance` and a key worker on `keys`, one beat; a three-node OpenBao raft cluster; the
suite's PostgreSQL and Redis; packs on S3 (a SeaweedFS of its own). Twenty agents enroll
(escrowing their keys) and back up at once while one web worker, SeaweedFS (restarted), the
maintenance worker and the active OpenBao node are killed; replacement
computers fetch their keys while the new active node is killed in turn; a web restore runs on the
key worker. At the end every agent's data restores byte for byte, the key-access chain verifies
and every index row names a frame that is in its pack (`manage.py verify`).
"""
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from accounts.services import user_ensure
from tests.conftest import PASSWORD
from tests.e2e.conftest import LiveServer, restored, tree_state
from tests.e2e.nginx import start_nginx
from tests.keystore.raft_cluster import start_cluster
from tests.seaweedfs import seaweedfs_restart, seaweedfs_start, seaweedfs_stop
from tests.support import PYTHON, REPO, VENV_BIN, child_pids, manage, wait_until

pytestmark = pytest.mark.slow
AGENTS = int(os.environ.get("HAVEN_SCALE_AGENTS", "20"))
KiB = 1024


def _agent(config: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HAVEN_PASSWORD": PASSWORD}
    return subprocess.run([PYTHON, "-m", "agent", "--config", str(config), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _ok(result: subprocess.CompletedProcess, what: str) -> None:
    assert result.returncode == 0, f"{what} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


def _tree(root: Path, index: int) -> Path:
    """A small home folder per agent: text, random bytes, a nested folder, one shared file."""
    (root / "docs" / "deep" / "er").mkdir(parents=True)
    for n in range(12):
        (root / "docs" / f"note-{n}.txt").write_text(f"agent {index} note {n}\n" * (40 + n * 30))
    for n in range(4):
        (root / "docs" / "deep" / "er" / f"blob-{n}.bin").write_bytes(os.urandom((64 + 96 * n) * KiB))
    (root / "shared-handbook.txt").write_text("the same handbook on every laptop\n" * 2000)
    return root


class Celery:
    def __init__(self, env: dict, log_dir: Path):
        self.env, self.log_dir, self.processes = env, log_dir, {}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen([str(VENV_BIN / "celery"), "-A", "config", *args, "--loglevel", "INFO"],
                                   cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.processes[name] = process
        return process

    def worker(self, name: str, queues: str, **extra: str) -> subprocess.Popen:
        process = self.start(name, "worker", "-Q", queues, "--concurrency", "1", "-n", f"{name}-{os.getpid()}@%h",
                             *[part for key, value in extra.items() for part in (f"--{key}", value)])
        wait_until(lambda: child_pids(process.pid), timeout=90, what=f"the {name} worker's child")
        return process

    def kill(self, name: str) -> None:
        os.killpg(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def scaled_out(haven_env, tmp_path, settings):
    import uuid

    (tmp_path / "seaweedfs").mkdir()
    weed = seaweedfs_start(tmp_path / "seaweedfs")  # its own: the test kills and restarts it
    cluster = start_cluster(tmp_path / "raft")
    privileged = cluster.nodes[0].client(cluster.root_token).auth.token.create(
        policies=["haven-privileged"], no_default_policy=True, ttl="24h")["auth"]["client_token"]
    env = {**haven_env, "VAULT_ADDR": cluster.addresses, "VAULT_TOKEN": cluster.app_token,
           "VAULT_PRIVILEGED_TOKEN": privileged, "HAVEN_KEYSTORE_FAILOVER_SECONDS": "90",
           "HAVEN_AUDIT_ANCHOR_PREFIX": f"haven-audit/scale-{uuid.uuid4().hex[:12]}",
           "HAVEN_PACK_STORAGE": f"s3://{weed.new_bucket()}/packs", **weed.env(),
           "HAVEN_HTTPS": "1", "HAVEN_TRUSTED_PROXIES": "127.0.0.1", "HAVEN_ALLOWED_HOSTS": "127.0.0.1"}
    web = LiveServer(env=env, fault_dir=tmp_path / "faults", workers=3)
    (tmp_path / "faults").mkdir()
    web.start()
    proxy = start_nginx(tmp_path / "nginx", [web.port])
    (tmp_path / "celery").mkdir()
    celery = Celery({**env, "HAVEN_DATA_DIR": haven_env["HAVEN_DATA_DIR"]}, tmp_path / "celery")
    try:
        celery.worker("maintenance", "celery,maintenance")
        celery.worker("keys", "keys", **{"max-tasks-per-child": "1"})
        celery.start("beat", "beat", "--schedule", str(tmp_path / "celery" / "beat-schedule"))
        yield {"env": env, "web": web, "proxy": proxy, "cluster": cluster, "celery": celery, "weed": weed}
    finally:
        celery.stop()
        proxy.stop()
        web.stop()
        cluster.stop()
        seaweedfs_stop(weed)


def _kill_one_web_worker(web: LiveServer) -> int:
    workers = child_pids(web.process.pid)
    assert len(workers) == 3, workers
    os.kill(workers[0], signal.SIGKILL)
    wait_until(lambda: len(set(child_pids(web.process.pid)) - {workers[0]}) == 3, timeout=60,
               what="gunicorn to replace the killed worker")
    return workers[0]


def test_twenty_agents_back_up_through_every_fault_and_restore_byte_identical(scaled_out, org_a, alice, tmp_path):
    from archives.models import Archive, RestoreJob
    from archives.restores import restore_job_request

    env, web, proxy, cluster, celery, weed = (scaled_out[k] for k in ("env", "web", "proxy", "cluster", "celery",
                                                                      "weed"))
    users = [user_ensure(organization=org_a, email=f"scale{i}@a.example", role="user", password=PASSWORD).user
             for i in range(AGENTS)]
    sources = [_tree(tmp_path / f"home{i}", i) for i in range(AGENTS)]
    configs = [tmp_path / f"agent{i}" for i in range(AGENTS)]
    faults: list[str] = []

    # 1. Enrollment (each one escrows a new key) with the active OpenBao node killed part-way.
    leader = cluster.active()
    enrolled = threading.Semaphore(0)

    def enroll(i: int) -> subprocess.CompletedProcess:
        result = _agent(configs[i], "enroll", "--server", proxy.url, "--ca-file", str(proxy.ca),
                        "--user", users[i].email, "--device-name", f"laptop-{i}")
        enrolled.release()
        return result

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(enroll, i) for i in range(AGENTS)]
        for _ in range(3):
            enrolled.acquire()
        leader.kill()
        faults.append(f"killed OpenBao {leader.name} (active) after 3 of {AGENTS} enrollments")
        results = [future.result() for future in futures]
    for i, result in enumerate(results):
        _ok(result, f"agent {i} enroll")
    cluster.restart(leader)  # back as a standby: the cluster keeps its quorum for the next kill

    # 2. Twenty backups at once; a web worker and the maintenance worker die mid-run.
    backups = [subprocess.Popen([PYTHON, "-m", "agent", "--config", str(configs[i]), "backup", str(sources[i])],
                                cwd=REPO, env=dict(os.environ),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(AGENTS)]
    time.sleep(2)

    def running() -> int:
        return sum(process.poll() is None for process in backups)

    assert running(), "the backups ended before the faults: nothing would be tested"
    faults.append(f"killed gunicorn worker {_kill_one_web_worker(web)} with {running()} backups running")
    assert running()
    seaweedfs_restart(weed)
    faults.append(f"killed SeaweedFS (master, volume server, filer, S3 gateway) with {running()} backups running; "
                  "started it again")
    from config.celery_app import app

    wait_until(lambda: AGENTS - running() >= AGENTS // 4, timeout=300, what="a quarter of the backups to finish")
    for archive in Archive.objects.all():
        app.send_task("haven.maintenance.archive_maintain", kwargs={"archive_id": archive.pk}, queue="maintenance")
    app.send_task("haven.archives.verify_full", queue="maintenance")
    time.sleep(1.5)
    celery.kill("maintenance")
    faults.append("killed the maintenance Celery worker with tasks queued and running")
    celery.worker("maintenance-2", "celery,maintenance")
    outcomes = []
    for process in backups:
        stdout, stderr = process.communicate(timeout=600)
        outcomes.append((process.returncode, stdout, stderr))
    retried = [i for i, (code, _out, _err) in enumerate(outcomes) if code != 0]
    for i in retried:  # what `agent run` does at its next interval: the same backup again
        _ok(_agent(configs[i], "backup", str(sources[i])), f"agent {i} backup (second try)")
    assert len(retried) <= AGENTS // 2, f"{len(retried)} of {AGENTS} backups failed once: {outcomes[retried[0]][2][-2000:]}"

    # 3. Replacement computers fetch their keys from escrow while the new active node dies, and a
    #    web restore runs on the key worker meanwhile.
    job = restore_job_request(actor=alice, archive=Archive.objects.get(user=users[0]))
    leader = cluster.active()
    replacements = [tmp_path / f"replacement{i}" for i in range(3)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(_agent, replacements[i], "enroll", "--server", proxy.url, "--ca-file", str(proxy.ca),
                               "--user", users[i].email, "--device-name", f"new-laptop-{i}")
                   for i in range(3)]
        time.sleep(0.5)
        leader.kill()
        faults.append(f"killed OpenBao {leader.name} (active) during key retrievals and a web restore")
        for i, future in enumerate(futures):
            _ok(future.result(), f"replacement {i} enroll")
    wait_until(lambda: RestoreJob.objects.filter(pk=job.pk, status__in=["done", "failed"]).exists(), timeout=300,
               what="the web restore on the key worker")
    job.refresh_from_db()
    assert job.status == "done", job.error

    # 4. Everything restores byte for byte: the originals and the replacement computers.
    def restore(config: Path, source: Path, name: str, *extra: str) -> None:
        destination = tmp_path / f"restore-{name}"
        _ok(_agent(config, "restore", "--to", str(destination), *extra), f"{name} restore")
        assert tree_state(restored(destination, source)) == tree_state(source), name

    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(restore, configs[i], sources[i], f"agent{i}") for i in range(AGENTS)] + [
                pool.submit(restore, replacements[i], sources[i], f"replacement{i}", "--from-device", f"laptop-{i}")
                for i in range(3)]:
            future.result()

    # 5. The key-access chain verifies on the surviving nodes; no index row names a missing frame.
    audit = manage("keystore", "verify-audit", env=env, check=False)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    verify = manage("verify", env=env, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.count(": clean") >= AGENTS, verify.stdout
    print("\n".join(["faults:", *faults, f"backups retried once: {len(retried)} of {AGENTS}"]))

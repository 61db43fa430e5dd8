"""A live Haven: gunicorn processes on the test's PostgreSQL database, and agents as processes.

Each server runs in its own process group so a test can kill -9 it (master and workers at once)
at a named fault point (archives/faults.py) and start it again on the same data.
"""
import hashlib
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import PASSWORD
from tests.support import PYTHON, REPO, VENV_BIN, free_port, http_ready, wait_until


@dataclass
class LiveServer:
    env: dict
    fault_dir: Path
    workers: int = 2
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, faults: str = "") -> "LiveServer":
        env = {**self.env, "HAVEN_FAULT_POINTS": faults, "HAVEN_FAULT_DIR": str(self.fault_dir)}
        self.process = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{self.port}", "--workers",
             str(self.workers), "--timeout", "600", "--graceful-timeout", "5"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: http_ready(f"{self.url}/login/"), timeout=60, what="gunicorn to answer")
        return self

    def kill(self) -> None:
        """kill -9 the master and every worker: no cleanup, no flush, mid-request."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def haven_env(transactional_db, tmp_path, vault, settings, pack_backend, request):
    """Environment for server processes: this test's database, shared pack storage (a folder, or
    a bucket on the suite's SeaweedFS: `pack_backend`, tests/conftest.py), the suite's OpenBao with
    Haven's escrow-only token."""
    url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + connection.settings_dict["NAME"]
    storage = {"HAVEN_PACK_STORAGE": ""}
    if pack_backend == "s3":  # the test process's own settings point at the same bucket
        request.getfixturevalue("s3_pack_storage")
        storage = {"HAVEN_PACK_STORAGE": settings.PACK_STORAGE, **request.getfixturevalue("seaweedfs").env()}
    return {**os.environ, **storage, "DATABASE_URL": url, "HAVEN_TEST_DATABASE_NAME": "",
            "HAVEN_DATA_DIR": str(tmp_path / "var"),
            "HAVEN_PACK_DIR": str(tmp_path / "packs"), "HAVEN_SECRET_KEY": "test-secret",
            "VAULT_ADDR": vault["url"], "VAULT_TOKEN": vault["app_token"],
            # as the operator's key worker runs: migrations delete Haven's copies through it
            "VAULT_PRIVILEGED_TOKEN": vault["privileged_token"],
            "HAVEN_AUDIT_ANCHOR_PREFIX": settings.HAVEN_AUDIT_ANCHOR_PREFIX,
            "HAVEN_EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}


@pytest.fixture
def live_servers(haven_env, tmp_path):
    started: list[LiveServer] = []
    fault_dir = tmp_path / "faults"
    fault_dir.mkdir()

    def _start(faults: str = "", workers: int = 2) -> LiveServer:
        server = LiveServer(env=haven_env, fault_dir=fault_dir, workers=workers).start(faults)
        started.append(server)
        return server

    yield _start
    for server in started:
        server.stop()


@pytest.fixture
def live_server_haven(live_servers):
    return live_servers()


def run_agent(config: Path, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([PYTHON, "-m", "agent", "--config", str(config), *args], cwd=REPO,
                            env={**os.environ, "HAVEN_PASSWORD": PASSWORD}, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"agent {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def start_agent(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-m", "agent", "--config", str(config), *args], cwd=REPO,
                            env={**os.environ, "HAVEN_PASSWORD": PASSWORD},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def enroll_agent(server: LiveServer, config: Path, user, name: str) -> Path:
    run_agent(config, "enroll", "--server", server.url, "--user", user.email, "--device-name", name)
    return config


def tree_state(root: Path) -> dict[str, tuple[str, int, int]]:
    """relative path -> (sha256, mode, mtime_ns) of every regular file (symlinks are not backed up)."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        st = path.stat()
        state[str(path.relative_to(root))] = (hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mode & 0o7777,
                                              st.st_mtime_ns)
    return state


def restored(dest: Path, source_root: Path) -> Path:
    return dest / str(source_root).lstrip("/")


def pack_files(env: dict) -> list[Path]:
    return sorted(Path(env["HAVEN_PACK_DIR"]).rglob("*.pack"))


def stored_packs(env: dict) -> dict[str, bytes]:
    """Every live pack of the servers' storage, local or S3, read through the storage interface."""
    from archives.storage import LocalPackStorage
    from archives.storage_s3 import S3PackStorage, parse_s3_url

    if env.get("HAVEN_PACK_STORAGE"):
        storage = S3PackStorage(*parse_s3_url(env["HAVEN_PACK_STORAGE"]))
    else:
        storage = LocalPackStorage(Path(env["HAVEN_PACK_DIR"]))
    return {key: storage.read_all(key) for key in storage.keys("")}

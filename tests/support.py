"""Helpers for tests that run real processes: free ports, waiting for them, Haven's environment."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, *, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def assert_unnoticed_then_noticed(watcher, unnoticed, noticed, *, what: str) -> None:
    """A change watcher (agent/runtime.py) left clean by `unnoticed()` (a second is given for its
    events to come), then made dirty by `noticed()`."""
    unnoticed()
    time.sleep(1)
    assert not watcher.dirty
    noticed()
    wait_until(lambda: watcher.dirty, timeout=5, what=what)


def http_ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def embedded_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """An environment with none of the test suite's service settings: Haven's embedded defaults."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"} and not k.startswith("VAULT_")}
    env["HAVEN_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def manage(*args: str, env: dict[str, str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "manage.py", *args], cwd=REPO, env=env, check=check,
                          capture_output=True, text=True, **kwargs)


def agent(*args: str, env: dict[str, str] | None = None, check: bool = False, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "agent", *args], cwd=REPO, env=env or dict(os.environ),
                          check=check, capture_output=True, text=True, **kwargs)


def child_pids(pid: int) -> list[int]:
    """The direct children of a live process (gunicorn's or Celery's workers), from /proc."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def stop_process(process: subprocess.Popen, timeout: float = 20) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

"""What every benchmark here shares: paths, running a command timed, the processes it starts."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import datagen  # noqa: E402  (a sibling module, not a package)

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
DEFAULT_DATA = REPO / "bench" / "data"
INSTALL_RESTIC = "apt-get update && apt-get install -y restic"
HAVEN_USER = "bench@bench.example"
HAVEN_PASSWORD = "bench-password-4711"
MB = 1_000_000  # throughput is in MB/s = 10^6 bytes per second
STEPS = {
    "backup-1": "1. first backup",
    "backup-2": "2. re-run, nothing changed",
    "backup-3": "3. re-run, files changed",
    "restore": "4. full restore",
}
# Variables that would point a Haven process at another server's state; the benchmark
# runs its own fresh server on the embedded defaults (or the one --database-url names).
_HAVEN_ENV_PREFIXES = ("HAVEN_", "VAULT_", "BAO_")
_HAVEN_ENV_NAMES = ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")

VERBOSE = False


class BenchError(Exception):
    """A failure the user must see as one clear message (which command, why)."""


def log(message: str) -> None:
    print(message, flush=True)


def debug(message: str) -> None:
    if VERBOSE:
        print(f"  | {message}", flush=True)


# --------------------------------------------------------------------------- commands


@dataclass
class CommandResult:
    """What one timed command cost: wall and CPU time of its whole process tree, peak RSS."""

    seconds: float
    cpu_seconds: float
    max_rss_mib: float
    stdout: str = field(repr=False)
    stderr: str = field(repr=False)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty)"


def run(cmd: list[str], *, env: dict[str, str], cwd: Path | None = None, what: str) -> CommandResult:
    """Run ``cmd`` to completion, timed; raise BenchError with its output's tail on failure.

    Output goes to files, not pipes, so a chatty command can never block on a full pipe, and
    os.wait4 gives the rusage of this one child (CPU includes the children it waited for)."""
    debug("$ " + " ".join(cmd))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    for line in (stdout + stderr).rstrip().splitlines()[-10:]:
        debug(f"  {line}")
    if process.returncode != 0:
        raise BenchError(
            f"{what} failed (exit status {process.returncode}) after {seconds:.1f} s\n"
            f"command: {' '.join(cmd)}\n"
            f"--- stderr (last lines) ---\n{_tail(stderr)}\n"
            f"--- stdout (last lines) ---\n{_tail(stdout, 10)}"
        )
    return CommandResult(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stdout, stderr)


def tree_bytes(path: Path) -> int:
    """Apparent size of everything under ``path`` (like ``du -sb``); 0 if it is missing."""
    if not path.exists():
        return 0
    return sum(datagen.tree_sizes(path).values())



def busy_cpus(seconds: float = 1.0) -> float:
    """How many CPUs other work keeps busy right now (from /proc/stat over ``seconds``).
    The load average would do, but it lags a minute and counts our own previous run."""

    def sample() -> tuple[int, int]:
        values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values[:8]) - idle, sum(values[:8])

    try:
        busy_before, total_before = sample()
        time.sleep(seconds)
        busy_after, total_after = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    return (os.cpu_count() or 1) * (busy_after - busy_before) / max(1, total_after - total_before)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_login(url: str, server: subprocess.Popen, server_log: Path, timeout: float = 60) -> None:
    """The server is ready when GET /login/ answers 200; fail early if gunicorn died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(f"gunicorn exited with status {server.returncode}\n"
                             f"--- {server_log} (last lines) ---\n{_tail(server_log.read_text(errors='replace'))}")
        try:
            with urllib.request.urlopen(f"{url}/login/", timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise BenchError(f"{url}/login/ did not answer 200 within {timeout:.0f} s\n"
                     f"--- {server_log} (last lines) ---\n{_tail(server_log.read_text(errors='replace'))}")


def clean_env() -> dict[str, str]:
    """This process's environment without anything that would point Haven at another server's state."""
    return {key: value for key, value in os.environ.items()
            if not key.startswith(_HAVEN_ENV_PREFIXES) and key not in _HAVEN_ENV_NAMES}


def keystore_start(env: dict[str, str], log: Path) -> subprocess.Popen:
    """The embedded OpenBao, as `make run` has it (`env` must name HAVEN_KEYSTORE_PORT); ready when
    this returns."""
    with open(log, "wb") as keystore_log:
        keystore = subprocess.Popen([str(VENV_BIN / "python"), "manage.py", "keystore", "embedded"], cwd=REPO,
                                    env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=keystore_log,
                                    text=True, start_new_session=True)
    if "ready" not in (keystore.stdout.readline() or ""):
        raise BenchError(f"the embedded keystore did not start; see {log}")
    return keystore


def gunicorn_start(env: dict[str, str], workdir: Path, *, workers: int, timeout: int) -> tuple[subprocess.Popen, str]:
    """gunicorn on a free loopback port, logging to workdir/gunicorn.log; (process, url) once /login/ answers."""
    port = _free_port()
    command = [str(VENV_BIN / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}",
               "--workers", str(workers), "--timeout", str(timeout),
               # its own control socket: the default ~/.gunicorn/gunicorn.ctl is shared with
               # any other gunicorn on the machine (a developer's `make run`), and ours would replace it
               "--control-socket", str(workdir / "gunicorn.ctl")]
    debug("$ " + " ".join(command))
    server_log = workdir / "gunicorn.log"
    with open(server_log, "wb") as log:
        server = subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    _wait_for_login(url, server, server_log)
    return server, url


def _process_tree_cpu_seconds(root_pid: int) -> float:
    """utime+stime+cutime+cstime of ``root_pid`` and its live descendants, from /proc."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent pid, CPU seconds)
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is the state (stat field 3): ppid is field 4, utime..cstime fields 14-17
        stats[int(entry.name)] = (int(fields[1]), sum(int(value) for value in fields[11:15]) / ticks)
    tree, total = {root_pid}, 0.0
    for _ in range(4):  # gunicorn's tree is two levels deep; a few passes catch any depth we meet
        tree |= {pid for pid, (parent, _) in stats.items() if parent in tree}
    for pid in tree:
        total += stats.get(pid, (0, 0.0))[1]
    return total


def _process_tree_peak_rss_mib(root_pid: int) -> float:
    """Sum of VmHWM over ``root_pid`` and its live descendants (a process's own peak so far)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    tree = {root_pid}
    for _ in range(4):
        tree |= {pid for pid, parent in parents.items() if parent in tree}
    total_kib = 0
    for pid in tree:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        total_kib += int(match.group(1)) if match else 0
    return total_kib / 1024


# --------------------------------------------------------------------------- restore check

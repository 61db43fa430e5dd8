"""Haven vs restic on the same data, same machine, one run.

Four steps, each timed for both tools, interleaved (Haven then restic) so both see the
same page cache and the same machine load:

1. first backup of the data set;
2. the same backup again with nothing changed;
3. the backup again after 5 % of the files (by count; 1 % on the small-files set) were
   changed — the change is applied once, before both step-3 runs, so both tools back up the
   very same tree;
4. a full restore of the latest snapshot into an empty directory, checked against the data.

Run from the repository root (see bench/README.md):

    apt-get update && apt-get install -y restic
    .venv/bin/python bench/backup_vs_restic.py --size 1G
    .venv/bin/python bench/backup_vs_restic.py --dataset both --files 200000

Two data sets (bench/datagen.py): "mixed" (1 GiB of random, text and duplicated files, small to
200 MiB) and "small" (--files small files of 1-64 KiB in deep folders, text and binary).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

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


# --------------------------------------------------------------------------- tools


class Tool(Protocol):
    """One side of the comparison; set up once, then the four steps, then cleaned up."""

    name: str

    def setup(self) -> None: ...
    def backup(self, data: Path) -> CommandResult: ...
    def restore(self, target: Path) -> CommandResult: ...
    def sizes(self) -> dict[str, int]: ...
    def describe(self) -> str: ...
    def close(self) -> None: ...


class Restic:
    """restic with a local repository in the temporary directory, default settings."""

    name = "restic"

    def __init__(self, workdir: Path) -> None:
        self.repository = workdir / "restic-repo"
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("RESTIC_")}
        self.env.pop("GOMAXPROCS", None)  # restic must use both cores, as it would for a user
        self.env.update(RESTIC_REPOSITORY=str(self.repository), RESTIC_PASSWORD=HAVEN_PASSWORD,
                        RESTIC_CACHE_DIR=str(workdir / "restic-cache"))
        self.version = ""
        self.repository_version = 0

    def setup(self) -> None:
        if shutil.which("restic") is None:
            raise BenchError(f"restic is not installed (not on PATH); install it with: {INSTALL_RESTIC}")
        self.version = run(["restic", "version"], env=self.env, what="restic version").stdout.strip()
        run(["restic", "init"], env=self.env, what="restic init")
        config = run(["restic", "cat", "config"], env=self.env, what="restic cat config").stdout
        self.repository_version = int(json.loads(config).get("version", 1))

    def backup(self, data: Path) -> CommandResult:
        return run(["restic", "backup", str(data), "--quiet"], env=self.env, what="restic backup")

    def restore(self, target: Path) -> CommandResult:
        return run(["restic", "restore", "latest", "--target", str(target)], env=self.env, what="restic restore")

    def sizes(self) -> dict[str, int]:
        return {"repository_bytes": tree_bytes(self.repository)}

    def describe(self) -> str:
        compression = ("zstd compression (default 'auto')" if self.repository_version >= 2
                       else "NO compression (repository format v1)")
        return f"{self.version}; repository format v{self.repository_version}: {compression}"

    def close(self) -> None:
        pass


class Haven:
    """A fresh Haven server (gunicorn, 2 workers) and an enrolled agent, all in ``workdir``."""

    name = "haven"

    def __init__(self, workdir: Path, database_url: str | None, profile: Path | None = None) -> None:
        self.workdir = workdir
        self.profile = profile  # run agent backups and restores under bench/profile.py, write here
        self.data_dir = workdir / "haven-var"
        self.agent_dir = workdir / "agent"
        self.database_url = database_url
        self.python = str(VENV_BIN / "python")
        self.server: subprocess.Popen | None = None
        self.server_log = workdir / "gunicorn.log"
        self.url = ""
        self.empty_database_bytes = 0
        self.agent_outputs: dict[str, str] = {}  # what the agent printed, by command
        self.backups = 0
        base = {key: value for key, value in os.environ.items()
                if not key.startswith(_HAVEN_ENV_PREFIXES) and key not in _HAVEN_ENV_NAMES}
        self.server_env = {**base, "HAVEN_DATA_DIR": str(self.data_dir)}
        if database_url:
            self.server_env["DATABASE_URL"] = database_url
        # The agent gets the password for every command so that none can stop at a prompt.
        self.agent_env = {**base, "HAVEN_PASSWORD": HAVEN_PASSWORD}

    # -- server

    def setup(self) -> None:
        for needed in (VENV_BIN / "python", VENV_BIN / "gunicorn", REPO / "manage.py"):
            if not needed.exists():
                raise BenchError(f"{needed} is missing: run `make install` in {REPO} first")
        if self.database_url:
            self._require_empty_postgres()
        self._manage(["migrate", "--noinput"], "manage.py migrate")
        self._manage(["createorg", "Bench", "--admin", HAVEN_USER], "manage.py createorg",
                     extra_env={"HAVEN_PASSWORD": HAVEN_PASSWORD})
        self.empty_database_bytes = self._database_bytes()
        self._start_server()
        self._agent(["enroll", "--server", self.url, "--user", HAVEN_USER, "--device-name", "bench"], "enroll")

    def _manage(self, args: list[str], what: str, extra_env: dict[str, str] | None = None) -> CommandResult:
        return run([self.python, "manage.py", *args], env={**self.server_env, **(extra_env or {})}, cwd=REPO, what=what)

    def _require_empty_postgres(self) -> None:
        """A used database would mix an old archive's rows with a fresh pack directory."""
        if not self.database_url.startswith(("postgres://", "postgresql://")):
            raise BenchError("--database-url must be a postgresql:// URL (without it Haven uses SQLite)")
        code = "from django.db import connection; print(len(connection.introspection.table_names()))"
        tables = int(self._manage(["shell", "-c", code], "checking the database is empty").stdout.split()[-1])
        if tables:
            raise BenchError(f"the database at --database-url already has {tables} tables: "
                             "give the benchmark an empty database (DROP DATABASE / CREATE DATABASE)")

    def _start_keystore(self) -> None:
        """The embedded OpenBao, as `make run` has it: agents escrow their key before any block."""
        self.server_env["HAVEN_KEYSTORE_PORT"] = str(_free_port())
        with open(self.workdir / "keystore.log", "wb") as keystore_log:
            self.keystore = subprocess.Popen([self.python, "manage.py", "keystore", "embedded"], cwd=REPO,
                                             env=self.server_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                             stderr=keystore_log, text=True, start_new_session=True)
        if "ready" not in (self.keystore.stdout.readline() or ""):
            raise BenchError(f"the embedded keystore did not start; see {self.workdir / 'keystore.log'}")

    def _start_server(self) -> None:
        self._start_keystore()
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [str(VENV_BIN / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}",
                   "--workers", "2", "--timeout", "300",
                   # its own control socket: the default ~/.gunicorn/gunicorn.ctl is shared with
                   # any other gunicorn on the machine (a developer's `make run`), and ours would replace it
                   "--control-socket", str(self.workdir / "gunicorn.ctl")]
        debug("$ " + " ".join(command))
        with open(self.server_log, "wb") as server_log:
            self.server = subprocess.Popen(command, cwd=REPO, env=self.server_env, stdin=subprocess.DEVNULL,
                                           stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for_login(self.url, self.server, self.server_log)

    def close(self) -> None:
        """Stop the server we started: SIGTERM (gunicorn's graceful stop), then SIGKILL its group."""
        keystore = getattr(self, "keystore", None)
        if keystore is not None and keystore.poll() is None:
            keystore.terminate()
            keystore.wait(timeout=30)
        if self.server is None or self.server.poll() is not None:
            return
        self.server.terminate()
        try:
            self.server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.server.pid, signal.SIGKILL)  # the session we created for it
            self.server.wait(timeout=15)

    def server_cpu_seconds(self) -> float:
        """CPU used so far by gunicorn and its workers: the agent is only half of Haven's cost."""
        return _process_tree_cpu_seconds(self.server.pid) if self.server else 0.0

    # -- agent

    def server_peak_rss_mib(self) -> float:
        """The high-water marks (VmHWM) of gunicorn's master and workers, summed."""
        return _process_tree_peak_rss_mib(self.server.pid) if self.server else 0.0

    def _agent(self, args: list[str], what: str) -> CommandResult:
        launcher = ["-m", "agent"]
        if self.profile is not None and args[0] in ("backup", "restore"):
            name = what.replace(" ", "").replace("#", "-")
            launcher = [str(REPO / "bench" / "profile.py"), "--out", str(self.profile / name), "--"]
        try:
            result = run([self.python, *launcher, "--config", str(self.agent_dir), *args],
                         env=self.agent_env, cwd=REPO, what=f"haven agent {what}")
        except BenchError as error:  # a server-side error shows only in the server's log
            log_tail = _tail(self.server_log.read_text(errors="replace"), 15) if self.server_log.exists() else "(none)"
            raise BenchError(f"{error}\n--- server log {self.server_log.name} (last lines) ---\n{log_tail}") from None
        self.agent_outputs[what] = (result.stdout + result.stderr).strip()
        return result

    def backup(self, data: Path) -> CommandResult:
        self.backups += 1
        return self._agent(["backup", str(data)], f"backup #{self.backups}")

    def restore(self, target: Path) -> CommandResult:
        return self._agent(["restore", "--to", str(target)], "restore")

    # -- sizes

    def _database_bytes(self) -> int:
        if self.database_url:
            code = ("from django.db import connection; c = connection.cursor(); "
                    "c.execute('SELECT pg_database_size(current_database())'); print(c.fetchone()[0])")
            return int(self._manage(["shell", "-c", code], "pg_database_size").stdout.split()[-1])
        database = self.data_dir / "haven.sqlite3"
        return sum(path.stat().st_size for path in (database, Path(f"{database}-wal")) if path.exists())

    def sizes(self) -> dict[str, int]:
        return {
            "pack_bytes": tree_bytes(self.data_dir / "packs"),
            "database_bytes": self._database_bytes(),
            "database_bytes_before_backup": self.empty_database_bytes,
            "agent_state_bytes": tree_bytes(self.agent_dir),
        }

    def describe(self) -> str:
        database = "PostgreSQL (--database-url)" if self.database_url else "SQLite (embedded default)"
        return f"Haven at {self.url}, gunicorn 2 workers, {database}, data dir {self.data_dir}"


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


@dataclass
class Verification:
    """How a restored tree compares with the data set."""

    ok: bool
    files: int
    bytes: int
    hashed_files: int
    problems: list[str]


def verify_restore(data: Path, restored: Path, must_hash: list[str], seed: int) -> Verification:
    """Same paths and sizes for every file, and equal SHA-256 for a sample: the changed files
    of step 3 (did the last backup catch them?), every big file and 200 others at random."""
    problems: list[str] = []
    expected = datagen.tree_sizes(data)
    actual = datagen.tree_sizes(restored) if restored.is_dir() else {}
    if not actual:
        problems.append(f"nothing was restored at {restored}")
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    wrong_size = sorted(path for path in set(expected) & set(actual) if expected[path] != actual[path])
    for label, paths in (("missing", missing), ("unexpected", extra), ("wrong size", wrong_size)):
        if paths:
            problems.append(f"{len(paths)} {label} file(s), e.g. {', '.join(paths[:3])}")
    common = sorted(set(expected) & set(actual) - set(wrong_size))
    sample = set(must_hash) | {path for path in common if expected[path] >= 50 * datagen.MiB}
    sample |= set(random.Random(f"haven-bench:{seed}:verify").sample(common, min(200, len(common))))
    sample &= set(common)
    differing = sorted(path for path in sample if _sha256(data / path) != _sha256(restored / path))
    if differing:
        problems.append(f"{len(differing)} of {len(sample)} hashed file(s) differ, e.g. {', '.join(differing[:3])}")
    return Verification(not problems, len(actual), sum(actual.values()), len(sample), problems)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while piece := handle.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


# --------------------------------------------------------------------------- the run


@dataclass
class StepResult:
    """One tool's figures for one step, as printed and as written to --json."""

    seconds: float
    mb_per_s: float
    cpu_seconds: float
    max_rss_mib: float
    server_cpu_seconds: float | None = None
    server_peak_rss_mib: float | None = None


def timed_step(tool: Tool, step: str, action: Callable[[Path], CommandResult], path: Path,
               data_bytes: int) -> StepResult:
    """Run ``action(path)``, one step of one tool; MB/s is always the full data-set size over the wall time."""
    # Flush dirty pages first (untimed): the data generator's or the other tool's pending
    # writeback would otherwise land in this step's time.
    os.sync()
    server_before = tool.server_cpu_seconds() if isinstance(tool, Haven) else None
    result = action(path)
    server_cpu = tool.server_cpu_seconds() - server_before if isinstance(tool, Haven) else None
    server_rss = tool.server_peak_rss_mib() if isinstance(tool, Haven) else None
    cpu = f"cpu {result.cpu_seconds:6.2f} s" + (f" + server {server_cpu:6.2f} s" if server_cpu is not None else "")
    log(f"  {tool.name:6} {STEPS[step]:30} {result.seconds:8.2f} s  {data_bytes / MB / result.seconds:8.1f} MB/s  {cpu}")
    return StepResult(result.seconds, data_bytes / MB / result.seconds, result.cpu_seconds,
                      result.max_rss_mib, server_cpu, server_rss)


def run_benchmark(tools: list[Tool], dataset: datagen.Dataset, workdir: Path, keep: bool = False) -> dict:
    """Steps 1-4, each for every tool in turn; returns the results as a JSON-able dict."""
    data_bytes = dataset.total_bytes
    steps: dict[str, dict[str, StepResult]] = {step: {} for step in STEPS}
    verifications: dict[str, Verification] = {}
    for step in ("backup-1", "backup-2"):
        for tool in tools:
            steps[step][tool.name] = timed_step(tool, step, tool.backup, dataset.root, data_bytes)
    changed, written = datagen.apply_modification(dataset)
    log(f"  (changed {changed} of {len(dataset.files)} files, {written / MB:.2f} MB written)")
    modified_bytes = sum(datagen.tree_sizes(dataset.root).values())
    for tool in tools:
        steps["backup-3"][tool.name] = timed_step(tool, "backup-3", tool.backup, dataset.root, modified_bytes)
    must_hash = [spec.path for spec in datagen.modified_files(dataset.seed, dataset.files, dataset.modify_fraction)]
    for tool in tools:
        target = workdir / f"restore-{tool.name}"
        target.mkdir()
        steps["restore"][tool.name] = timed_step(tool, "restore", tool.restore, target, modified_bytes)
        verification = verify_restore(dataset.root, target / dataset.root.relative_to("/"), must_hash, dataset.seed)
        verifications[tool.name] = verification
        if not verification.ok:
            log(f"\n!!!!! RESTORE CHECK FAILED for {tool.name}: " + "; ".join(verification.problems) + "\n")
        if not keep:
            shutil.rmtree(target, ignore_errors=True)  # two restored copies of 1 GiB need not linger
    return {
        "data_bytes": data_bytes,
        "data_bytes_after_change": modified_bytes,
        "files": len(dataset.files),
        "changed_files": changed,
        "changed_fraction": dataset.modify_fraction,
        "changed_bytes_written": written,
        "steps": {step: {name: asdict(result) for name, result in by_tool.items()} for step, by_tool in steps.items()},
        "restore_check": {name: asdict(verification) for name, verification in verifications.items()},
        "sizes": {tool.name: tool.sizes() for tool in tools},
        "setup": {tool.name: tool.describe() for tool in tools},
    }


# --------------------------------------------------------------------------- report


def _ratio(step: str, haven: dict | None, restic: dict | None) -> str:
    """Throughput ratio Haven/restic (>1: Haven faster); for step 2 the time ratio (>1: slower)."""
    if not haven or not restic:
        return "-"
    if step == "backup-2":
        return f"{haven['seconds'] / restic['seconds']:.2f}x time"
    return f"{haven['mb_per_s'] / restic['mb_per_s']:.2f}x thru"


def _cells(result: dict | None) -> str:
    return f"{result['seconds']:9.2f} {result['mb_per_s']:11.1f}" if result else f"{'-':>9} {'-':>11}"


def print_report(results: dict) -> None:
    steps = results["steps"]
    log("")
    log(f"===== data set {results.get('dataset', 'mixed')}: {results['files']:,} files, "
        f"{results['data_bytes'] / MB:,.0f} MB; step 3 changed {results['changed_fraction']:.0%} of the files")
    log(f"{'step':32} {'Haven s':>9} {'Haven MB/s':>11} {'restic s':>9} {'restic MB/s':>11} {'Haven/restic':>14}")
    for step, label in STEPS.items():
        haven, restic = steps[step].get("haven"), steps[step].get("restic")
        log(f"{label:32} {_cells(haven)} {_cells(restic)} {_ratio(step, haven, restic):>14}")
    log("")
    log(f"{'CPU seconds (user+sys)':32} {'agent':>9} {'server':>11} {'restic':>9}   "
        "peak RSS MiB agent/server/restic")
    for step, label in STEPS.items():
        haven, restic = steps[step].get("haven"), steps[step].get("restic")
        agent = f"{haven['cpu_seconds']:9.2f} {haven['server_cpu_seconds']:11.2f}" if haven else f"{'-':>9} {'-':>11}"
        own = f"{restic['cpu_seconds']:9.2f}" if restic else f"{'-':>9}"
        rss = "/".join(f"{r['max_rss_mib']:.0f}" if r else "-" for r in (haven, restic))
        if haven and haven.get("server_peak_rss_mib") is not None:
            rss = rss.replace("/", f"/{haven['server_peak_rss_mib']:.0f}/", 1)
        log(f"{label:32} {agent} {own}   {rss}")
    log("")
    per = 10_000 / results["files"]
    log(f"{'seconds per 10,000 files':32} {'Haven':>9} {'(CPU a+s)':>11} {'restic':>9} {'(CPU)':>11}")
    for step, label in STEPS.items():
        haven, restic = steps[step].get("haven"), steps[step].get("restic")
        left = f"{haven['seconds'] * per:9.2f} {(haven['cpu_seconds'] + haven['server_cpu_seconds']) * per:11.2f}" \
            if haven else f"{'-':>9} {'-':>11}"
        right = f"{restic['seconds'] * per:9.2f} {restic['cpu_seconds'] * per:11.2f}" if restic else f"{'-':>9} {'-':>11}"
        log(f"{label:32} {left} {right}")
    log("")
    log("MB/s = data-set bytes / wall seconds (MB = 10^6 bytes). Step 3 counts the whole data set too,")
    log("since both tools scan every file to find the changed ones; step 2 compares times (lower is better),")
    log("the other steps throughput (>1x: Haven faster).")
    log("")
    sizes = results["sizes"]
    log(f"data set:                {results['data_bytes']:>15,} bytes in {results['files']:,} files "
        f"({results['changed_files']} changed in step 3: {results['data_bytes_after_change']:,} bytes after)")
    if "haven" in sizes:
        haven = sizes["haven"]
        log(f"Haven packs:             {haven['pack_bytes']:>15,} bytes")
        log(f"Haven database:          {haven['database_bytes']:>15,} bytes "
            f"({haven['database_bytes_before_backup']:,} of them before the first backup)")
        log(f"Haven agent state:       {haven['agent_state_bytes']:>15,} bytes")
    if "restic" in sizes:
        log(f"restic repository:       {sizes['restic']['repository_bytes']:>15,} bytes")
    if "haven" in sizes and "restic" in sizes:
        stored = sizes["haven"]["pack_bytes"] + sizes["haven"]["database_bytes"] - \
            sizes["haven"]["database_bytes_before_backup"]
        log(f"stored Haven/restic:     {stored / sizes['restic']['repository_bytes']:15.3f}x "
            "(packs + database growth over restic's repository)")
    for name, description in results["setup"].items():
        log(f"{name}: {description}")
    for name, check in results["restore_check"].items():
        state = "OK" if check["ok"] else "FAILED: " + "; ".join(check["problems"])
        log(f"restore check {name}: {state} ({check['files']:,} files, {check['bytes']:,} bytes, "
            f"{check['hashed_files']} hashed)")


# --------------------------------------------------------------------------- main


def parse_size(text: str) -> int:
    """'1G', '256M', '512MiB', '1073741824': binary units (1G = 2^30 bytes)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 256M or 1G)")
    factor = 1024 ** " kmgt".index(match.group(2).lower() or " ")
    return int(float(match.group(1)) * factor)


def _files_list(text: str) -> list[int]:
    try:
        counts = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a file count or list of them: {text!r} (try 200000 or 50000,100000)")
    if not counts or min(counts) < 100:
        raise argparse.ArgumentTypeError("file counts must be at least 100")
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["mixed", "small", "both"], default="mixed",
                        help="mixed: --size of files small to big; small: --files small files; both: one after the other")
    parser.add_argument("--size", type=parse_size, default=datagen.GiB, help="mixed data-set size (default 1G; e.g. 256M)")
    parser.add_argument("--files", type=_files_list, default=[200_000], metavar="N[,N...]",
                        help="small-files data set: number of files (default 200000); a list (50000,100000,200000) "
                             "runs it once per count, to show the time per 10,000 files stays flat")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR",
                        help=f"where the mixed data set is generated and reused (default {DEFAULT_DATA.relative_to(REPO)}); "
                             "the small-files sets go beside it, in DIR-small-N")
    parser.add_argument("--seed", type=int, default=1, help="data-set seed (default 1)")
    parser.add_argument("--only", choices=["haven", "restic", "both"], default="both")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (repos, logs)")
    parser.add_argument("--database-url", metavar="URL", help="run Haven on this (empty) PostgreSQL database")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="run the agent's backups and restores under bench/profile.py (pyinstrument); "
                             "call trees and stage tables go to DIR/<data set>/")
    parser.add_argument("--verbose", action="store_true", help="show commands and their output")
    return parser


def run_one(args, name: str, small_files: int | None, load: float) -> dict | None:
    """One data set, all steps, both tools; None after a failure (already reported)."""
    started = time.perf_counter()
    directory = args.data if small_files is None else args.data.with_name(f"{args.data.name}-small-{small_files}")
    dataset, generated = datagen.ensure_dataset(directory, args.seed, args.size, log=log, small_files=small_files)
    log(f"data set {name}: {dataset.root} — {dataset.total_bytes:,} bytes, {len(dataset.files):,} files, "
        f"{'generated' if generated else 'reused'} in {time.perf_counter() - started:.1f} s ({datagen.GENERATOR})")
    if args.database_url and getattr(args, "_database_used", False):
        log("error: --database-url serves one data set only (the database must be empty): run them one at a time")
        return None
    workdir = Path(tempfile.mkdtemp(prefix="haven-bench-"))
    tools: list[Tool] = []
    if args.only in ("haven", "both"):
        tools.append(Haven(workdir, args.database_url, None if args.profile is None else args.profile / name))
        args._database_used = True
    if args.only in ("restic", "both"):
        tools.append(Restic(workdir))
    try:
        for tool in tools:
            log(f"setting up {tool.name} in {workdir}")
            tool.setup()
        results = run_benchmark(tools, dataset, workdir, keep=args.keep)
    except BenchError as error:
        log(f"\nerror: {error}")
        return None
    finally:
        for tool in tools:
            tool.close()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for tool in tools:
        if isinstance(tool, Haven):
            for what, output in tool.agent_outputs.items():
                debug(f"haven agent {what}: {output}")
    results.update(dataset=name, seed=args.seed, size_arg=args.size, cpus=os.cpu_count(),
                   python=platform.python_version(), generator=datagen.GENERATOR, busy_cpus_at_start=round(load, 2))
    results["agent_output"] = next((t.agent_outputs for t in tools if isinstance(t, Haven)), {})
    print_report(results)
    return results


def print_summary(all_results: list[dict]) -> None:
    """Every data set's Haven/restic ratios side by side."""
    if len(all_results) < 2:
        return
    log("")
    log("===== Haven/restic, every data set (steps 1, 3, 4: throughput, >1 Haven faster; step 2: time, <1 Haven faster)")
    names = [f"{r['dataset']} ({r['files']:,} files)" for r in all_results]
    log(f"{'step':32} " + " ".join(f"{name:>24}" for name in names))
    for step, label in STEPS.items():
        cells = [_ratio(step, r["steps"][step].get("haven"), r["steps"][step].get("restic")) for r in all_results]
        log(f"{label:32} " + " ".join(f"{cell:>24}" for cell in cells))
    small = [r for r in all_results if r["dataset"].startswith("small")]
    if len(small) > 1:
        log("")
        log("seconds per 10,000 files (Haven wall / restic wall)")
        for step, label in STEPS.items():
            cells = []
            for r in small:
                per = 10_000 / r["files"]
                haven, restic = r["steps"][step].get("haven"), r["steps"][step].get("restic")
                cells.append("/".join(f"{x['seconds'] * per:.2f}" if x else "-" for x in (haven, restic)))
            log(f"{label:32} " + " ".join(f"{cell:>24}" for cell in cells))


def main(argv: list[str] | None = None) -> int:
    global VERBOSE
    args = build_parser().parse_args(argv)
    VERBOSE = args.verbose
    if args.only != "haven" and shutil.which("restic") is None:
        log(f"error: restic is not installed; install it with: {INSTALL_RESTIC}")
        return 2
    load = busy_cpus()
    if load > 0.3:
        log(f"warning: {load:.1f} of {os.cpu_count()} CPUs busy before starting: other work on this machine "
            "will make the timings noisy")
    runs: list[tuple[str, int | None]] = []
    if args.dataset in ("mixed", "both"):
        runs.append(("mixed", None))
    if args.dataset in ("small", "both"):
        runs += [(f"small-{count}" if len(args.files) > 1 else "small", count) for count in args.files]
    all_results: list[dict] = []
    for name, small_files in runs:
        try:
            results = run_one(args, name, small_files, load)
        except ValueError as error:
            log(f"error: {error}")
            return 2
        if results is None:
            return 1
        all_results.append(results)
    print_summary(all_results)
    if args.json:
        document = all_results[0] if len(all_results) == 1 else {"datasets": all_results}
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        log(f"results written to {args.json}")
    return 0 if all(check["ok"] for r in all_results for check in r["restore_check"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

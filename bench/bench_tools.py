"""The two sides of bench/backup_vs_restic.py: restic and a fresh Haven (server, keystore, agent)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402  (a sibling module, not a package)
    HAVEN_PASSWORD,
    HAVEN_USER,
    INSTALL_RESTIC,
    REPO,
    VENV_BIN,
    BenchError,
    CommandResult,
    _free_port,
    _process_tree_cpu_seconds,
    _process_tree_peak_rss_mib,
    _tail,
    clean_env,
    gunicorn_start,
    keystore_start,
    run,
    tree_bytes,
)

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
        base = clean_env()
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

    def _start_server(self) -> None:
        self.server_env["HAVEN_KEYSTORE_PORT"] = str(_free_port())
        self.keystore = keystore_start(self.server_env, self.workdir / "keystore.log")
        self.server, self.url = gunicorn_start(self.server_env, self.workdir, workers=2, timeout=300)

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

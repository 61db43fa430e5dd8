"""`make test` says what is missing and how to start it before running anything."""
import subprocess
import sys

from tests.support import REPO, free_port


def _preflight(database_url: str, broker_url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tests/preflight.py"], cwd=REPO, capture_output=True, text=True,
                          env={"DATABASE_URL": database_url, "CELERY_BROKER_URL": broker_url, "PATH": "/usr/bin:/bin"})


def test_missing_services_are_named_with_how_to_start_them():
    closed = free_port()
    result = _preflight(f"postgresql://postgres@127.0.0.1:{closed}/haven", f"redis://127.0.0.1:{closed}/0")
    assert result.returncode == 1
    assert "PostgreSQL is not answering" in result.stderr and "pg_ctlcluster" in result.stderr
    assert "Redis is not answering" in result.stderr and "redis-server" in result.stderr


def test_sqlite_or_no_broker_is_refused_for_the_test_suite():
    result = _preflight("sqlite:///x.db", "filesystem://")
    assert result.returncode == 1 and "must point at PostgreSQL" in result.stderr and "must point at Redis" in result.stderr


def test_running_services_pass():
    import os

    assert _preflight(os.environ["DATABASE_URL"], os.environ["CELERY_BROKER_URL"]).returncode == 0

"""Before the suite: are PostgreSQL and Redis there? Say what is missing and how to start it."""
import os
import socket
import sys
from urllib.parse import urlparse


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def main() -> int:
    problems = []
    database = urlparse(os.environ.get("DATABASE_URL", ""))
    if not database.scheme.startswith("postgres"):
        problems.append("DATABASE_URL must point at PostgreSQL for the tests (e.g. postgresql://postgres@127.0.0.1:5432/haven)")
    elif not reachable(database.hostname or "127.0.0.1", database.port or 5432):
        problems.append(f"PostgreSQL is not answering at {database.hostname}:{database.port or 5432}. "
                        "Start it, e.g.: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start")
    broker = urlparse(os.environ.get("CELERY_BROKER_URL", ""))
    if broker.scheme != "redis":
        problems.append("CELERY_BROKER_URL must point at Redis for the tests (e.g. redis://127.0.0.1:6379/15)")
    elif not reachable(broker.hostname or "127.0.0.1", broker.port or 6379):
        problems.append(f"Redis is not answering at {broker.hostname}:{broker.port or 6379}. "
                        "Start it, e.g.: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no")
    for problem in problems:
        print(f"make test: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

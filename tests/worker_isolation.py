"""Give each pytest-xdist worker its own broker database and data folder, before Django starts;
and fast password hashing for the whole suite (config/settings.py).

Loaded with `-p tests.worker_isolation` (pytest.ini), so it runs while pytest parses its options,
before pytest-django reads the settings. pytest-django already gives each worker its own test
database (test_haven_gw0, test_haven_gw1, ...); the Celery broker and HAVEN_DATA_DIR are ours:
two workers on one Redis database would take each other's tasks, and two on one data folder
would share restore results and the embedded keystore's files.
"""
import os
from urllib.parse import urlparse, urlunparse


def _isolate(worker: str) -> None:
    index = int(worker.removeprefix("gw") or 0)
    broker = os.environ.get("CELERY_BROKER_URL", "")
    parsed = urlparse(broker)
    if parsed.scheme == "redis":
        base = int(parsed.path.lstrip("/") or 0)
        database = base - index if base - index >= 0 else base + index  # 15, 14, ... (Redis has 0-15)
        os.environ["CELERY_BROKER_URL"] = urlunparse(parsed._replace(path=f"/{database}"))
    data_dir = os.environ.get("HAVEN_DATA_DIR")
    if data_dir:
        os.environ["HAVEN_DATA_DIR"] = os.path.join(data_dir, worker)


# Inherited by every server and agent process the tests start, so hashes made here verify there.
os.environ.setdefault("HAVEN_INSECURE_FAST_PASSWORD_HASHING_FOR_TESTS", "1")

_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker:
    _isolate(_worker)

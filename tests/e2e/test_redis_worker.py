"""A Celery worker consumes tasks through Redis and writes to PostgreSQL (the production shape)."""
import os
import subprocess

import pytest
from django.db import connection

from accounts.models import WorkerHeartbeat
from accounts.tasks import worker_heartbeat
from tests.support import REPO, VENV_BIN, stop_process, wait_until

pytestmark = pytest.mark.slow


@pytest.mark.django_db(transaction=True)
def test_a_worker_runs_a_task_sent_through_redis(tmp_path):
    assert os.environ["CELERY_BROKER_URL"].startswith("redis://")
    env = {**os.environ, "HAVEN_TEST_DATABASE_NAME": "", "HAVEN_DATA_DIR": str(tmp_path)}
    # The worker must write into this test's database, not the configured one.
    url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + connection.settings_dict["NAME"]
    env["DATABASE_URL"] = url
    worker = subprocess.Popen([str(VENV_BIN / "celery"), "-A", "config", "worker", "--concurrency", "1",
                               "--pool", "solo", "--loglevel", "WARNING"], cwd=REPO, env=env)
    try:
        worker_heartbeat.delay(source="redis-test", nonce="n1")
        wait_until(lambda: WorkerHeartbeat.objects.filter(source="redis-test", nonce="n1").exists(),
                   timeout=60, what="the worker to run the task")
    finally:
        stop_process(worker)

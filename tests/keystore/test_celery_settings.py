"""With acks_late, Redis redelivers a task that is still unacknowledged after the broker's visibility
timeout: a task allowed to run longer than that would run twice at once (a key migration too)."""
import json
import os
import subprocess

from tests.support import PYTHON, REPO


def _redis_transport_options() -> dict:
    """The broker options production gets (a Redis CELERY_BROKER_URL), whatever this run uses."""
    code = ("import json, django; django.setup(); from django.conf import settings; "
            "print(json.dumps(settings.CELERY_BROKER_TRANSPORT_OPTIONS))")
    env = {**os.environ, "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0", "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run([PYTHON, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_redis_visibility_timeout_outlasts_every_task_time_limit():
    from config.celery_app import app

    app.loader.import_default_modules()
    limits = {name: task.time_limit or app.conf.task_time_limit or 0
              for name, task in app.tasks.items() if name.startswith("haven.")}
    assert limits["haven.keystore.migrate"] > 3600  # the reason for this test: longer than Redis's default
    visibility_timeout = _redis_transport_options().get("visibility_timeout", 3600)  # kombu's default: 1 h
    assert visibility_timeout > max(limits.values()), limits

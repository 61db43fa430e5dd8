"""manage.py pingworker — send a task through the broker and wait until a worker has run it."""
import secrets
import time

from django.core.management.base import BaseCommand, CommandError

from accounts.models import WorkerHeartbeat
from accounts.tasks import worker_heartbeat


class Command(BaseCommand):
    help = "Check that a Celery worker consumes tasks (exit 1 if none does within --wait seconds)."

    def add_arguments(self, parser):
        parser.add_argument("--wait", type=float, default=30.0)

    def handle(self, *args, wait: float, **options):
        nonce = secrets.token_hex(8)
        worker_heartbeat.delay(source="ping", nonce=nonce)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if WorkerHeartbeat.objects.filter(source="ping", nonce=nonce).exists():
                self.stdout.write("worker: ok")
                return
            time.sleep(0.3)
        raise CommandError(f"No worker ran the ping task within {wait:.0f}s: is `celery -A config worker` running?")

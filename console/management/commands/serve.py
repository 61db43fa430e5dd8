"""manage.py serve — run the web console, a Celery worker with beat and (without VAULT_ADDR)
the embedded keystore, until interrupted.

The embedded default of `make run`: one command, loopback only. Production runs gunicorn,
`celery worker`, `celery beat` and a real Vault/OpenBao as separate services instead.
"""
import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from keystore.embedded import embedded_keystore_run


class Command(BaseCommand):
    help = "Serve Haven on 127.0.0.1 (web + Celery worker with beat) until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1:8000")
        parser.add_argument("--web-workers", type=int, default=2)

    def handle(self, *args, bind: str, web_workers: int, **options):
        keystore = None
        if not settings.VAULT_ADDR:
            keystore = embedded_keystore_run(settings.HAVEN_KEYSTORE_DIR, settings.HAVEN_KEYSTORE_PORT)
            self.stdout.write(self.style.WARNING(
                f"Embedded keystore (OpenBao) on 127.0.0.1:{settings.HAVEN_KEYSTORE_PORT}. DEV MODE: its unseal "
                f"shares are stored in {settings.HAVEN_KEYSTORE_DIR / 'dev-unseal.json'}; production sets VAULT_ADDR."))
        bin_dir = os.path.dirname(sys.executable)
        web = [os.path.join(bin_dir, "gunicorn"), "config.wsgi", "--bind", bind, "--workers", str(web_workers),
               "--timeout", "300", "--access-logfile", "-"]
        celery = [os.path.join(bin_dir, "celery"), "-A", "config", "worker", "--loglevel", "INFO"]
        worker = [*celery, "--beat", "-Q", "celery,maintenance", "--concurrency", "2", "-n", "maintenance@%h",
                  "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME]
        # Key-handling tasks: one task per child process, so no key outlives its job.
        key_worker = [*celery, "-Q", "keys", "--concurrency", "1", "--max-tasks-per-child", "1", "-n", "keys@%h"]
        children = [subprocess.Popen(cmd, cwd=settings.BASE_DIR) for cmd in (web, worker, key_worker)]
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"Haven is serving on http://{bind} (Ctrl-C stops it)")
        try:
            while not stopping and all(child.poll() is None for child in children):
                time.sleep(0.5)
        finally:
            for child in children:
                if child.poll() is None:
                    child.terminate()
            for child in children:
                try:
                    child.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    child.kill()
        if keystore is not None:
            keystore.terminate()
            keystore.wait(timeout=20)
        failed = [child.args[0] for child in children if child.returncode not in (0, -signal.SIGTERM, None)]
        if failed and not stopping:
            sys.exit(f"stopped because {', '.join(os.path.basename(f) for f in failed)} exited")

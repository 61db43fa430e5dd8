"""Celery tasks of the accounts app: thin wrappers over services."""
from celery import shared_task

from accounts.services import worker_heartbeat_record


@shared_task(name="haven.accounts.worker_heartbeat", soft_time_limit=30, time_limit=60)
def worker_heartbeat(source: str = "beat", nonce: str = "") -> None:
    """Beat sends this every minute; the console shows when a worker last ran it."""
    worker_heartbeat_record(source=source, nonce=nonce)

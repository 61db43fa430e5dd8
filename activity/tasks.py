"""Celery tasks of the activity app: thin wrappers over the detection and export services."""
from celery import shared_task

from activity.connectors import cloud_connectors_pull_all
from activity.detection import detection_run_all
from activity.export import export_run_all


@shared_task(name="haven.activity.detection_run", soft_time_limit=50, time_limit=58)
def detection_run_task() -> dict:
    """Every minute: the detection rules over each organization's new events (activity/detection)."""
    return detection_run_all()


@shared_task(name="haven.activity.export_run", soft_time_limit=50, time_limit=58)
def export_run_task() -> dict:
    """Every minute: queue new alerts (and events) for each SIEM target, send what is due."""
    return export_run_all()


@shared_task(name="haven.activity.connectors_pull", soft_time_limit=240, time_limit=280)
def connectors_pull_task() -> dict:
    """Every five minutes: each cloud-service connector's new audit records (activity/connectors)."""
    return cloud_connectors_pull_all()

"""File-activity events, detection rules and alerts (DESIGN §8)."""
from django.apps import AppConfig


class ActivityConfig(AppConfig):
    name = "activity"

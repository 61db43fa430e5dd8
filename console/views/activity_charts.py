"""The dashboard's file-activity panel: events per day by exfiltration vector (issue 13 item 4),
one small bar chart per vector seen, for administrators and security analysts."""
from collections import namedtuple

from django.core.cache import cache

from activity.alerts import TRIAGE_ROLES
from activity.models import Vector
from activity.search import events_by_vector
from console.views.charts import bar_chart

Point = namedtuple("Point", "day value")
CACHE_SECONDS = 60  # counting two weeks of a large organization's events is not free; a minute old is fine


def vector_charts(user) -> list | None:
    if user.role not in TRIAGE_ROLES:
        return None
    counts = cache.get_or_set(f"console:events-by-vector:{user.organization_id}",
                              lambda: events_by_vector(user), CACHE_SECONDS)
    labels = dict(Vector.choices)
    return [bar_chart(f"{labels.get(vector, vector)}: events per day, last 14 days",
                      [Point(day, value) for day, value in series]) for vector, series in counts.items()]

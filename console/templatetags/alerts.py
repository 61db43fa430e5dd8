"""`{% open_alert_count user as n %}`: the navigation's count of unresolved alerts (0 for people
who do not triage alerts, so the link stays hidden)."""
from django import template

from activity.selectors import open_alert_count

register = template.Library()


@register.simple_tag
def open_alert_count_of(user) -> int:
    return open_alert_count(user) if getattr(user, "is_authenticated", False) else 0

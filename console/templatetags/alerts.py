"""`{% open_alert_count user as n %}`: the navigation's count of unresolved alerts (0 for people
who do not triage alerts, so the link stays hidden)."""
from django import template

from activity.selectors import open_alert_count

register = template.Library()


@register.simple_tag
def open_alert_count_of(user) -> int:
    """A view that already counted (the dashboard) leaves the count on the user."""
    if not getattr(user, "is_authenticated", False):
        return 0
    if getattr(user, "open_alert_count", None) is None:
        user.open_alert_count = open_alert_count(user)
    return user.open_alert_count

"""Dashboard, device authorization and enrollment codes."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.selectors import ORG_WIDE_ROLES, device_for_user, worker_last_seen
from accounts.services import (
    PermissionRefused,
    device_deauthorize,
    device_reauthorize,
    enrollment_code_issue,
)
from activity.alerts import TRIAGE_ROLES
from activity.selectors import open_alerts_preview
from archives import fleet_selectors as fleet
from console.saml.sp import public_base
from console.views.activity_charts import vector_charts
from console.views.charts import bar_chart
from keystore.vault import keystore_status

# The beat heartbeat runs every minute; a worker silent for longer than this is shown as down.
WORKER_HEALTHY_SECONDS = 5 * 60
# Vault's health is asked at most this often per web process fleet (cached in the shared cache).
KEYSTORE_STATUS_CACHE_SECONDS = 30
# The dashboard lists the most recently seen unresolved alerts; the Alerts page has the rest.
DASHBOARD_ALERTS = 5


def _keystore_status_cached() -> str:
    return cache.get_or_set("console:keystore-status", keystore_status, KEYSTORE_STATUS_CACHE_SECONDS)


@login_required
def dashboard(request):
    user = request.user
    counts = fleet.health_counts(user)
    activity = fleet.daily_activity(user)
    running_count, running = fleet.runs_in_progress(user)
    seen = worker_last_seen()
    org_wide = user.role in ORG_WIDE_ROLES
    open_alerts, user.open_alert_count = open_alerts_preview(user, DASHBOARD_ALERTS)  # the navigation reuses it
    return render(request, "console/dashboard.html", {
        "health": [(key, label, counts[key]) for key, label in fleet.HEALTH_LABELS.items()],
        "device_count": sum(counts.values()),
        "storage": fleet.storage_use(user),
        "running_count": running_count,
        "running": running,
        "restores": fleet.restores_in_progress(user),
        "stored_chart": bar_chart("Bytes stored per day, last 30 days", activity["stored_bytes"],
                                  label=filesizeformat),
        "backups_chart": bar_chart("Completed backups per day, last 30 days", activity["completed_backups"]),
        "org_wide": org_wide,
        "keystore_status": _keystore_status_cached() if org_wide else None,
        "worker_last_seen": seen,
        "worker_healthy": seen is not None and (timezone.now() - seen).total_seconds() < WORKER_HEALTHY_SECONDS,
        "triage": user.role in TRIAGE_ROLES,
        "open_alerts": open_alerts,
        "open_alert_count": user.open_alert_count,
        "vector_charts": vector_charts(user),
    })


@login_required
@require_POST
def device_authorization(request, device_id, action):
    device = device_for_user(request.user, device_id)
    service = {"deauthorize": device_deauthorize, "reauthorize": device_reauthorize}.get(action)
    if service is None:
        raise PermissionDenied("Unknown action")
    try:
        service(device=device, actor=request.user)
    except PermissionRefused as refused:
        raise PermissionDenied(str(refused)) from None
    messages.success(request, f"Device {device.name} {action}d.")
    return redirect("console:device", device_id=device.uuid)


@login_required
def enrollment_code(request):
    """A one-time code for `python -m agent enroll --code` (single sign-on users have no password)."""
    code = enrollment_code_issue(user=request.user) if request.method == "POST" else None
    return render(request, "console/enroll.html", {"code": code, "server": public_base(request)})

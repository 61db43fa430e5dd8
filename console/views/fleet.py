"""Dashboard and devices."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Max, Q
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.selectors import (
    audit_events_visible_to,
    device_for_user,
    devices_visible_to,
    worker_last_seen,
)
from accounts.services import (
    PermissionRefused,
    device_deauthorize,
    device_reauthorize,
    enrollment_code_issue,
)
from archives.selectors import archives_visible_to
from console.saml.sp import public_base


@login_required
def dashboard(request):
    user = request.user
    return render(request, "console/dashboard.html", {
        "device_count": devices_visible_to(user).count(),
        "archive_count": archives_visible_to(user).count(),
        "worker_last_seen": worker_last_seen(),
        "recent_events": audit_events_visible_to(user)[:10],
    })


@login_required
def device_list(request):
    devices = devices_visible_to(request.user).annotate(
        last_backup=Max("archives__runs__finished_at", filter=Q(archives__runs__status="completed")),
    ).order_by("owner__email", "name")
    return render(request, "console/devices.html", {"devices": devices})


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
    return redirect("console:devices")


@login_required
def enrollment_code(request):
    """A one-time code for `python -m agent enroll --code` (single sign-on users have no password)."""
    code = enrollment_code_issue(user=request.user) if request.method == "POST" else None
    return render(request, "console/enroll.html", {"code": code, "server": public_base(request)})


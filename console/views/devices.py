"""The device list (search, filter, sort, page, CSV export, bulk deauthorize) and the device page."""
import csv
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.models import Role
from accounts.selectors import device_for_user, devices_visible_to
from accounts.services import PermissionRefused, device_deauthorize
from archives import fleet_selectors as fleet
from archives.device_status import device_backup_now_request
from console.forms import DeviceBulkForm, DeviceFilterForm, DeviceRunsPageForm
from console.views.common import require_admin

DEVICES_PER_PAGE = 50
RUNS_PER_PAGE = 25
COLUMNS = [("name", "Name"), ("user", "User"), ("os", "OS"), ("last_seen", "Last seen"),
           ("last_backup", "Last complete backup"), ("size", "Size")]


def _invalid(form) -> JsonResponse:
    return JsonResponse({"detail": "The request is invalid", "code": "invalid", "errors": form.errors}, status=400)


def _filters(form) -> dict:
    data = form.cleaned_data
    return {"q": data["q"], "health": data["health"], "authorized": data["authorized"],
            "sort": data["sort"] or "name", "dir": data["dir"] or "asc"}


def _filtered_devices(user, filters: dict):
    return fleet.devices_filtered(user, search=filters["q"], health=filters["health"],
                                  authorized=filters["authorized"], sort=filters["sort"],
                                  descending=filters["dir"] == "desc")


def _query(filters: dict, **changes) -> str:
    merged = {**filters, **changes}
    return urlencode({key: value for key, value in merged.items() if value not in ("", None)})


@login_required
@require_GET
def device_list(request):
    form = DeviceFilterForm(request.GET)
    if not form.is_valid():
        return _invalid(form)
    filters = _filters(form)
    page = Paginator(_filtered_devices(request.user, filters), DEVICES_PER_PAGE).get_page(form.cleaned_data["page"])
    columns = []
    for key, label in COLUMNS:
        current = filters["sort"] == key
        flip = "desc" if current and filters["dir"] == "asc" else "asc"
        columns.append({"label": label, "query": _query(filters, sort=key, dir=flip, page=None),
                        "arrow": ("▲" if filters["dir"] == "asc" else "▼") if current else ""})
    context = {
        "form": form, "page": page, "filtered": bool(filters["q"] or filters["health"] or filters["authorized"]), "columns": columns, "filters": filters,
        "query": _query(filters), "page_query": _query(filters, page=page.number),
        "prev_query": _query(filters, page=page.previous_page_number()) if page.has_previous() else "",
        "next_query": _query(filters, page=page.next_page_number()) if page.has_next() else "",
        "health_labels": fleet.HEALTH_LABELS, "is_admin": request.user.role == Role.ORG_ADMIN,
    }
    template = "console/fleet/device_table.html" if request.htmx else "console/devices.html"
    return render(request, template, context)


class _Echo:
    def write(self, value):
        return value


def _cell(value) -> str:
    """Names come from agents: never let a spreadsheet read a cell as a formula."""
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@login_required
@require_GET
def device_export(request):
    form = DeviceFilterForm(request.GET)
    if not form.is_valid():
        return _invalid(form)
    devices = _filtered_devices(request.user, _filters(form))
    writer = csv.writer(_Echo())

    def rows():
        yield writer.writerow(["uuid", "name", "user", "os", "agent_version", "authorized", "last_seen",
                               "last_complete_backup", "health", "stored_bytes"])
        for device in devices.iterator(chunk_size=2000):
            yield writer.writerow([device.uuid, _cell(device.name), _cell(device.owner.email), _cell(device.os),
                                   _cell(device.agent_version), "yes" if device.authorized else "no",
                                   device.last_seen_at.isoformat() if device.last_seen_at else "",
                                   device.last_backup.isoformat() if device.last_backup else "",
                                   device.health, device.stored_bytes])

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="devices.csv"'
    return response


@login_required
@require_POST
def device_bulk_deauthorize(request):
    require_admin(request.user)
    form = DeviceBulkForm(request.POST)
    if not form.is_valid():
        return _invalid(form)
    # Only the actor's organization's devices are found; other ids are ignored like absent ones.
    devices = list(devices_visible_to(request.user).filter(uuid__in=form.cleaned_data["devices"], authorized=True))
    for device in devices:
        device_deauthorize(device=device, actor=request.user)
    messages.success(request, f"{len(devices)} device{'s' if len(devices) != 1 else ''} deauthorized.")
    back = DeviceFilterForm(request.POST)
    query = _query(_filters(back)) if back.is_valid() else ""
    return redirect(reverse("console:devices") + (f"?{query}" if query else ""))


@login_required
@require_GET
def device_page(request, device_id):
    device = device_for_user(request.user, device_id)
    form = DeviceRunsPageForm(request.GET)
    if not form.is_valid():
        return _invalid(form)
    runs = Paginator(fleet.device_runs(device), RUNS_PER_PAGE).get_page(form.cleaned_data["page"])
    user = request.user
    return render(request, "console/device.html", {
        "device": device,
        "archives": fleet.device_archives(user, device),
        "status": fleet.device_status_of(device),
        "last_backup": fleet.device_last_backup(device),
        "runs": runs,
        "is_admin": user.role == Role.ORG_ADMIN,
        "can_backup_now": user.role == Role.ORG_ADMIN or user.pk == device.owner_id,
        # Run errors name files; a security analyst sees no file names (DESIGN §1).
        "show_errors": user.role != Role.SECURITY_ANALYST,
    })


@login_required
@require_POST
def device_backup_now(request, device_id):
    device = device_for_user(request.user, device_id)
    try:
        device_backup_now_request(device=device, actor=request.user)
    except PermissionRefused as refused:
        raise PermissionDenied(str(refused)) from None
    messages.success(request, f"{device.name} will back up at its next status report (within a minute).")
    return redirect("console:device", device_id=device.uuid)

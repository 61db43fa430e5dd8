"""File activity in the console (issue 13): forensic search with CSV export, detection thresholds,
the departing-employee watch list, SIEM export targets and their dead letters. Administrators
and security analysts only (thresholds and export: administrators); everyone else gets 404."""
import csv

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.models import User
from accounts.services import PermissionRefused
from activity.detection_settings import (
    detection_settings_for,
    detection_settings_update,
    watchlist_add,
    watchlist_remove,
)
from activity.export.targets import (
    ExportTargetInvalid,
    export_delivery_retry,
    export_target_create,
    export_target_delete,
)
from activity.models import WatchedUser
from activity.search import CursorInvalid, file_events_filtered, file_events_page
from activity.selectors import (
    dead_letter_for_user,
    dead_letters_visible_to,
    export_target_for_user,
    export_targets_visible_to,
    person_for_triager,
    require_org_admin,
    require_triage,
    watched_users,
)
from console.activity_forms import DetectionSettingsForm, EventSearchForm, ExportTargetForm, WatchForm

CSV_MAX_ROWS = 1_000_000
CSV_COLUMNS = ["occurred_at", "user", "device", "event_type", "path", "dest_path", "file_name", "size", "sha256",
               "category", "vector", "process", "event_id"]


@login_required
@require_GET
def file_activity(request):
    require_triage(request.user)
    form = EventSearchForm(request.GET)
    rows, cursor, status = [], None, 200
    if form.is_valid():
        try:
            rows, cursor = file_events_page(file_events_filtered(request.user, form.cleaned_data),
                                            cursor=form.cleaned_data["cursor"])
        except CursorInvalid as error:
            form.add_error("cursor", str(error))
            status = 400
    else:
        status = 400
    query = request.GET.copy()
    query.pop("cursor", None)
    return render(request, "console/activity/search.html", {
        "form": form, "rows": rows, "next_cursor": cursor, "query": query.urlencode(),
        "first_page": not request.GET.get("cursor")}, status=status)


class _Echo:
    def write(self, value):
        return value


@login_required
@require_GET
def file_activity_export(request):
    """Every matching event as CSV, streamed (read in chunks; never held in memory)."""
    require_triage(request.user)
    form = EventSearchForm(request.GET)
    if not form.is_valid():
        return render(request, "console/activity/search.html", {"form": form, "rows": []}, status=400)
    events = file_events_filtered(request.user, form.cleaned_data).select_related("user", "device")
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(CSV_COLUMNS)
        for event in events[:CSV_MAX_ROWS].iterator(chunk_size=2000):
            yield writer.writerow([event.occurred_at.isoformat(), event.user.email if event.user else "",
                                   event.device.name if event.device else "", event.event_type, event.path,
                                   event.dest_path, event.file_name, "" if event.size is None else event.size,
                                   event.sha256, event.category, event.vector, event.process, event.event_id])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="haven-file-activity.csv"'
    return response


@login_required
def detection_rules(request):
    require_org_admin(request.user)
    config = detection_settings_for(request.user.organization)
    form = DetectionSettingsForm(request.POST or None, instance=config)
    if request.method == "POST":
        if form.is_valid():
            changed = {name: form.cleaned_data[name] for name in form.changed_data}
            detection_settings_update(organization=request.user.organization, actor=request.user, **changed)
            messages.success(request, "Detection thresholds saved.")
            return redirect("console:activity-rules")
        config.refresh_from_db()
    return render(request, "console/activity/rules.html", {"form": form, "config": config},
                  status=400 if form.errors else 200)


@login_required
def watch_list(request):
    require_triage(request.user)
    form = WatchForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        person = User.objects.filter(organization_id=request.user.organization_id,
                                     email__iexact=form.cleaned_data["email"]).first()
        if person is None:
            form.add_error("email", "Nobody with this email in your organization.")
        else:
            watchlist_add(user=person, actor=request.user, source=WatchedUser.Source.CONSOLE,
                          reason=form.cleaned_data["reason"])
            messages.success(request, f"{person.email} is on the watch list.")
            return redirect("console:activity-watch-list")
    return render(request, "console/activity/watch_list.html", {"form": form, "entries": watched_users(request.user)},
                  status=400 if form.errors else 200)


@login_required
@require_POST
def watch_list_remove(request, user_id):
    require_triage(request.user)
    person = person_for_triager(request.user, user_id)
    watchlist_remove(user=person, actor=request.user)
    messages.success(request, f"{person.email} is off the watch list.")
    return redirect("console:activity-watch-list")


@login_required
def export_targets(request):
    require_org_admin(request.user)
    form = ExportTargetForm(request.POST or None, initial={"tls": True})
    secret = ""
    if request.method == "POST" and form.is_valid():
        fields = dict(form.cleaned_data)
        name, kind = fields.pop("name"), fields.pop("kind")
        if kind == "webhook":
            fields = {"url": fields["url"], "payload": fields["payload"], "include_events": fields["include_events"]}
        else:
            fields.pop("url")
        try:
            _, secret = export_target_create(organization=request.user.organization, actor=request.user, name=name,
                                             kind=kind, **fields)
        except ExportTargetInvalid as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Export target {name} added.")
            if not secret:
                return redirect("console:activity-export")
    return render(request, "console/activity/export.html", {
        "form": form, "targets": export_targets_visible_to(request.user), "secret": secret,
        "dead_letters": dead_letters_visible_to(request.user)[:100]}, status=400 if form.errors else 200)


@login_required
@require_POST
def export_target_remove(request, target_id):
    target = export_target_for_user(request.user, target_id)
    export_target_delete(target=target, actor=request.user)
    messages.success(request, f"Export target {target.name} removed.")
    return redirect("console:activity-export")


@login_required
@require_POST
def dead_letter_retry(request, delivery_id):
    delivery = dead_letter_for_user(request.user, delivery_id)
    try:
        export_delivery_retry(delivery=delivery, actor=request.user)
    except PermissionRefused as refused:
        raise PermissionDenied(str(refused)) from None
    messages.success(request, "Queued again; it is sent within a minute.")
    return redirect("console:activity-export")

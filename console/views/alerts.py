"""The console's alert pages (issue 13 item 4): the organization's alerts with filters and pages,
one alert with its facts and history, and the triage actions. Only administrators and security
analysts have these pages; everyone else gets 404, as for an alert of another organization."""
import json
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.services import PermissionRefused
from activity.alerts import TRIAGE_ROLES, alert_assign, alert_note, alert_set_status
from activity.models import Alert
from activity.selectors import (
    alert_assignee_for,
    alert_assignees,
    alert_for_user,
    alert_history,
    alert_kinds,
    alerts_filtered,
    alerts_visible_to,
)
from console.alert_forms import AlertAssignForm, AlertFilterForm, AlertNoteForm, AlertStatusForm

ALERTS_PER_PAGE = 50
STATUS_ACTIONS = {"acknowledge": Alert.Status.ACKNOWLEDGED, "resolve": Alert.Status.RESOLVED,
                  "reopen": Alert.Status.OPEN}
DONE = {"acknowledge": "Acknowledged.", "resolve": "Resolved.", "reopen": "Reopened.", "assign": "Assigned.",
        "note": "Note added."}


def _triager(user) -> None:
    if user.role not in TRIAGE_ROLES:
        raise Http404("No such page")


@login_required
@require_GET
def alert_list(request):
    _triager(request.user)
    assignees = alert_assignees(request.user.organization_id)
    form = AlertFilterForm(request.GET, assignees=assignees)
    if not form.is_valid():
        return JsonResponse({"detail": "The request is invalid", "code": "invalid", "errors": form.errors}, status=400)
    filters = form.filters(request.user)
    alerts = alerts_filtered(alerts_visible_to(request.user), filters)
    page = Paginator(alerts, ALERTS_PER_PAGE).get_page(form.cleaned_data["page"])
    chosen = {key: form.cleaned_data[key] for key in ("status", "kind", "severity", "assignee")
              if form.cleaned_data[key]}
    context = {
        "form": form, "page": page, "chosen": chosen, "kinds": alert_kinds(request.user.organization_id),
        "statuses": form.fields["status"].choices, "severities": form.fields["severity"].choices,
        "assignee_choices": form.assignee_choices,
        "prev_query": urlencode({**chosen, "page": page.previous_page_number()}) if page.has_previous() else "",
        "next_query": urlencode({**chosen, "page": page.next_page_number()}) if page.has_next() else "",
    }
    template = "console/alerts/_table.html" if request.htmx else "console/alerts/list.html"
    return render(request, template, context)


def _facts(detail) -> list[dict]:
    """The detail JSON as rows a person reads: scalars as text, lists of scalars as lists, and
    anything nested as indented JSON."""
    if not isinstance(detail, dict):
        return [{"label": "detail", "json": json.dumps(detail, indent=2, ensure_ascii=False)}]
    rows = []
    for key, value in detail.items():
        label = str(key).replace("_", " ")
        if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
            rows.append({"label": label, "items": [str(v) for v in value]})
        elif isinstance(value, (dict, list)):
            rows.append({"label": label, "json": json.dumps(value, indent=2, ensure_ascii=False)})
        else:
            rows.append({"label": label, "text": "—" if value in (None, "") else str(value)})
    return rows


def _detail(request, alert: Alert, *, error: str = "", status: int = 200, note_form=None):
    return render(request, "console/alerts/detail.html", {
        "alert": alert, "facts": _facts(alert.detail), "history": alert_history(alert),
        "assignees": alert_assignees(alert.organization_id), "note_form": note_form or AlertNoteForm(),
        "error": error,
    }, status=status)


@login_required
@require_GET
def alert_detail(request, alert_id):
    _triager(request.user)
    return _detail(request, alert_for_user(request.user, alert_id))


@login_required
@require_POST
def alert_action(request, alert_id, action):
    """acknowledge, resolve, reopen, assign or note: one service each; a refusal is shown on the
    alert's page with a 4xx status and changes nothing."""
    _triager(request.user)
    alert = alert_for_user(request.user, alert_id)
    if action not in DONE:
        raise Http404("No such action")
    note_form = None
    try:
        if action in STATUS_ACTIONS:
            form = AlertStatusForm(request.POST)
            if not form.is_valid():
                return _detail(request, alert, error="The note is too long.", status=400)
            alert_set_status(alert=alert, actor=request.user, status=STATUS_ACTIONS[action],
                             note=form.cleaned_data["note"])
        elif action == "assign":
            form = AlertAssignForm(request.POST)
            if not form.is_valid():
                return _detail(request, alert, error="Choose someone to assign the alert to.", status=400)
            ref = form.cleaned_data["assignee"]
            assignee = alert_assignee_for(alert.organization_id, ref) if ref else None
            alert_assign(alert=alert, actor=request.user, assignee=assignee)
        else:
            note_form = AlertNoteForm(request.POST)
            if not note_form.is_valid():
                return _detail(request, alert, error="A note needs some text (at most 10,000 characters).",
                               status=400, note_form=note_form)
            alert_note(alert=alert, actor=request.user, text=note_form.cleaned_data["text"])
    except Http404:
        return _detail(request, alert, error="Alerts are assigned to administrators or security analysts of the "
                                             "organization.", status=400)
    except ValueError as invalid:
        return _detail(request, alert, error=str(invalid), status=400, note_form=note_form)
    except PermissionRefused as refused:
        return _detail(request, alert, error=str(refused), status=403)
    messages.success(request, DONE[action])
    return redirect("console:alert", alert_id=alert.uuid)

"""API clients of the public API (DESIGN §12): made here (the key shown once) and revoked here."""
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from accounts.api_clients import (
    SCOPES,
    ApiClientInvalid,
    api_client_create,
    api_client_for_user,
    api_client_revoke,
    api_clients_visible_to,
)
from console.views.common import require_admin

SCOPE_HELP = {
    "devices:read": "list devices, their users, archives and last complete backup",
    "archives:read": "read an archive's backup runs",
    "restores:write": "ask for restores and download them (as you: your right to restore is checked)",
    "users:write": "manage users (reserved: no public endpoint uses it yet)",
    "audit:read": "read the audit and key-access logs",
    "alerts:read": "list alerts and read their history",
    "alerts:write": "acknowledge, resolve, reopen and assign alerts, add notes (as the client)",
    "events:read": "search file-activity events (SOAR, SIEM)",
}


class ApiClientForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the integration is, e.g. “SOAR playbooks”.")
    scopes = forms.MultipleChoiceField(choices=[(s, f"{s} — {SCOPE_HELP[s]}") for s in SCOPES],
                                       widget=forms.CheckboxSelectMultiple)


@login_required
def api_clients(request):
    """Administrators only: the organization's API clients, a new one's key shown once."""
    require_admin(request.user)
    form, new_key, status_code = ApiClientForm(), None, 200
    if request.method == "POST" and request.POST.get("action") == "revoke":
        client = api_client_for_user(request.user, request.POST.get("client"))
        api_client_revoke(client=client, actor=request.user)
        messages.success(request, f"{client.name} was revoked: its key no longer works.")
        return redirect("console:api-clients")
    if request.method == "POST":
        form = ApiClientForm(request.POST)
        if form.is_valid():
            try:
                _, new_key = api_client_create(organization=request.user.organization, name=form.cleaned_data["name"],
                                               scopes=form.cleaned_data["scopes"], created_by=request.user)
                form = ApiClientForm()
            except ApiClientInvalid as invalid:
                form.add_error(None, str(invalid))
        if new_key is None:
            status_code = 400
    clients = api_clients_visible_to(request.user).order_by("revoked_at", "-created_at")
    return render(request, "console/api_clients.html", {
        "form": form, "new_key": new_key, "clients": clients,
        "api_base": request.build_absolute_uri("/api/v1/public/"), "schema_url": request.build_absolute_uri("/api/schema/"),
    }, status=status_code)

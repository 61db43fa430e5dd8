"""The web console: thin views over the apps' selectors and services."""
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Max, Q
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.selectors import audit_events_visible_to, device_for_user, devices_visible_to, worker_last_seen
from accounts.services import PermissionRefused, device_deauthorize, device_reauthorize
from archives.selectors import archives_visible_to
from console.forms import EmailLoginForm, MigrationForm, PrivateKeystoreForm
from keystore.migration import MigrationRefused, keystore_migration_start
from keystore.private_keystores import PrivateKeystoreInvalid, private_keystore_configure
from keystore.selectors import key_accesses_visible_to, keystore_settings_of
from keystore.tasks import keystore_migrate_task
from keystore.vault import keystore_status


class LoginView(auth_views.LoginView):
    template_name = "console/login.html"
    authentication_form = EmailLoginForm
    redirect_authenticated_user = True


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
def key_access_history(request):
    """Users see who touched their own key and why; administrators see their organization's."""
    accesses = key_accesses_visible_to(request.user).select_related("subject")[:500]
    return render(request, "console/key_access.html", {"accesses": accesses})


def _require_admin(user) -> None:
    if user.role != "org_admin":
        raise PermissionDenied("Only an administrator of the organization may change its keystore")


@login_required
def keystore_settings(request):
    """Where the organization's keys live: Haven's keystore, or its own Vault (seed 004)."""
    _require_admin(request.user)
    organization = request.user.organization
    form, migration_form = PrivateKeystoreForm(), MigrationForm()
    if request.method == "POST" and request.POST.get("action") == "configure":
        form = PrivateKeystoreForm(request.POST, request.FILES)
        if form.is_valid():
            data = form.cleaned_data
            try:
                private_keystore_configure(organization=organization, actor=request.user, address=data["address"],
                                           ca_pem=data["ca_pem"], pkcs12=data["pkcs12"], password=data["password"],
                                           cert_role=data["cert_role"])
                messages.success(request, "Haven logged in to your keystore with the uploaded certificate.")
                return redirect("console:keystore")
            except PrivateKeystoreInvalid as invalid:
                form.add_error(None, str(invalid))
    elif request.method == "POST" and request.POST.get("action") == "migrate":
        migration_form = MigrationForm(request.POST)
        if migration_form.is_valid():
            try:
                migration = keystore_migration_start(organization=organization,
                                                     target=migration_form.cleaned_data["target"],
                                                     actor_label=request.user.email)
                transaction.on_commit(lambda: keystore_migrate_task.delay(migration.pk))
                messages.success(request, "The migration started; keys move one at a time.")
                return redirect("console:keystore")
            except MigrationRefused as refused:
                migration_form.add_error(None, str(refused))
    status_code = 400 if request.method == "POST" else 200
    return render(request, "console/keystore.html", {
        "form": form, "migration_form": migration_form, "haven_status": keystore_status(),
        **keystore_settings_of(organization),
    }, status=status_code)

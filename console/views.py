"""The web console: thin views over the apps' selectors and services."""
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied
from django.db import transaction
from django.db.models import Max, Q
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.models import Role
from accounts.selectors import (
    audit_events_visible_to,
    device_for_user,
    devices_visible_to,
    group_for_user,
    groups_visible_to,
    saml_settings_of,
    scim_token_for_user,
    scim_tokens_visible_to,
    worker_last_seen,
)
from accounts.services import (
    PermissionRefused,
    device_deauthorize,
    device_reauthorize,
    enrollment_code_issue,
    group_role_set,
    saml_settings_update,
    scim_token_issue,
    scim_token_revoke,
)
from archives.selectors import archives_visible_to
from console.forms import EmailLoginForm, MigrationForm, PrivateKeystoreForm, SamlSettingsForm
from console.saml.metadata import MetadataError, idp_entity_id, metadata_fetch
from console.saml.sp import public_base, sp_urls
from keystore.migration import MigrationRefused, keystore_migration_start
from keystore.private_keystores import PrivateKeystoreInvalid, keystore_overview, private_keystore_configure
from keystore.selectors import key_accesses_visible_to, keystore_settings_of
from keystore.tasks import keystore_migrate_task
from keystore.vault import keystore_status


class LoginView(auth_views.LoginView):
    template_name = "console/login.html"
    authentication_form = EmailLoginForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.has_error(NON_FIELD_ERRORS, "throttled"):
            response.status_code = 429
        return response


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
                                                     keep_source=migration_form.cleaned_data["keep_source"],
                                                     actor_label=request.user.email)
                transaction.on_commit(lambda: keystore_migrate_task.delay(migration.pk))
                messages.success(request, "The migration started; keys move one at a time.")
                return redirect("console:keystore")
            except MigrationRefused as refused:
                migration_form.add_error(None, str(refused))
    status_code = 400 if request.method == "POST" else 200
    return render(request, "console/keystore.html", {
        "form": form, "migration_form": migration_form, "haven_status": keystore_status(),
        **keystore_settings_of(organization), **keystore_overview(organization),
    }, status=status_code)


@login_required
def enrollment_code(request):
    """A one-time code for `python -m agent enroll --code` (single sign-on users have no password)."""
    code = enrollment_code_issue(user=request.user) if request.method == "POST" else None
    return render(request, "console/enroll.html", {"code": code, "server": public_base(request)})


@login_required
def saml_settings(request):
    """The organization's identity provider, and what to tell that IdP about Haven's SP."""
    _require_admin(request.user)
    organization = request.user.organization
    saml = saml_settings_of(organization)
    form = SamlSettingsForm(initial={
        "enabled": saml.enabled, "metadata_url": saml.idp_metadata_url, "attribute_email": saml.attribute_email,
        "attribute_name": saml.attribute_name, "attribute_groups": saml.attribute_groups,
        "jit_enabled": saml.jit_enabled})
    if request.method == "POST":
        form = SamlSettingsForm(request.POST, request.FILES)
        if form.is_valid():
            data = form.cleaned_data
            try:
                xml = data["metadata_file"] or (metadata_fetch(data["metadata_url"]) if data["metadata_url"]
                                                else saml.idp_metadata_xml)
                entity_id = idp_entity_id(xml) if xml else ""
                if data["enabled"] and not xml:
                    raise MetadataError("upload the identity provider's metadata before turning single sign-on on")
            except MetadataError as error:
                form.add_error(None, str(error))
            else:
                saml_settings_update(
                    organization=organization, actor=request.user, enabled=data["enabled"], idp_metadata_xml=xml,
                    idp_entity_id=entity_id, idp_metadata_url=data["metadata_url"] or "",
                    attribute_email=data["attribute_email"], attribute_name=data["attribute_name"],
                    attribute_groups=data["attribute_groups"], jit_enabled=data["jit_enabled"])
                messages.success(request, "Single sign-on settings saved.")
                return redirect("console:sso")
    return render(request, "console/sso.html", {"form": form, "saml": saml,
                                                "sp": sp_urls(public_base(request), organization)},
                  status=400 if request.method == "POST" else 200)


@login_required
def scim_tokens(request):
    """SCIM bearer tokens of the organization: created here (shown once) and revoked here."""
    _require_admin(request.user)
    organization = request.user.organization
    new_token = None
    if request.method == "POST" and request.POST.get("action") == "create":
        new_token = scim_token_issue(organization=organization, label=request.POST.get("label", "")[:100],
                                     actor=request.user)
    elif request.method == "POST" and request.POST.get("action") == "revoke":
        scim_token_revoke(token=scim_token_for_user(request.user, request.POST.get("token")), actor=request.user)
        messages.success(request, "The token was revoked.")
        return redirect("console:scim-tokens")
    return render(request, "console/scim.html", {
        "tokens": scim_tokens_visible_to(request.user).order_by("-created_at"), "new_token": new_token,
        "groups": groups_visible_to(request.user).order_by("name"), "roles": Role.choices,
        "scim_url": public_base(request) + "/scim/v2"})


@login_required
@require_POST
def group_role(request, group_id):
    """Map a (SCIM-provisioned) group to a Haven role; members' roles follow at once."""
    _require_admin(request.user)
    group = group_for_user(request.user, group_id)
    role = request.POST.get("role", "")
    if role not in {"", *Role.values}:
        raise PermissionDenied("Unknown role")
    group_role_set(group=group, role=role, actor=request.user)
    messages.success(request, f"Members of {group.name} now get the role {role or '(none)'}.")
    return redirect("console:scim-tokens")

"""Single sign-on and SCIM provisioning settings."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.models import Role
from accounts.selectors import (
    group_for_user,
    groups_visible_to,
    saml_settings_of,
    scim_token_for_user,
    scim_tokens_visible_to,
)
from accounts.services import (
    group_role_set,
    saml_settings_update,
    scim_token_issue,
    scim_token_revoke,
)
from console.forms import SamlSettingsForm
from console.saml.metadata import MetadataError, idp_entity_id, metadata_fetch
from console.saml.sp import public_base, sp_urls
from console.views.common import require_admin


@login_required
def saml_settings(request):
    """The organization's identity provider, and what to tell that IdP about Haven's SP."""
    require_admin(request.user)
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
    require_admin(request.user)
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
    require_admin(request.user)
    group = group_for_user(request.user, group_id)
    role = request.POST.get("role", "")
    if role not in {"", *Role.values}:
        raise PermissionDenied("Unknown role")
    group_role_set(group=group, role=role, actor=request.user)
    messages.success(request, f"Members of {group.name} now get the role {role or '(none)'}.")
    return redirect("console:scim-tokens")


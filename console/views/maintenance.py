"""Archive maintenance for org administrators: the retention policy, overrides per user and
device, a dry-run preview, and the recent maintenance runs (docs/maintenance.md)."""
import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render

from accounts.models import Device, User
from archives.maintenance import archive_maintain
from archives.maintenance_selectors import maintenance_runs_of_org, retention_overrides_of_org
from archives.models import Archive
from archives.retention import Retention
from archives.retention_policies import retention_for_org, retention_override_delete, retention_policy_set
from console.maintenance_forms import RetentionForm, RetentionOverrideForm
from console.views.common import require_admin

PREVIEW_ARCHIVES = 20  # a dry run per archive, synchronously: the page previews the first ones


def _target(organization, text: str) -> dict:
    text = text.strip()
    user = User.objects.filter(organization=organization, email__iexact=text).first()
    if user is not None:
        return {"user": user}
    try:
        device = Device.objects.filter(organization=organization, uuid=uuid.UUID(text)).first()
    except ValueError:
        device = None
    if device is None:
        raise ValidationError(f"no user or device {text!r} in this organization")
    return {"device": device}


def _post(request, organization):
    action = request.POST.get("action")
    if action == "policy":
        form = RetentionForm(request.POST)
        if form.is_valid():
            retention_policy_set(organization=organization, **form.cleaned_data)
            messages.success(request, "Retention policy saved.")
            return None, None
        return form, None
    if action == "override":
        form = RetentionOverrideForm(request.POST)
        if form.is_valid():
            values = {name: form.cleaned_data[name] for name in Retention.FIELDS}
            try:
                retention_policy_set(organization=organization, **_target(organization, form.cleaned_data["target"]),
                                     **values)
            except ValidationError as error:
                form.add_error("target", "; ".join(error.messages))
                return None, form
            messages.success(request, "Override saved.")
            return None, None
        return None, form
    if action == "delete-override":
        try:
            found = retention_override_delete(organization=organization, policy_uuid=uuid.UUID(request.POST.get("id", "")))
        except ValueError:
            found = False
        if found:
            messages.success(request, "Override removed.")
        else:
            messages.error(request, "No such override.")
        return None, None
    if action == "preview":
        archives = Archive.objects.filter(organization=organization).select_related("device").order_by("pk")
        request.session["maintenance_preview"] = [
            {"device": archive.device.name, "lines": archive_maintain(archive=archive, dry_run=True).lines}
            for archive in archives[:PREVIEW_ARCHIVES]]
        return None, None
    messages.error(request, "Unknown action.")
    return None, None


@login_required
def maintenance_settings(request):
    require_admin(request.user)
    organization = request.user.organization
    policy_form = override_form = None
    if request.method == "POST":
        policy_form, override_form = _post(request, organization)
        if policy_form is None and override_form is None:
            return redirect("console:maintenance")
    return render(request, "console/maintenance.html", {
        "policy_form": policy_form or RetentionForm(initial=retention_for_org(organization).as_dict()),
        "override_form": override_form or RetentionOverrideForm(),
        "overrides": retention_overrides_of_org(organization),
        "runs": maintenance_runs_of_org(organization),
        "preview": request.session.pop("maintenance_preview", None),
    })

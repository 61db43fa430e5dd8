"""Safeguards in the console: quotas, legal holds, departed-user retention and the mass-change
threshold (one page for administrators), and on a device's page: deep verification on request and
the release of a pruning freeze. Thin: form, access helper, one service, redirect."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import Role, User
from accounts.selectors import device_for_user, user_for_user
from accounts.services import PermissionRefused
from archives.freeze import prune_freeze_release
from archives.holds import legal_hold_place, legal_hold_release, safeguards_set
from archives.quotas import org_quota_set, user_quota_set
from archives.safeguard_selectors import device_safeguards, org_safeguards
from archives.selectors import archives_visible_to
from archives.verify import archive_verify_deep_request
from console.safeguard_forms import LegalHoldForm, SafeguardSettingsForm, UserQuotaForm
from console.views.common import require_admin


def _org_user(actor: User, email: str) -> User | None:
    return User.objects.filter(organization_id=actor.organization_id, email__iexact=email).first()


def _page(request, *, form=None, hold_form=None, quota_form=None, status=200):
    state = org_safeguards(request.user.organization)
    form = form or SafeguardSettingsForm(initial={
        "quota": "" if state.settings.quota_bytes is None else str(state.settings.quota_bytes),
        "quota_soft_percent": state.settings.quota_soft_percent,
        "departed_retention_days": state.settings.departed_retention_days,
        "freeze_share_percent": state.settings.freeze_share_percent,
        "freeze_min_files": state.settings.freeze_min_files})
    return render(request, "console/safeguards.html", {
        "state": state, "form": form, "hold_form": hold_form or LegalHoldForm(),
        "quota_form": quota_form or UserQuotaForm()}, status=status)


def _user_named(request, form):
    """The organization's user the form's email names; else a form error (the page answers 400)."""
    if not form.is_valid():
        return None
    target = _org_user(request.user, form.cleaned_data["email"])
    if target is None:
        form.add_error("email", "No such user in your organization.")
    return target


@login_required
@require_http_methods(["GET", "POST"])
def safeguards(request):
    require_admin(request.user)
    if request.method == "GET":
        return _page(request)
    form = SafeguardSettingsForm(request.POST)
    if not form.is_valid():
        return _page(request, form=form, status=400)
    data, organization = form.cleaned_data, request.user.organization
    with transaction.atomic():
        safeguards_set(organization=organization, actor=request.user,
                       departed_retention_days=data["departed_retention_days"],
                       freeze_share_percent=data["freeze_share_percent"], freeze_min_files=data["freeze_min_files"])
        org_quota_set(organization=organization, actor=request.user, quota_bytes=data["quota"],
                      soft_percent=data["quota_soft_percent"])
    messages.success(request, "Safeguard settings saved.")
    return redirect("console:safeguards")


@login_required
@require_POST
def legal_hold_new(request):
    require_admin(request.user)
    form = LegalHoldForm(request.POST)
    target = _user_named(request, form)
    if target is None:
        return _page(request, hold_form=form, status=400)
    legal_hold_place(user=target, actor=request.user, reason=form.cleaned_data["reason"])
    messages.success(request, f"{target.email} is on legal hold: nothing of their archives is pruned or removed.")
    return redirect("console:safeguards")


@login_required
@require_POST
def legal_hold_change(request, user_id, action):
    require_admin(request.user)
    target = user_for_user(request.user, user_id)
    if action == "release":
        legal_hold_release(user=target, actor=request.user)
        messages.success(request, f"The legal hold on {target.email} is released.")
    elif action == "place":
        legal_hold_place(user=target, actor=request.user)
        messages.success(request, f"{target.email} is on legal hold.")
    else:
        raise PermissionDenied("Unknown action")
    return redirect("console:safeguards")


@login_required
@require_POST
def user_quota(request):
    require_admin(request.user)
    form = UserQuotaForm(request.POST)
    target = _user_named(request, form)
    if target is None:
        return _page(request, quota_form=form, status=400)
    user_quota_set(user=target, actor=request.user, quota_bytes=form.cleaned_data["quota"])
    messages.success(request, f"Quota of {target.email} saved.")
    return redirect("console:safeguards")


@login_required
@require_GET
def device_protection(request, device_id):
    """The device page's protection card, loaded by htmx so the page's own queries stay few."""
    device = device_for_user(request.user, device_id)
    return render(request, "console/safeguards/_device.html", {
        "device": device, "safeguards": device_safeguards(request.user, device),
        "is_admin": request.user.role == Role.ORG_ADMIN})


@login_required
@require_POST
def device_verify(request, device_id):
    device = device_for_user(request.user, device_id)
    try:
        with transaction.atomic():
            for archive in archives_visible_to(request.user).filter(device=device):
                archive_verify_deep_request(archive=archive, actor=request.user)
    except PermissionRefused as refused:
        raise PermissionDenied(str(refused)) from None
    messages.success(request, "A deep verification is queued; damage, if any, raises an alert.")
    return redirect("console:device", device_id=device.uuid)


@login_required
@require_POST
def device_freeze_release(request, device_id):
    device = device_for_user(request.user, device_id)
    released = 0
    try:
        for archive in archives_visible_to(request.user).filter(device=device):
            released += prune_freeze_release(archive=archive, actor=request.user)
    except (PermissionRefused, ValidationError) as refused:
        raise PermissionDenied(str(refused)) from None
    messages.success(request, "Pruning resumes for this device." if released else "Pruning was not frozen.")
    return redirect("console:device", device_id=device.uuid)

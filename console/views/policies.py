"""Backup policy pages (issue 10 item 2): the organization's policy, and overrides per group and
per device, each field with the scope it comes from. Administrators only. Saving calls
archives/policies.py's `policy_set` (validated, audited, all or nothing); `manage.py policy` sets
the same fields from scripts."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.shortcuts import redirect, render

from accounts.selectors import device_for_user, devices_visible_to, group_for_user, groups_visible_to
from archives.policies import policy_reset, policy_set
from archives.policy_models import BackupPolicy
from archives.policy_sources import policy_resolved, policy_sources
from console.policy_forms import PolicyForm
from console.views.common import require_admin


def _save(request, form: PolicyForm, *, group=None, device=None) -> bool:
    """Save the form's changes; on a refusal the errors go on the form and nothing is stored."""
    changes = form.changes()
    if not changes:
        messages.info(request, "Nothing changed.")
        return True
    try:
        policy_set(organization=request.user.organization, group=group, device=device, changes=changes,
                   actor=request.user, actor_label=request.user.email)
    except ValidationError as invalid:
        if hasattr(invalid, "error_dict"):
            for name, errors in invalid.error_dict.items():
                form.add_error(name if name in form.fields else None, errors)
        else:
            form.add_error(None, invalid)
        return False
    messages.success(request, f"Saved: {', '.join(sorted(changes))}.")
    return True


def _policy_page(request, *, template: str, back: str, group=None, device=None, **context):
    organization = request.user.organization
    sources = policy_sources(organization=organization, group=group, device=device)
    form = PolicyForm(sources=sources)
    if request.method == "POST" and request.POST.get("action") == "reset":
        if policy_reset(organization=organization, group=group, device=device, actor=request.user,
                        actor_label=request.user.email):
            messages.success(request, "Override removed: every field inherits again.")
        return redirect(back)
    status = 200
    if request.method == "POST":
        form = PolicyForm(request.POST, sources=sources)
        if form.is_valid() and _save(request, form, group=group, device=device):
            return redirect(back)
        status = 400
    has_row = BackupPolicy.objects.filter(organization=organization, group=group, device=device).exists()
    return render(request, template, {
        "form": form, "rows": form.rows(), "resolved": policy_resolved(organization=organization, group=group,
                                                                        device=device),
        "has_override": has_row, "group": group, "device": device, **context,
    }, status=status)


@login_required
def policy_org(request):
    require_admin(request.user)
    organization = request.user.organization
    query = request.GET.get("device", "").strip()[:200]
    found = []
    if query:
        found = list(devices_visible_to(request.user).filter(Q(name__icontains=query) | Q(owner__email__icontains=query))
                     .order_by("name")[:20])
    overridden = devices_visible_to(request.user).filter(backup_policies__isnull=False).order_by("name")[:200]
    groups = groups_visible_to(request.user).order_by("name")
    with_policy = set(BackupPolicy.objects.filter(organization=organization, group__isnull=False)
                      .values_list("group_id", flat=True))
    return _policy_page(request, template="console/policies/org.html", back=request.path, query=query, found=found,
                        overridden=overridden, groups=[(g, g.pk in with_policy) for g in groups])


@login_required
def policy_group(request, group_id):
    group = group_for_user(request.user, group_id)
    require_admin(request.user)
    return _policy_page(request, template="console/policies/scope.html", back=request.path, group=group)


@login_required
def policy_device(request, device_id):
    device = device_for_user(request.user, device_id)
    require_admin(request.user)
    return _policy_page(request, template="console/policies/scope.html", back=request.path, device=device,
                        groups=list(device.owner.haven_groups.filter(organization=device.organization)
                                    .order_by("name")))

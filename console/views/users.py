"""People of the organization: the list, a person's page, and the administrators' edits."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.mfa import totp_device_confirmed, totp_device_reset
from accounts.people import (
    ScimManaged,
    scim_provisioned,
    user_create,
    user_deactivate_by_admin,
    user_reactivate_by_admin,
    user_role_change,
    users_listed,
)
from accounts.selectors import ORG_WIDE_ROLES, devices_visible_to, user_for_user
from accounts.services import PermissionRefused
from archives.selectors import archives_visible_to
from console.forms import UserCreateForm, UserRoleForm, UserSearchForm
from console.views.common import require_admin
from keystore.selectors import key_accesses_visible_to

PAGE_SIZE = 50


@login_required
def user_list(request):
    """Everyone an org-wide role sees; a plain user sees only themselves (the access helper)."""
    search = UserSearchForm(request.GET)
    data = search.cleaned_data if search.is_valid() else {}
    query, sort = data.get("q") or "", data.get("sort") or "email"
    page = Paginator(users_listed(request.user, search=query, sort=sort), PAGE_SIZE).get_page(data.get("page") or 1)
    return render(request, "console/users/list.html", {
        "page": page, "q": query, "sort": sort, "form": UserCreateForm(),
        "scim_managed": scim_provisioned(request.user.organization),
        "can_manage": request.user.is_org_admin,
    })


@login_required
@require_POST
def user_add(request):
    require_admin(request.user)
    form = UserCreateForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            created = user_create(actor=request.user, email=data["email"], full_name=data["full_name"],
                                  role=data["role"], password=data["password"] or None)
        except ScimManaged as refused:
            messages.error(request, str(refused))
            return redirect("console:users")
        except ValidationError as invalid:
            for field, errors in invalid.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, f"{created.email} was added.")
            return redirect("console:user", user_id=created.uuid)
    page = Paginator(users_listed(request.user), PAGE_SIZE).get_page(1)
    return render(request, "console/users/list.html", {
        "page": page, "q": "", "sort": "email", "form": form, "can_manage": True, "show_create": True,
        "scim_managed": scim_provisioned(request.user.organization)}, status=400)


@login_required
def user_detail(request, user_id):
    """A person: their devices, archives and who used their key, each as the viewer may see."""
    person = user_for_user(request.user, user_id)
    return render(request, "console/users/detail.html", {
        "person": person,
        "devices": devices_visible_to(request.user).filter(owner=person).order_by("name"),
        "archives": archives_visible_to(request.user).filter(user=person).order_by("created_at"),
        "accesses": key_accesses_visible_to(request.user).filter(subject=person).order_by("-seq")[:100],
        "role_form": UserRoleForm(initial={"role": person.role}),
        "has_mfa": totp_device_confirmed(person) is not None,
        "scim_managed": scim_provisioned(request.user.organization),  # the same organization, already loaded
        "can_manage": request.user.is_org_admin,
        "org_wide": request.user.role in ORG_WIDE_ROLES,
    })


_ACTIONS = {"deactivate": user_deactivate_by_admin, "reactivate": user_reactivate_by_admin}


@login_required
@require_POST
def user_change(request, user_id, action):
    """Role changes, (de)activation and resetting a lost authenticator: administrators only."""
    require_admin(request.user)
    person = user_for_user(request.user, user_id)
    try:
        if action == "role":
            form = UserRoleForm(request.POST)
            if not form.is_valid():
                messages.error(request, "Choose one of the roles.")
                return redirect("console:user", user_id=person.uuid)
            user_role_change(actor=request.user, user=person, role=form.cleaned_data["role"])
            messages.success(request, f"{person.email} is now {form.cleaned_data['role'].replace('_', ' ')}.")
        elif action == "mfa-reset":
            totp_device_reset(user=person, actor=request.user)
            messages.success(request, f"Two-factor authentication of {person.email} was reset.")
        elif action in _ACTIONS:
            _ACTIONS[action](actor=request.user, user=person)
            messages.success(request, f"{person.email} was {action}d.")
        else:
            raise PermissionDenied("Unknown action")
    except PermissionRefused as refused:  # ScimManaged included: a message, nothing changed
        messages.error(request, str(refused))
    return redirect("console:user", user_id=person.uuid)

"""People management from the console: the user list, creation, roles, (de)activation, passwords.

While an organization provisions through SCIM (it has a live SCIM token), its identity provider
owns who exists, who is active and — through group → role mappings — roles: the console refuses
those edits rather than let the next SCIM sync silently undo them.
"""
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet

from accounts.domains import domain_owner
from accounts.models import Organization, Role, ScimToken, User
from accounts.selectors import users_visible_to
from accounts.services import PermissionRefused, audit_record, user_deactivate, user_reactivate

USER_SORTS = {
    "email": "email", "-email": "-email", "role": "role", "-role": "-role",
    "last_login": "last_login", "-last_login": "-last_login", "devices": "device_count", "-devices": "-device_count",
}


class ScimManaged(PermissionRefused):
    """The organization's identity provider owns this through SCIM."""


def scim_provisioned(organization: Organization) -> bool:
    return ScimToken.objects.filter(organization=organization, revoked_at__isnull=True).exists()


def users_listed(actor: User, *, search: str = "", sort: str = "email") -> QuerySet[User]:
    """The console's user table: the actor's visible users with their device count, one query."""
    users = users_visible_to(actor).annotate(device_count=Count("devices"))
    if search:
        users = users.filter(Q(email__icontains=search) | Q(full_name__icontains=search))
    order = USER_SORTS.get(sort, "email")
    field = order.lstrip("-")
    # Never-signed-in people sort last both ways: "last login" means the most recent first.
    expression = F(field).desc(nulls_last=True) if order.startswith("-") else F(field).asc(nulls_last=True)
    return users.order_by(expression, "email")


def _require_admin_of(actor: User, organization: Organization) -> None:
    if actor.organization_id != organization.pk or actor.role != Role.ORG_ADMIN:
        raise PermissionRefused("Only an administrator of this organization may do that")


def _refuse_if_scim(organization: Organization, what: str) -> None:
    if scim_provisioned(organization):
        raise ScimManaged(f"{what}: this organization provisions its users through SCIM, so its identity "
                          "provider manages that (revoke the SCIM token on the Provisioning page to manage "
                          "people here)")


def _refuse_last_admin(user: User) -> None:
    others = User.objects.filter(organization_id=user.organization_id, role=Role.ORG_ADMIN,
                                 is_active=True).exclude(pk=user.pk)
    if user.role == Role.ORG_ADMIN and not others.exists():
        raise PermissionRefused("The organization would have no active administrator left")


@transaction.atomic
def user_create(*, actor: User, email: str, full_name: str, role: str, password: str | None) -> User:
    """A new person in the actor's organization. Without a password they sign in through SSO only."""
    organization = actor.organization
    _require_admin_of(actor, organization)
    _refuse_if_scim(organization, "Cannot create users")
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}"})
    email = User.objects.normalize_email(email).strip().lower()
    domain = email.rpartition("@")[2]
    if User.objects.filter(email__iexact=email).exists() or domain_owner(domain, other_than=organization):
        # Same answer whoever holds it, and for a domain another organization verified (its people
        # sign in through that organization's IdP): an administrator learns nothing about other tenants.
        raise ValidationError({"email": "This email address cannot be used."})
    user = User(organization=organization, email=email, full_name=full_name.strip(), role=role)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    audit_record(organization=organization, actor=actor, action="user.create", target_type="user",
                 target_uuid=user.uuid, detail={"email": email, "role": role, "password": bool(password)})
    return user


@transaction.atomic
def user_role_change(*, actor: User, user: User, role: str) -> User:
    _require_admin_of(actor, user.organization)
    _refuse_if_scim(user.organization, "Cannot change roles")
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}"})
    user = User.objects.select_for_update().get(pk=user.pk)
    if role == user.role:
        return user
    if role != Role.ORG_ADMIN:
        _refuse_last_admin(user)
    previous, user.role = user.role, role
    user.save(update_fields=["role"])
    audit_record(organization=user.organization, actor=actor, action="user.role", target_type="user",
                 target_uuid=user.uuid, detail={"from": previous, "to": role})
    return user


@transaction.atomic
def user_deactivate_by_admin(*, actor: User, user: User) -> User:
    """As SCIM deactivation: the user cannot sign in and every device is deauthorized at once."""
    _require_admin_of(actor, user.organization)
    _refuse_if_scim(user.organization, "Cannot deactivate users")
    if user.pk == actor.pk:
        raise PermissionRefused("You cannot deactivate yourself")
    _refuse_last_admin(user)
    return user_deactivate(user=user, actor_label=actor.email)


@transaction.atomic
def user_reactivate_by_admin(*, actor: User, user: User) -> User:
    """The user may sign in again; devices stay deauthorized until an administrator reauthorizes them."""
    _require_admin_of(actor, user.organization)
    _refuse_if_scim(user.organization, "Cannot reactivate users")
    if user.scim_deleted_at is not None:
        raise PermissionRefused("This user was deleted by the identity provider")
    return user_reactivate(user=user, actor_label=actor.email)


def password_change(*, user: User, new_password: str) -> User:
    """Set the user's own new password (already validated by the form); audited, never the value."""
    user.set_password(new_password)
    user.save(update_fields=["password"])
    audit_record(organization=user.organization, actor=user, action="user.password_change", target_type="user",
                 target_uuid=user.uuid)
    return user

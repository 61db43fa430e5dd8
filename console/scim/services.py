"""Writes SCIM provisioning makes: users and groups of one organization, audited.

Deactivation and reactivation go through accounts' services, which deauthorize every device at
once and never reauthorize one; group changes recompute members' roles from the groups' roles.
"""
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_scim import exceptions

from accounts.models import Group, Organization, User
from accounts.services import audit_record, user_deactivate, user_reactivate, user_role_from_groups
from activity.detection_settings import watchlist_on_deactivation
from console.scim.selectors import scim_groups, scim_users, scim_verified_domains, user_holding_email

USER_FIELDS = ["email", "full_name", "scim_external_id", "scim_username"]


class Conflict(exceptions.IntegrityError):
    """409 uniqueness, for a value another resource of the same organization holds."""

    def __init__(self, what: str):
        super().__init__(f"{what} is already taken", scim_type="uniqueness")


class AddressRefused(exceptions.BadRequestError):
    """400 for an address this organization may not provision: outside its verified domains, or
    held by a user of another organization. One answer for both, so a token learns nothing about
    other tenants' users and cannot claim their unused addresses."""

    def __init__(self):
        super().__init__("userName must be an email address in one of the organization's verified domains "
                         "(a Haven operator verifies them)", scim_type="invalidValue")


def _save(instance, **kwargs) -> None:
    """A database uniqueness race ends as 409 (or the refusal above), not 500; a savepoint keeps
    the transaction usable."""
    try:
        with transaction.atomic():
            instance.save(**kwargs)
    except IntegrityError:
        if isinstance(instance, User):
            holder = user_holding_email(instance.email)
            if holder is not None and holder.organization_id != instance.organization_id:
                raise AddressRefused() from None
        raise Conflict("userName" if isinstance(instance, User) else "displayName") from None


def _user_holding(email: str, organization: Organization, user: User) -> User | None:
    """The user to write: `user`, or a user of this org that SCIM retired with this email (the IdP
    assigns the person again: Haven relinks the same account, keys and archives).

    A new address (creation, or a userName change) must be in the org's verified domains; an
    address held by another organization's user gets the same answer as an unverified domain;
    another holder in this organization is a 409."""
    if user.pk is None or email != user.email.lower():
        if email.rpartition("@")[2] not in scim_verified_domains(organization):
            raise AddressRefused()
    holder = user_holding_email(email)
    if holder is None or holder.pk == user.pk:
        return user
    if holder.organization_id != organization.pk:
        raise AddressRefused()
    if user.pk is None and holder.scim_deleted_at is not None:
        return holder
    raise Conflict("userName")


@transaction.atomic
def scim_user_save(*, organization: Organization, user: User, fields: dict, active: bool | None,
                   actor_label: str) -> User:
    """Create or update a user from SCIM `fields` (email, full_name, scim_external_id)."""
    target = _user_holding(fields["email"], organization, user)
    changed = sorted(name for name, value in fields.items() if getattr(target, name) != value)
    for name, value in fields.items():
        setattr(target, name, value)
    target.scim_username = target.email
    if target.pk is None:
        target.organization = organization
        target.set_unusable_password()  # SCIM people sign in through the IdP, never with a Haven password
        _save(target)
        audit_record(organization=organization, actor=None, actor_label=actor_label, action="user.create",
                     target_type="user", target_uuid=target.uuid, detail={"email": target.email, "via": "scim"})
    else:
        relinked = target.scim_deleted_at is not None
        target.scim_deleted_at = None
        _save(target, update_fields=USER_FIELDS + ["scim_deleted_at"])
        if relinked or changed:
            audit_record(organization=organization, actor=None, actor_label=actor_label,
                         action="user.scim_relink" if relinked else "user.update", target_type="user",
                         target_uuid=target.uuid, detail={"email": target.email, "changed": changed})
    if active is False:
        target = user_deactivate(user=target, actor_label=actor_label)
        watchlist_on_deactivation(user=target, actor_label=actor_label)
    elif active is True:
        target = user_reactivate(user=target, actor_label=actor_label)
    return target


@transaction.atomic
def scim_user_retire(*, user: User, actor_label: str) -> None:
    """SCIM DELETE: deactivate (every device deauthorized), leave the IdP's groups, retire the SCIM
    id. The row, keys and archives stay for administrators and restores."""
    user = user_deactivate(user=user, actor_label=actor_label)
    watchlist_on_deactivation(user=user, actor_label=actor_label)
    groups = list(user.haven_groups.all())
    user.haven_groups.clear()
    user_role_from_groups(user=user)
    User.objects.filter(pk=user.pk).update(scim_deleted_at=timezone.now())
    audit_record(organization=user.organization, actor=None, actor_label=actor_label, action="user.scim_delete",
                 target_type="user", target_uuid=user.uuid, detail={"groups_left": [g.name for g in groups]})


@transaction.atomic
def scim_group_save(*, organization: Organization, group: Group, member_ids: set[str] | None,
                    actor_label: str) -> Group:
    """Create or update a group; `member_ids` (SCIM ids, None: unchanged) must all be users of
    this organization, and every member who joins or leaves gets their role recomputed."""
    if scim_groups(organization).filter(name=group.name).exclude(pk=group.pk).exists():
        raise Conflict("displayName")
    is_new = group.pk is None
    group.organization = organization
    _save(group)
    detail = {"name": group.name}
    if member_ids is not None:
        members = list(scim_users(organization).filter(scim_id__in=member_ids))
        if len(members) != len(member_ids):
            raise exceptions.BadRequestError("members must be users of this organization", scim_type="invalidValue")
        before = {user.pk: user for user in group.members.all()}
        after = {user.pk: user for user in members}
        group.members.set(members)
        for pk in before.keys() ^ after.keys():
            user_role_from_groups(user=before.get(pk) or after[pk])
        detail.update(added=[after[pk].email for pk in after.keys() - before.keys()],
                      removed=[before[pk].email for pk in before.keys() - after.keys()])
    audit_record(organization=organization, actor=None, actor_label=actor_label,
                 action="group.create" if is_new else "group.update", target_type="group",
                 target_uuid=group.uuid, detail=detail)
    return group


@transaction.atomic
def scim_group_delete(*, group: Group, actor_label: str) -> None:
    members = list(group.members.all())
    audit_record(organization=group.organization, actor=None, actor_label=actor_label, action="group.delete",
                 target_type="group", target_uuid=group.uuid, detail={"name": group.name})
    group.delete()
    for user in members:
        user_role_from_groups(user=user)

"""The only way SCIM reaches users and groups: always through the token's organization.

Every SCIM read (GET by id, lists, filters, member references) and therefore every write starts
from these querysets, so an identity provider never sees or touches another tenant's rows.
"""
from django.db.models import QuerySet

from accounts.models import Group, Organization, User


def scim_users(organization: Organization) -> QuerySet[User]:
    """RFC 7644 §3.6: a deleted resource answers 404 and leaves every query result. Haven keeps
    the person (keys, archives, audit trail), so a SCIM DELETE only marks `scim_deleted_at`."""
    return User.objects.filter(organization=organization, scim_deleted_at__isnull=True)


def scim_groups(organization: Organization) -> QuerySet[Group]:
    return Group.objects.filter(organization=organization)


def scim_queryset(model, organization: Organization) -> QuerySet:
    return scim_users(organization) if model is User else scim_groups(organization)

"""The only way SCIM reaches users and groups: always through the token's organization.

Every SCIM read (GET by id, lists, filters, member references) and therefore every write starts
from these querysets, so an identity provider never sees or touches another tenant's rows.
"""
from django.db.models import QuerySet

from accounts.models import Group, Organization, SamlSettings, User


def scim_users(organization: Organization) -> QuerySet[User]:
    """RFC 7644 §3.6: a deleted resource answers 404 and leaves every query result. Haven keeps
    the person (keys, archives, audit trail), so a SCIM DELETE only marks `scim_deleted_at`."""
    return User.objects.filter(organization=organization, scim_deleted_at__isnull=True)


def scim_groups(organization: Organization) -> QuerySet[Group]:
    return Group.objects.filter(organization=organization)


def scim_queryset(model, organization: Organization) -> QuerySet:
    return scim_users(organization) if model is User else scim_groups(organization)


def scim_verified_domains(organization: Organization) -> list[str]:
    """The email domains a Haven operator verified the organization owns (kept with its SAML
    settings): the only domains its IdP may create users in or move users to."""
    saml = SamlSettings.objects.filter(organization=organization).first()
    return saml.domains() if saml else []


def user_holding_email(email: str) -> User | None:
    """Whoever holds the address, in any organization (emails are unique across Haven)."""
    return User.objects.filter(email__iexact=email).first()

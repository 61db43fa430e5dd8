"""Reads of the keystore app: escrow state and key-access history, scoped like everything else."""
from django.db.models import QuerySet

from accounts.models import Role, User
from keystore.models import KeyAccess, UserKey


def escrowed_key_of(user: User) -> UserKey | None:
    return UserKey.objects.filter(user=user).first()


def key_accesses_visible_to(actor: User) -> QuerySet[KeyAccess]:
    """Users see their own key-access history; administrators their organization's."""
    accesses = KeyAccess.objects.filter(organization_id=actor.organization_id).select_related("subject")
    if actor.role == Role.ORG_ADMIN:
        return accesses
    return accesses.filter(subject=actor)

"""Reads of the keystore app: escrow state and key-access history, scoped like everything else."""
from django.db.models import QuerySet

from accounts.models import Role, User
from keystore.models import KeyAccess, KeystoreMigration, PrivateKeystore, UserKey


def escrowed_key_of(user: User) -> UserKey | None:
    return UserKey.objects.filter(user=user).first()


def key_accesses_visible_to(actor: User) -> QuerySet[KeyAccess]:
    """Users see their own key-access history; administrators their organization's."""
    accesses = KeyAccess.objects.filter(organization_id=actor.organization_id).select_related("subject")
    if actor.role == Role.ORG_ADMIN:
        return accesses
    return accesses.filter(subject=actor)


def keystore_settings_of(organization) -> dict:
    """What the console's keystore page shows about one organization."""
    keys = UserKey.objects.filter(organization=organization, state=UserKey.State.ESCROWED)
    return {
        "private_keystore": PrivateKeystore.objects.filter(organization=organization).first(),
        "migrations": KeystoreMigration.objects.filter(organization=organization).order_by("-started_at")[:10],
        "keys_in_haven": keys.filter(location=UserKey.Location.HAVEN).count(),
        "keys_in_private": keys.filter(location=UserKey.Location.PRIVATE).count(),
    }

"""Reads of the keystore app: escrow state and key-access history, scoped like everything else."""
from django.db.models import QuerySet

from accounts.models import Organization, Role, User
from keystore.models import KeyAccess, KeystoreMigration, KeystoreSnapshot, PrivateKeystore, UserKey


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


def keystore_snapshots() -> QuerySet[KeystoreSnapshot]:
    """Every recorded snapshot of Haven's keystore, newest first (an installation-wide record)."""
    return KeystoreSnapshot.objects.order_by("-taken_at", "-id")


def keystore_snapshot_newest(*states: str) -> KeystoreSnapshot | None:
    return keystore_snapshots().filter(state__in=states).first()


def organizations_with_haven_keys() -> QuerySet[Organization]:
    """Organizations with a key in Haven's keystore: a snapshot of it holds their keys."""
    return Organization.objects.filter(user_keys__state=UserKey.State.ESCROWED,
                                       user_keys__location=UserKey.Location.HAVEN).distinct().order_by("pk")


def haven_keys_escrowed_since(when) -> QuerySet[UserKey]:
    """Keys written to Haven's keystore at or after `when`: a snapshot started then may lack them."""
    return UserKey.objects.filter(state=UserKey.State.ESCROWED, location=UserKey.Location.HAVEN,
                                  escrowed_at__gte=when).select_related("user", "organization").order_by("escrowed_at")


def haven_keys_oldest_escrow():
    """When the oldest key now in Haven's keystore was escrowed (None: it holds none)."""
    row = UserKey.objects.filter(state=UserKey.State.ESCROWED, location=UserKey.Location.HAVEN,
                                 escrowed_at__isnull=False).order_by("escrowed_at").first()
    return row.escrowed_at if row else None

"""An organization's own Vault (seed 004): set it up from an uploaded PKCS12, renew its client
certificate before it expires. See docs/private-keystore.md for the customer's side."""
import base64
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlparse

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization, SamlServiceProviderKey, User
from accounts.network import HostUnresolvable, host_is_public
from accounts.selectors import org_admin_emails
from accounts.services import audit_record
from formats.keys import KEY_SIZE, key_id_for
from keystore.engines import private_vault_config
from keystore.models import KeyAccess, KeystoreMigration, PrivateKeystore, UserKey
from keystore.pkcs12 import MAX_PKCS12_BYTES, Pkcs12Error, pkcs12_build, pkcs12_load
from keystore.private_vault import (
    PrivateVaultConfig,
    PrivateVaultError,
    PrivateVaultSession,
    cert_auth_delete,
    cert_auth_register,
    issue_client_certificate,
    private_vault_health,
)
from keystore.sealing import (
    SP_KEY_PURPOSE,
    StorageKeyMissing,
    is_current,
    private_keystore_owner,
    seal,
    sealing_check,
    sp_key_owner,
    storage_key_problem,
    unseal,
)
from keystore.services import key_access_record, key_path

logger = logging.getLogger(__name__)
RENEW_BEFORE = timedelta(days=30)


class PrivateKeystoreInvalid(ValueError):
    """The upload or the Vault it points at cannot be used; the message says why, for an admin."""


def private_keystore_configure(*, organization: Organization, actor: User, address: str, ca_pem: str,
                               pkcs12: bytes, password: str, cert_role: str = "haven-initial") -> PrivateKeystore:
    """Check the upload by logging in with it, then store it sealed. Not used until a migration.

    While keys live in the current private keystore, new settings (a renewed PKCS12, a new address
    or CA of the *same* Vault) are accepted only if a login with them reads every one of those keys
    (each read audited); otherwise the keys would become unreadable. Refused while a migration
    runs. The checks happen before the database transaction (they talk to a customer-chosen
    address and may take seconds).
    """
    if _migration_running(organization):
        raise PrivateKeystoreInvalid("A key migration is running: wait until it has finished.")
    try:
        sealing_check()
    except StorageKeyMissing as error:
        raise PrivateKeystoreInvalid(f"Haven cannot store the certificate safely: {error.reason}.") from None
    if len(pkcs12) > MAX_PKCS12_BYTES:
        raise PrivateKeystoreInvalid("The PKCS12 file is larger than 5 MB.")
    living = _keys_in_private(organization)
    try:
        private_keystore_address_check(address)
        identity = pkcs12_load(pkcs12, password)
        config = PrivateVaultConfig(address=address, ca_pem=ca_pem.encode(), identity=identity, cert_role=cert_role)
        with PrivateVaultSession(config) as session:
            session.token_ttl()
            _every_key_readable(session, living, actor)
    except (Pkcs12Error, ValueError, PrivateVaultError) as error:
        if living:
            raise PrivateKeystoreInvalid(
                f"{str(error).rstrip('.')}. {len(living)} key(s) live in your keystore: new settings are accepted "
                "only if they read every one of them; otherwise migrate them back to Haven's keystore before "
                "replacing it.") from None
        raise PrivateKeystoreInvalid(str(error)) from None
    with transaction.atomic():
        existing = PrivateKeystore.objects.select_for_update().filter(organization=organization).first()
        if _migration_running(organization) or set(_keys_in_private(organization)) - set(living):
            raise PrivateKeystoreInvalid("Keys moved meanwhile (a migration or an escrow); try again.")
        keystore = _private_keystore_store(existing or PrivateKeystore(organization=organization), address, ca_pem,
                                           pkcs12, password, cert_role, identity)
    audit_record(organization=organization, actor=actor, action="keystore.private.configure", target_type="keystore",
                 detail={"address": address, "certificate": identity.subject, "fingerprint": identity.fingerprint_sha256,
                         "expires": identity.not_valid_after.isoformat(), "replaced": existing is not None,
                         "keys_checked": len(living)})
    return keystore


def private_keystore_address_check(address: str) -> None:
    """Public addresses only, unless the operator allows private ones (as for SAML metadata URLs): the
    console must not become a way to probe Haven's internal network."""
    host = urlparse(address).hostname
    if not host:
        raise PrivateKeystoreInvalid(f"not a keystore address: {address!r}")
    if settings.HAVEN_PRIVATE_KEYSTORE_ALLOW_PRIVATE:
        return
    try:
        public = host_is_public(host)
    except HostUnresolvable as error:
        raise PrivateKeystoreInvalid(str(error)) from None
    if not public:
        raise PrivateKeystoreInvalid(f"{host} is not a public address; Haven only connects to keystores at public "
                                     "addresses (an operator can allow private ones: "
                                     "HAVEN_PRIVATE_KEYSTORE_ALLOW_PRIVATE=1)")


def _migration_running(organization: Organization) -> bool:
    return KeystoreMigration.objects.filter(organization=organization, state=KeystoreMigration.State.RUNNING).exists()


def _keys_in_private(organization: Organization) -> list[UserKey]:
    return list(UserKey.objects.filter(organization=organization, location=UserKey.Location.PRIVATE)
                .select_related("user", "user__organization").order_by("pk"))


def _every_key_readable(session: PrivateVaultSession, rows: list[UserKey], actor: User) -> None:
    """Read each key living in the private keystore with the new settings (audited, one at a time)."""
    job = f"keystore-settings-check-{uuid.uuid4()}"
    for row in rows:
        record = {"subject": row.user, "purpose": KeyAccess.Purpose.MIGRATION, "actor": actor,
                  "actor_label": actor.email, "job": job}
        key_access_record(outcome=KeyAccess.Outcome.STARTED, **record,
                          detail=f"checking that the new keystore settings read key {row.key_id}")
        try:
            stored = session.read_key(key_path(row.user)) or {}
            key = base64.b64decode(stored.get("key", ""))
        except (PrivateVaultError, ValueError) as error:
            key_access_record(outcome=KeyAccess.Outcome.FAILED, **record, detail=str(error))
            raise PrivateVaultError(f"with the new settings the key of {row.user.email} cannot be read ({error})")
        if len(key) != KEY_SIZE or key_id_for(key) != row.key_id:
            key_access_record(outcome=KeyAccess.Outcome.FAILED, **record, detail="missing or different at the address")
            raise PrivateVaultError(f"with the new settings the key of {row.user.email} is missing or different")
        key_access_record(outcome=KeyAccess.Outcome.SUCCEEDED, **record, detail=f"key {row.key_id} readable")


def _private_keystore_store(keystore, address, ca_pem, pkcs12, password, cert_role, identity) -> PrivateKeystore:
    owner = private_keystore_owner(keystore)
    keystore.address, keystore.ca_pem, keystore.cert_role = address, ca_pem, cert_role
    keystore.pkcs12_sealed = seal("pkcs12", pkcs12, owner=owner)
    keystore.password_sealed = seal("pkcs12-password", password.encode(), owner=owner)
    keystore.cert_subject, keystore.cert_not_after = identity.subject[:300], identity.not_valid_after
    keystore.cert_fingerprint, keystore.renewal_error = identity.fingerprint_sha256, ""
    keystore.save()
    return keystore


def private_keystore_reseal() -> int:
    """Rewrite every sealed secret not yet in format v2 under the storage key set now (private
    keystores' PKCS12 and password, the SAML SP private key); returns how many rows changed."""
    count = 0
    for row in SamlServiceProviderKey.objects.all():
        owner = sp_key_owner(row)
        if not is_current(SP_KEY_PURPOSE, row.key_sealed, owner=owner):
            row.key_sealed = seal(SP_KEY_PURPOSE, unseal(SP_KEY_PURPOSE, row.key_sealed, owner=owner), owner=owner)
            row.save(update_fields=["key_sealed"])
            count += 1
    for keystore in PrivateKeystore.objects.select_related("organization"):
        owner = private_keystore_owner(keystore)
        fields = {"pkcs12": "pkcs12_sealed", "pkcs12-password": "password_sealed"}
        stale = [p for p, f in fields.items() if not is_current(p, getattr(keystore, f), owner=owner)]
        for purpose in stale:
            field = fields[purpose]
            setattr(keystore, field, seal(purpose, unseal(purpose, getattr(keystore, field), owner=owner), owner=owner))
        if stale:
            keystore.save(update_fields=[fields[p] for p in stale])
            count += 1
    return count


@dataclass
class RenewalResult:
    renewed: bool
    entry: str
    not_after: datetime


def _common_name(subject: str) -> str:
    for part in subject.split(","):
        name, _, value = part.strip().partition("=")
        if name.upper() == "CN":
            return value
    raise PrivateKeystoreInvalid(f"the client certificate has no common name: {subject}")


def private_keystore_renew(*, keystore: PrivateKeystore, now: datetime | None = None,
                           force: bool = False) -> RenewalResult:
    """Renew the client certificate if it expires within 30 days.

    Order matters, so that a failure at any step leaves a working login: issue a new certificate
    from the customer's PKI, register it under a *new* auth/cert/certs entry, prove a login with
    it, store it, and only then remove the old entry.
    """
    now = now or timezone.now()
    if not force and keystore.cert_not_after - now > RENEW_BEFORE:
        return RenewalResult(False, keystore.cert_role, keystore.cert_not_after)
    private_keystore_address_check(keystore.address)  # checked at upload too; the name may resolve elsewhere now
    config = private_vault_config(keystore)
    owner = private_keystore_owner(keystore)
    password = unseal("pkcs12-password", keystore.password_sealed, owner=owner).decode()
    with PrivateVaultSession(config) as session:
        token = session.call(lambda client: client.auth.token.lookup_self(), what="the token lookup")["data"]
        policies = [p for p in token.get("policies", []) if p != "default"]
        identity = issue_client_certificate(session, common_name=_common_name(config.identity.subject),
                                            ttl=settings.HAVEN_PRIVATE_CERT_TTL)
        new_entry = f"haven-{now:%Y%m%d%H%M%S}-{secrets.token_hex(3)}"  # two renewals never share a name
        cert_auth_register(session, new_entry, identity.cert_pem, policies, token.get("creation_ttl") or 3600)
        new_config = PrivateVaultConfig(address=config.address, ca_pem=config.ca_pem, identity=identity,
                                        cert_role=new_entry)
        with PrivateVaultSession(new_config) as proof:
            proof.token_ttl()
            old_entry = keystore.cert_role
            keystore.pkcs12_sealed = seal("pkcs12", pkcs12_build(identity.cert_pem, identity.key_pem,
                                                                 identity.chain_pem, password), owner=owner)
            keystore.cert_role, keystore.cert_not_after = new_entry, identity.not_valid_after
            keystore.cert_subject, keystore.renewed_at, keystore.renewal_error = identity.subject[:300], now, ""
            keystore.cert_fingerprint = identity.fingerprint_sha256
            keystore.save(update_fields=["pkcs12_sealed", "cert_role", "cert_not_after", "cert_subject",
                                         "cert_fingerprint", "renewed_at", "renewal_error", "updated_at"])
            try:
                cert_auth_delete(proof, old_entry)
            except PrivateVaultError as error:  # renewed all the same: the old entry just lingers
                logger.warning("renewed, but could not remove the old login entry %s: %s", old_entry, error)
    audit_record(organization=keystore.organization, actor=None, actor_label="certificate renewal",
                 action="keystore.private.renew", target_type="keystore",
                 detail={"entry": new_entry, "removed": old_entry, "expires": identity.not_valid_after.isoformat()})
    return RenewalResult(True, new_entry, identity.not_valid_after)


def private_keystore_renewal_failed(*, keystore: PrivateKeystore, error: Exception) -> None:
    """Record the failure and tell the organization's administrators; the task retries."""
    message = str(error)[:500]
    PrivateKeystore.objects.filter(pk=keystore.pk).update(renewal_error=message)
    audit_record(organization=keystore.organization, actor=None, actor_label="certificate renewal",
                 action="keystore.private.renew_failed", target_type="keystore", detail={"error": message})
    admins = org_admin_emails(keystore.organization_id)
    send_mail(subject="Haven could not renew its certificate for your keystore",
              message=(f"Renewing Haven's client certificate for {keystore.address} failed: {message}\n"
                       f"The current certificate expires on {keystore.cert_not_after:%Y-%m-%d}. Haven retries "
                       "daily; check the policy in docs/private-keystore.md."),
              from_email=settings.DEFAULT_FROM_EMAIL, recipient_list=admins, fail_silently=True)


# --- state, for `keystore status` and the console -----------------------------------------------

@dataclass
class PrivateKeystoreState:
    keystore: PrivateKeystore
    health: str  # unsealed, sealed, uninitialized, unreachable, untrusted
    days_left: int
    keys_here: int
    problems: list[str]


def private_keystore_state(keystore: PrivateKeystore, *, now: datetime | None = None) -> PrivateKeystoreState:
    """The Vault's health (no login: `sys/health`), the certificate's expiry, where the keys are."""
    now = now or timezone.now()
    health = private_vault_health(keystore.address, keystore.ca_pem.encode())
    days_left = (keystore.cert_not_after - now).days
    problems = []
    if health != "unsealed":
        problems.append(f"the keystore at {keystore.address} is {health}")
    if keystore.cert_not_after <= now:
        problems.append(f"Haven's client certificate expired on {keystore.cert_not_after:%Y-%m-%d}")
    elif keystore.cert_not_after - now <= RENEW_BEFORE:
        problems.append(f"Haven's client certificate expires in {days_left} day(s)")
    if keystore.renewal_error:
        problems.append(f"the last renewal failed: {keystore.renewal_error}")
    keys_here = UserKey.objects.filter(organization_id=keystore.organization_id, state=UserKey.State.ESCROWED,
                                       location=UserKey.Location.PRIVATE).count()
    return PrivateKeystoreState(keystore=keystore, health=health, days_left=days_left, keys_here=keys_here,
                                problems=problems)


def source_copies_note(organization: Organization) -> str:
    """Where copies outside the keys' recorded location remain, after the latest completed migration."""
    latest = KeystoreMigration.objects.filter(organization=organization).order_by("-started_at").first()
    if latest is None or latest.state != KeystoreMigration.State.COMPLETED or not latest.source_copies_left:
        return ""
    if latest.source == UserKey.Location.HAVEN:
        return (f"{latest.source_copies_left} copy(ies) kept in Haven's keystore by the migration of "
                f"{latest.finished_at:%Y-%m-%d} (kept on request): `manage.py keystore delete-source --org "
                f"{organization.slug}` deletes them")
    return (f"{latest.source_copies_left} copy(ies) remain in your keystore at secret/haven/{organization.uuid}/ "
            f"after the migration back of {latest.finished_at:%Y-%m-%d}: Haven's policy cannot delete them; "
            "remove them there")


def keystore_overview(organization: Organization) -> dict:
    """What the console shows beside the settings: the private Vault's state (a `sys/health` call),
    where each key lives, copies left by the latest migration, whether the storage key is set."""
    keystore = PrivateKeystore.objects.filter(organization=organization).first()
    return {
        "private_state": private_keystore_state(keystore) if keystore else None,
        "source_copies": source_copies_note(organization),
        "storage_warning": storage_key_problem(),
        "key_locations": UserKey.objects.filter(organization=organization, state=UserKey.State.ESCROWED)
        .select_related("user").order_by("user__email")[:200],
    }

"""An organization's own Vault (seed 004): set it up from an uploaded PKCS12, renew its client
certificate before it expires. See docs/private-keystore.md for the customer's side."""
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization, User
from accounts.selectors import org_admin_emails
from accounts.services import audit_record
from keystore.engines import private_vault_config
from keystore.models import KeystoreMigration, PrivateKeystore, UserKey
from keystore.pkcs12 import MAX_PKCS12_BYTES, Pkcs12Error, pkcs12_build, pkcs12_load
from keystore.private_vault import (
    PrivateVaultConfig,
    PrivateVaultError,
    PrivateVaultSession,
    cert_auth_delete,
    cert_auth_register,
    issue_client_certificate,
)
from keystore.sealing import seal, unseal

logger = logging.getLogger(__name__)
RENEW_BEFORE = timedelta(days=30)


class PrivateKeystoreInvalid(ValueError):
    """The upload or the Vault it points at cannot be used; the message says why, for an admin."""


def private_keystore_configure(*, organization: Organization, actor: User, address: str, ca_pem: str,
                               pkcs12: bytes, password: str, cert_role: str = "haven-initial") -> PrivateKeystore:
    """Check the upload by logging in with it, then store it sealed. Not used until a migration.

    Refused while any key lives in the current private keystore or a migration runs: a new
    address or certificate would leave those keys unreadable. The login check happens before the
    database transaction (it talks to a customer-chosen address and may take seconds).
    """
    if _private_keystore_busy(organization):
        raise PrivateKeystoreInvalid("Keys live in the current private keystore (or a migration is running): "
                                     "migrate them back to Haven's keystore before replacing it.")
    if len(pkcs12) > MAX_PKCS12_BYTES:
        raise PrivateKeystoreInvalid("The PKCS12 file is larger than 5 MB.")
    try:
        identity = pkcs12_load(pkcs12, password)
        config = PrivateVaultConfig(address=address, ca_pem=ca_pem.encode(), identity=identity, cert_role=cert_role)
        with PrivateVaultSession(config) as session:
            session.token_ttl()
    except (Pkcs12Error, ValueError, PrivateVaultError) as error:
        raise PrivateKeystoreInvalid(str(error)) from None
    with transaction.atomic():
        if _private_keystore_busy(organization, lock=True):
            raise PrivateKeystoreInvalid("A migration started meanwhile; try again when it has finished.")
        keystore = _private_keystore_store(organization, address, ca_pem, pkcs12, password, cert_role, identity)
    audit_record(organization=organization, actor=actor, action="keystore.private.configure", target_type="keystore",
                 detail={"address": address, "certificate": identity.subject,
                         "expires": identity.not_valid_after.isoformat()})
    return keystore


def _private_keystore_busy(organization: Organization, *, lock: bool = False) -> bool:
    keystores = PrivateKeystore.objects.filter(organization=organization)
    if lock:
        keystores = keystores.select_for_update()
    existing = keystores.first()
    return bool(
        (existing and existing.in_use)
        or UserKey.objects.filter(organization=organization, location=UserKey.Location.PRIVATE).exists()
        or KeystoreMigration.objects.filter(organization=organization, state=KeystoreMigration.State.RUNNING).exists())


def _private_keystore_store(organization, address, ca_pem, pkcs12, password, cert_role, identity) -> PrivateKeystore:
    keystore, _ = PrivateKeystore.objects.update_or_create(organization=organization, defaults={
        "address": address, "ca_pem": ca_pem, "pkcs12_sealed": seal("pkcs12", pkcs12),
        "password_sealed": seal("pkcs12-password", password.encode()), "cert_role": cert_role,
        "cert_subject": identity.subject[:300], "cert_not_after": identity.not_valid_after, "renewal_error": "",
    })
    return keystore


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
    config = private_vault_config(keystore)
    password = unseal("pkcs12-password", keystore.password_sealed).decode()
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
                                                                 identity.chain_pem, password))
            keystore.cert_role, keystore.cert_not_after = new_entry, identity.not_valid_after
            keystore.cert_subject, keystore.renewed_at, keystore.renewal_error = identity.subject[:300], now, ""
            keystore.save(update_fields=["pkcs12_sealed", "cert_role", "cert_not_after", "cert_subject",
                                         "renewed_at", "renewal_error", "updated_at"])
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

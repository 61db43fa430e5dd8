"""The installation's SAML service-provider key pair: one for every web process on every host.

Every organization's SP signs its AuthnRequests with it and publishes its certificate in its
metadata, so all web hosts must hold the same pair, or an IdP that checks request signatures (or
pins the metadata) trusts only one of them. The pair comes from, in order:

1. HAVEN_SAML_SP_KEY_FILE + HAVEN_SAML_SP_CERT_FILE: PEM files the operator installs on every web
   host (their own PKI, a systemd credential). Haven only reads them; rotating is replacing them.
2. The database (`SamlServiceProviderKey`): the key sealed under HAVEN_STORAGE_KEY
   (keystore/sealing.py), created by the first process that needs it. The slot is unique, so two
   processes starting at once end with one key: the loser of the insert reads the winner's row.
   A pre-upgrade HAVEN_DATA_DIR/saml/sp.key on that host is adopted, keeping the certificate IdPs
   already trust. `manage.py samlcert` shows, rotates (with an optional staged rollover) and imports.

pysaml2 hands xmlsec1 file paths, so a database key is written per process into a private 0700
temp folder (0600 files named by the row), never into the data folder, and removed at exit.
"""
import atexit
import datetime
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.db import IntegrityError, transaction

from accounts.models import SamlServiceProviderKey, SamlSettings
from accounts.services import audit_record
from archives.faults import fault_point
from keystore.sealing import SP_KEY_PURPOSE, SealedIn, StorageKeyMissing, seal, sealing_check, sp_key_owner, unseal

logger = logging.getLogger(__name__)
PURPOSE = SP_KEY_PURPOSE
MIN_RSA_BITS = 2048
Slot = SamlServiceProviderKey.Slot


class SpKeyUnavailable(Exception):
    """No SP key pair can be used; the message says what the operator must set."""


class SpKeyRefused(ValueError):
    """A rotation or import that cannot be done; the message says why."""


@dataclass(frozen=True)
class SpKeyPair:
    key_file: Path
    cert_file: Path
    next_cert_file: Path | None  # a staged certificate, published beside the current one
    source: str  # "files" (the operator's) or "database"


def sp_key_files_configured() -> bool:
    return bool(settings.HAVEN_SAML_SP_KEY_FILE)


def sp_keypair() -> SpKeyPair:
    """The pair this process signs with, the same as every other process's."""
    if sp_key_files_configured():
        key_file, cert_file = Path(settings.HAVEN_SAML_SP_KEY_FILE), Path(settings.HAVEN_SAML_SP_CERT_FILE)
        for path in (key_file, cert_file):
            if not os.access(path, os.R_OK):
                raise SpKeyUnavailable(f"{path} (HAVEN_SAML_SP_*_FILE) is not readable by this process")
        return SpKeyPair(key_file, cert_file, None, "files")
    try:
        rows = {row.slot: row for row in SamlServiceProviderKey.objects.all()}
        current = rows.get(Slot.CURRENT) or _current_create()
        upcoming = rows.get(Slot.NEXT)
        key_file, cert_file = _materialised(current, keep={row.uuid for row in (current, upcoming) if row})
        next_cert = _materialised(upcoming, keep={current.uuid, upcoming.uuid})[1] if upcoming else None
    except StorageKeyMissing as error:
        raise SpKeyUnavailable(f"{error.reason}; or give every web host the same HAVEN_SAML_SP_KEY_FILE and "
                               "HAVEN_SAML_SP_CERT_FILE") from None
    except ValueError as error:  # sealed under another storage key than this host's
        raise SpKeyUnavailable(f"{error} (is HAVEN_STORAGE_KEY the same on every host?)") from None
    return SpKeyPair(key_file, cert_file, next_cert, "database")


def sp_certificates() -> dict[str, x509.Certificate]:
    """The certificates in use, by slot (for `samlcert show`); creates the pair if there is none yet."""
    pair = sp_keypair()
    found = {Slot.CURRENT.value: x509.load_pem_x509_certificate(pair.cert_file.read_bytes())}
    if pair.next_cert_file:
        found[Slot.NEXT.value] = x509.load_pem_x509_certificate(pair.next_cert_file.read_bytes())
    return found


def fingerprint(cert: x509.Certificate) -> str:
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def sp_key_install(*, key_pem: bytes, cert_pem: bytes, stage: bool, actor_label: str,
                   change: str = "imported") -> SamlServiceProviderKey:
    """Put a pair in the database: as the current one (it signs from the next request on, on every
    host) or staged as `next` (published in the metadata until `sp_key_activate`)."""
    _refuse_if_files()
    cert = _pair_check(key_pem, cert_pem)
    slot = Slot.NEXT if stage else Slot.CURRENT
    try:
        with transaction.atomic():
            SamlServiceProviderKey.objects.select_for_update().filter(slot=slot).delete()
            row = _row_save(key_pem, cert_pem, slot=slot)
    except StorageKeyMissing as error:
        raise SpKeyRefused(error.reason) from None
    _audit(change=f"{change}, staged" if stage else change, cert=cert, actor_label=actor_label)
    return row


def sp_key_rotate(*, stage: bool, actor_label: str) -> SamlServiceProviderKey:
    key_pem, cert_pem = _generated_pair()
    return sp_key_install(key_pem=key_pem, cert_pem=cert_pem, stage=stage, actor_label=actor_label,
                          change="rotated")


def sp_key_activate(*, actor_label: str) -> SamlServiceProviderKey:
    """The staged pair becomes the current one; the old one is gone (IdPs stop seeing it)."""
    _refuse_if_files()
    with transaction.atomic():
        rows = {row.slot: row for row in SamlServiceProviderKey.objects.select_for_update()}
        upcoming = rows.get(Slot.NEXT)
        if upcoming is None:
            raise SpKeyRefused("no certificate is staged: `samlcert rotate --stage` first")
        if Slot.CURRENT in rows:
            rows[Slot.CURRENT].delete()
        upcoming.slot = Slot.CURRENT
        upcoming.save(update_fields=["slot"])
    _audit(change="activated", cert=x509.load_pem_x509_certificate(upcoming.certificate_pem.encode()),
           actor_label=actor_label)
    return upcoming


def _refuse_if_files() -> None:
    if sp_key_files_configured():
        raise SpKeyRefused("the SP key comes from HAVEN_SAML_SP_KEY_FILE/HAVEN_SAML_SP_CERT_FILE: replace those "
                           "files on every web host instead")


def _owner(row: SamlServiceProviderKey) -> SealedIn:
    return sp_key_owner(row)


def _row_save(key_pem: bytes, cert_pem: bytes, *, slot: str) -> SamlServiceProviderKey:
    row = SamlServiceProviderKey(slot=slot, certificate_pem=cert_pem.decode())
    row.key_sealed = seal(PURPOSE, key_pem, owner=_owner(row))
    row.save(force_insert=True)
    return row


def _current_create() -> SamlServiceProviderKey:
    """The first pair of the installation; exactly one process's insert wins."""
    sealing_check()  # production without a storage key: refused before any key is made
    key_pem, cert_pem = _legacy_pair() or _generated_pair()
    fault_point("saml.sp_key.before_insert")  # tests hold two processes here to make them race
    try:
        with transaction.atomic():
            return _row_save(key_pem, cert_pem, slot=Slot.CURRENT)
    except IntegrityError:  # another process (or host) created it first: everyone uses that one
        return SamlServiceProviderKey.objects.get(slot=Slot.CURRENT)


def _legacy_pair() -> tuple[bytes, bytes] | None:
    """The per-host pair Haven created under the data folder before the pair moved to the database."""
    directory = settings.DATA_DIR / "saml"
    key_path, cert_path = directory / "sp.key", directory / "sp.crt"
    if not (key_path.is_file() and cert_path.is_file()):
        return None
    key_pem, cert_pem = key_path.read_bytes(), cert_path.read_bytes()
    try:
        _pair_check(key_pem, cert_pem)
    except SpKeyRefused as refused:
        logger.warning("not adopting %s: %s", directory, refused)
        return None
    logger.warning("adopted this host's SAML SP key from %s into the database; the folder can be deleted "
                   "(every web host now uses the database's pair)", directory)
    return key_pem, cert_pem


def _generated_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Haven SAML service provider")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650)).sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            cert.public_bytes(serialization.Encoding.PEM))


def _pair_check(key_pem: bytes, cert_pem: bytes) -> x509.Certificate:
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_pem)
    except (ValueError, TypeError) as error:
        raise SpKeyRefused(f"not an unencrypted PEM private key and a PEM certificate: {error}") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_RSA_BITS:
        raise SpKeyRefused(f"the key must be RSA of at least {MIN_RSA_BITS} bits (Haven signs with RSA-SHA256)")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise SpKeyRefused("the certificate is not the key's")
    return cert


def _audit(*, change: str, cert: x509.Certificate, actor_label: str) -> None:
    """Every organization using SSO is told: its IdP may need the new SP metadata."""
    for saml in SamlSettings.objects.select_related("organization"):
        audit_record(organization=saml.organization, actor=None, actor_label=actor_label,
                     action="saml.sp_certificate.change", target_type="organization",
                     target_uuid=saml.organization.uuid,
                     detail={"change": change, "sha256": fingerprint(cert),
                             "not_after": cert.not_valid_after_utc.isoformat()})


_folder: tuple[int, Path] | None = None


def _private_folder() -> Path:
    """This process's own 0700 folder (a forked worker makes its own: the parent's goes at its exit)."""
    global _folder
    if _folder is None or _folder[0] != os.getpid():
        path = Path(tempfile.mkdtemp(prefix="haven-saml-"))
        pid = os.getpid()
        atexit.register(lambda: os.getpid() == pid and shutil.rmtree(path, ignore_errors=True))
        _folder = (pid, path)
    return _folder[1]


def _materialised(row: SamlServiceProviderKey, *, keep: set) -> tuple[Path, Path]:
    folder = _private_folder()
    key_file, cert_file = folder / f"{row.uuid}.key", folder / f"{row.uuid}.crt"
    if key_file.exists():  # written last: the pair is complete
        return key_file, cert_file
    for stale in folder.iterdir():  # a rotated-away key does not linger until the process exits
        if not stale.name.startswith("tmp") and stale.stem not in {str(u) for u in keep}:
            stale.unlink(missing_ok=True)
    _write_private(cert_file, row.certificate_pem.encode())
    _write_private(key_file, unseal(PURPOSE, bytes(row.key_sealed), owner=_owner(row)))
    return key_file, cert_file


def _write_private(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent)  # 0600
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


"""PKCS12 client certificates for an organization's private keystore (its own Vault / OpenBao).

An org admin uploads a PKCS12 file (certificate + private key, password protected) that Haven
uses to log in to the customer's Vault with TLS cert auth. This module turns that upload into a
`ClientIdentity`, checks it early with clear messages (a bad upload must be refused in the console,
not discovered at 3 a.m. by a backup job), and hands the key to TLS without ever writing it to a
named, persistent file. It also re-packs a renewed certificate as PKCS12.

Plain Python + `cryptography`: no Django, so it is importable from workers and easy to test.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

MAX_PKCS12_BYTES = 5 * 1024 * 1024


class Pkcs12Error(ValueError):
    """The uploaded PKCS12 file cannot be used; the message says why, for the administrator."""


@dataclass(frozen=True)
class ClientIdentity:
    """A TLS client certificate with its private key, in memory only.

    `key_pem` is an unencrypted PKCS8 PEM: treat the object as a secret. `__repr__` shows only
    public facts, so the identity can appear in logs, tracebacks and debugger output safely.
    """

    cert_pem: bytes
    key_pem: bytes
    chain_pem: bytes
    not_valid_after: datetime
    subject: str
    fingerprint_sha256: str

    def __repr__(self) -> str:
        return (f"ClientIdentity(subject={self.subject!r}, fingerprint_sha256={self.fingerprint_sha256!r}, "
                f"not_valid_after={self.not_valid_after.isoformat()!r})")

    __str__ = __repr__


# --- loading ------------------------------------------------------------------------------------

def pkcs12_load(data: bytes, password: str, *, check_validity: bool = True,
                now: datetime | None = None) -> ClientIdentity:
    """Open an uploaded PKCS12 file and return the identity inside, or raise `Pkcs12Error`.

    `check_validity=False` skips the expiry check; it exists only to diagnose a stale upload (the
    console and workers always check: an expired certificate cannot log in anyway).
    """
    data = bytes(data)
    _check_size(data)
    key, cert, extra = _open(data, password)
    if key is None:  # checked first: a certificate without its key comes back among the "extra" ones
        raise Pkcs12Error("The PKCS12 file contains no private key: export it with the key "
                          "(openssl pkcs12 -export -inkey private_key.pem -in certificate.pem ...).")
    if cert is None:
        raise Pkcs12Error("The PKCS12 file contains no certificate for its private key: export it with the "
                          "client certificate (openssl pkcs12 -export -inkey private_key.pem -in certificate.pem ...).")
    return _identity(cert, key, list(extra or ()), check_validity=check_validity, now=now)


def client_identity(cert_pem: bytes, key_pem: bytes, chain_pem: bytes = b"", *,
                    check_validity: bool = True, now: datetime | None = None) -> ClientIdentity:
    """Build an identity from PEM parts (e.g. a certificate Vault's PKI engine just issued)."""
    cert = x509.load_pem_x509_certificate(_as_bytes(cert_pem))
    key = serialization.load_pem_private_key(_as_bytes(key_pem), password=None)
    chain = x509.load_pem_x509_certificates(_as_bytes(chain_pem)) if chain_pem.strip() else []
    return _identity(cert, key, chain, check_validity=check_validity, now=now)


def _identity(cert: x509.Certificate, key, chain: list[x509.Certificate], *, check_validity: bool,
              now: datetime | None) -> ClientIdentity:
    """Check that key and certificate belong together (and are in date); serialize both as PEM."""
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise Pkcs12Error("The private key does not belong to the certificate in the PKCS12 file.")
    if check_validity:
        _check_validity(cert, now or datetime.now(UTC))
    return ClientIdentity(
        cert_pem=_pem(cert),
        key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
        chain_pem=b"".join(_pem(c) for c in chain),
        not_valid_after=cert.not_valid_after_utc,
        subject=cert.subject.rfc4514_string(),
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
    )


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _pem(cert: x509.Certificate) -> bytes:
    """PEM with its final newline (Vault's API omits it), so certificates concatenate safely."""
    return cert.public_bytes(serialization.Encoding.PEM)


def _as_bytes(pem: bytes | str) -> bytes:
    return pem.encode() if isinstance(pem, str) else bytes(pem)


def _check_size(data: bytes) -> None:
    if len(data) > MAX_PKCS12_BYTES:
        raise Pkcs12Error(f"The PKCS12 file is {len(data) / 1024 / 1024:.1f} MB; the limit is "
                          f"{MAX_PKCS12_BYTES // 1024 // 1024} MB.")
    if not data:
        raise Pkcs12Error("The PKCS12 file is empty.")


def _open(data: bytes, password: str):
    """Decrypt with the password; tell "wrong password" apart from "not a PKCS12 file"."""
    candidates = [password.encode()] if password else [b"", None]  # openssl -passout pass: means ""
    error: ValueError | None = None
    for secret in candidates:
        try:
            return pkcs12.load_key_and_certificates(data, secret)
        except ValueError as exc:
            error = exc
    if not _looks_like_pkcs12(data):
        hint = " (this looks like a PEM file: convert it with openssl pkcs12 -export)" \
            if data.lstrip().startswith(b"-----BEGIN") else ""
        raise Pkcs12Error(f"This is not a PKCS12 (.p12 / .pfx) file{hint}.") from None
    if "password" in str(error).lower():
        raise Pkcs12Error("Wrong password for the PKCS12 file.") from None
    raise Pkcs12Error("The PKCS12 file could not be opened: wrong password, or the file is damaged.") from None


def _looks_like_pkcs12(data: bytes) -> bool:
    """PFX is DER `SEQUENCE { INTEGER 3, ... }`: recognise it without trusting the parser's messages."""
    if len(data) < 5 or data[0] != 0x30:
        return False
    length_byte = data[1]
    header = 2 + (length_byte & 0x7F if length_byte & 0x80 else 0)
    return data[header:header + 3] == b"\x02\x01\x03"


def _check_validity(cert: x509.Certificate, now: datetime) -> None:
    if now > cert.not_valid_after_utc:
        raise Pkcs12Error(f"The certificate in the PKCS12 file expired on "
                          f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: issue a new one.")
    if now < cert.not_valid_before_utc:
        raise Pkcs12Error(f"The certificate in the PKCS12 file is not valid before "
                          f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (check the issuing server's clock).")


# --- building -----------------------------------------------------------------------------------

def pkcs12_build(cert_pem: bytes, key_pem: bytes, chain_pem: bytes, password: str) -> bytes:
    """Pack a (renewed) certificate, its key and CA chain as a password-protected PKCS12 file."""
    if not password:
        raise Pkcs12Error("A PKCS12 file needs a password.")
    cert = x509.load_pem_x509_certificate(_as_bytes(cert_pem))
    key = serialization.load_pem_private_key(_as_bytes(key_pem), password=None)
    chain = x509.load_pem_x509_certificates(_as_bytes(chain_pem)) if chain_pem.strip() else None
    return pkcs12.serialize_key_and_certificates(
        name=b"haven", key=key, cert=cert, cas=chain,
        encryption_algorithm=serialization.BestAvailableEncryption(password.encode()),
    )


# --- handing the key to TLS ---------------------------------------------------------------------

class PrivateFile:
    """Bytes reachable by path for as long as this object is open, and by this process only.

    `requests` (hence hvac) and OpenSSL take certificates and keys as *file paths*. Writing a private
    key to a named file would leave it on disk, in backups and for any process that can read the
    directory. On Linux the data goes to an anonymous `memfd` instead: it lives in RAM, has no name
    in any filesystem, and `/proc/self/fd/N` is a path only this process can open; closing the fd
    frees it. Elsewhere it falls back to a 0600 file in a fresh 0700 directory, removed on close.
    """

    def __init__(self, data: bytes, *, name: str = "haven", in_memory: bool | None = None) -> None:
        self._fd: int | None = None
        self._dir: str | None = None
        if in_memory is None:
            in_memory = hasattr(os, "memfd_create")
        self.path = self._memfd(data, name) if in_memory else self._tempfile(data, name)

    def _memfd(self, data: bytes, name: str) -> str:
        self._fd = os.memfd_create(name, os.MFD_CLOEXEC)
        _write_all(self._fd, data)
        return f"/proc/self/fd/{self._fd}"

    def _tempfile(self, data: bytes, name: str) -> str:
        self._dir = tempfile.mkdtemp(prefix="haven-")  # mkdtemp: mode 0700
        fd, path = tempfile.mkstemp(prefix=f"{name}-", dir=self._dir)  # mkstemp: mode 0600
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        return path

    @property
    def in_memory(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        """Free the data: close the memfd, or unlink the file and its directory. Idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> PrivateFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


@contextmanager
def tls_client_files(identity: ClientIdentity, *, in_memory: bool | None = None) -> Iterator[tuple[str, str]]:
    """Yield `(cert_path, key_path)` for a TLS handshake; both are gone when the block exits.

    The certificate file carries the chain after the leaf so a server that trusts only the root can
    still build the path. Keep the block short: just the login request (see `PrivateFile`).
    """
    with ExitStack() as stack:
        cert = stack.enter_context(PrivateFile(identity.cert_pem + identity.chain_pem, name="haven-client-cert",
                                               in_memory=in_memory))
        key = stack.enter_context(PrivateFile(identity.key_pem, name="haven-client-key", in_memory=in_memory))
        yield cert.path, key.path

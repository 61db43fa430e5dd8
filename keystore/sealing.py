"""Secrets Haven must keep in its database (a private keystore's PKCS12 and password) are sealed
with AES-256-GCM under a key derived from HAVEN_STORAGE_KEY, or from the Django secret key when
that is unset. The database alone never holds what unlocks them."""
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


def _key(purpose: str) -> bytes:
    material = settings.HAVEN_STORAGE_KEY.encode() if settings.HAVEN_STORAGE_KEY else settings.SECRET_KEY.encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=f"haven/v1/sealed/{purpose}".encode()).derive(material)


def seal(purpose: str, value: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(_key(purpose)).encrypt(nonce, value, purpose.encode())


def unseal(purpose: str, sealed: bytes) -> bytes:
    sealed = bytes(sealed)
    return AESGCM(_key(purpose)).decrypt(sealed[:12], sealed[12:], purpose.encode())

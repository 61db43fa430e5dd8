"""User key, key id and sub-key derivation (docs/formats.md §1)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_SIZE = 32
KEY_ID_SIZE = 16

_KEY_ID_LABEL = b"haven/v1/key-id"
_LABEL_BLOCK_KEY = b"haven/v1/block-key"
_LABEL_BLOCK_ID = b"haven/v1/block-id"
_LABEL_MANIFEST_KEY = b"haven/v1/manifest-key"
_LABEL_PATH_ID = b"haven/v1/path-id"
_LABEL_CHUNKER_SEED = b"haven/v1/chunker-seed"

# pyfastcdc 0.3.1 (Cython) computes `seed << 1` into a uint64_t and overflows
# for seed >= 2**63, so the seed keeps 63 bits.
_SEED_MASK = (1 << 63) - 1


def _check_key(user_key: bytes) -> None:
    if not isinstance(user_key, (bytes, bytearray)) or len(user_key) != KEY_SIZE:
        raise ValueError(f"user key must be {KEY_SIZE} bytes")


def generate_user_key() -> bytes:
    """A fresh 32-byte user key from the OS CSPRNG."""
    return secrets.token_bytes(KEY_SIZE)


def key_id_for(user_key: bytes) -> str:
    """Public id of a key: an HMAC under the key, so it reveals nothing about it."""
    _check_key(user_key)
    mac = hmac.HMAC(bytes(user_key), hashes.SHA256())
    mac.update(_KEY_ID_LABEL)
    return mac.finalize()[:KEY_ID_SIZE].hex()


def _hkdf(user_key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
        bytes(user_key)
    )


@dataclass(frozen=True, repr=False)
class KeySet:
    """All sub-keys of one user key; one independent key per purpose."""

    key_id: str
    block_key: bytes
    block_id_key: bytes
    manifest_key: bytes
    path_id_key: bytes
    chunker_seed: int

    def __repr__(self) -> str:
        # Key bytes (and the seed) must never end up in logs or tracebacks.
        return f"KeySet(key_id={self.key_id!r})"

    __str__ = __repr__

    @property
    def key_id_bytes(self) -> bytes:
        """The 16 raw bytes of key_id, as written in block and manifest headers."""
        return bytes.fromhex(self.key_id)


def derive_keys(user_key: bytes) -> KeySet:
    """Derive every sub-key with HKDF-SHA256 and a distinct versioned label."""
    _check_key(user_key)
    seed = int.from_bytes(_hkdf(user_key, _LABEL_CHUNKER_SEED)[:8], "big") & _SEED_MASK
    return KeySet(
        key_id=key_id_for(user_key),
        block_key=_hkdf(user_key, _LABEL_BLOCK_KEY),
        block_id_key=_hkdf(user_key, _LABEL_BLOCK_ID),
        manifest_key=_hkdf(user_key, _LABEL_MANIFEST_KEY),
        path_id_key=_hkdf(user_key, _LABEL_PATH_ID),
        chunker_seed=seed or 1,  # 0 would select pyfastcdc's public gear table
    )

"""Fixed test vectors (docs/formats.md §8): any change here is a format change.

User key K = bytes(range(32)). Values were computed once with the reference
implementation and are cross-checked below with independent code where that
is cheap (stdlib hmac HKDF, direct AESGCM with the documented AD layout).
"""

import hashlib
import hmac
import json
import uuid

import blake3
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from formats.blocks import block_decrypt, block_encrypt, block_id_for
from formats.frames import frame_encode, frames_decode
from formats.keys import derive_keys, key_id_for
from formats.manifests import Manifest, manifest_decrypt, path_id_for

USER_KEY = bytes(range(32))
NONCE = bytes(range(12))
ARCHIVE_ID = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
VERSION_ID = uuid.UUID("ffeeddcc-bbaa-9988-7766-554433221100")

KEY_ID = "d8a6df8e610a7c483ef65e7caa9dbeb0"
BLOCK_KEY = "4d6f5482ff3954894daf0da9edb170a8f1033c89e30565a8ef13dbb6d233245b"
BLOCK_ID_KEY = "7577f1802e28ccda13914abd420105103cc14eb7b5f7f41f506bcdc0e685dadd"
MANIFEST_KEY = "b3cf3c083368afd0122ef49e3bd2eee2590e26a0480ad8c4c47230c7c8024660"
PATH_ID_KEY = "74d8431eb6bc981a64b5bc9c0b8a5ea770a3e5043c0bc156847d6e2ec5bd6bc4"
CHUNKER_SEED = 6395807217986747729  # 0x58c278c73ffabd51

HELLO = b"hello haven"
HELLO_BLOCK_ID = "358c7a73f94b5809cb30e9f01732999d6acd6c29ff7c6df280770171fd1f1603"
PATH = "/home/alice/a.txt"
PATH_ID = "094c10ff4a7563da6d9890e55dbb22db24d052631772a06724d6bc6acfb07c3b"

# block_encrypt(keys, HELLO_BLOCK_ID, HELLO, _nonce=NONCE): zstd does not shrink 11 bytes -> raw.
HELLO_BLOB = (
    "0100d8a6df8e610a7c483ef65e7caa9dbeb0000102030405060708090a0b"
    "56d75892b8e24623c78b6e7c1c33f2ec306ed161c41e874ed5caf8"
)
# A compressed block (flag 0x01). Compressed bytes may differ with another zstd
# version, so this one is a decrypt (read-compatibility) vector only.
HAVEN100 = b"haven " * 100
HAVEN100_BLOCK_ID = "a0d5bf1bea4cb9d2a2caf30c920039ea607810ae5e89afb7215336ac24d9253c"
HAVEN100_BLOB = (
    "0101d8a6df8e610a7c483ef65e7caa9dbeb0000102030405060708090a0b"
    "16071b03b79a2f2fb1ee307cf5abc14b3a2bcb5704f3528055cc402a9bf706e5854854e8b118cf"
)
# Manifest of PATH (11 bytes, one block), nonce NONCE; decrypt vector.
MANIFEST = Manifest(
    path=PATH,
    size=11,
    mtime_ns=1700000000123456789,
    mode=0o100644,
    block_ids=[bytes.fromhex(HELLO_BLOCK_ID)],
    block_sizes=[11],
)
MANIFEST_BLOB = (
    "01d8a6df8e610a7c483ef65e7caa9dbeb0000102030405060708090a0b"
    "290c5f5f8c8bdd44eb7e069d5dc9314b609f6294561daf4d22ad121d3434d41687feb6bd6066f581"
    "cfebf1a6e08de00d61bfefe4c603fc3e0f866bce0499efa3006e2986f2a809e20b18d2b6058c8742"
    "a244172742526bba9b05499f9982b67dfff5e6dd93c0f04117fa2f29444469138817a1ebba7f343e"
    "f091794e7dc561351e7beb6b94bec32596271aeecaa30a66622e192fa57f3165bd8e38d4b7458adf"
    "294f099334b5fd5aef1103abe12ac539db7dcc57287523a9452d25b44ae513e2887e"
)
MANIFEST_JSON = (
    b'{"block_ids":["358c7a73f94b5809cb30e9f01732999d6acd6c29ff7c6df280770171fd1f1603"],'
    b'"block_sizes":[11],"deleted":false,"mode":33188,"mtime_ns":1700000000123456789,'
    b'"path":"L2hvbWUvYWxpY2UvYS50eHQ=","size":11}'
)
# frame_encode(FRAME_BLOCK, ARCHIVE_ID, HELLO_BLOCK_ID, b"payload")
FRAME = (
    "4846" "01" "00112233445566778899aabbccddeeff"
    "358c7a73f94b5809cb30e9f01732999d6acd6c29ff7c6df280770171fd1f1603"
    "00000007"
    "93afdfab4aace9a231ac261bf1422d9dcc0a0b7035e922dadc698eaba67d55b0"
    "7061796c6f6164"
)

KEYS = derive_keys(USER_KEY)


def _hkdf_sha256_32(ikm: bytes, info: bytes) -> bytes:
    """RFC 5869 with salt=None, one output block: an independent cross-check."""
    prk = hmac.new(bytes(32), ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def test_key_id():
    assert key_id_for(USER_KEY) == KEY_ID
    assert KEYS.key_id == KEY_ID
    assert hmac.new(USER_KEY, b"haven/v1/key-id", hashlib.sha256).digest()[:16].hex() == KEY_ID


def test_sub_keys():
    assert KEYS.block_key.hex() == BLOCK_KEY
    assert KEYS.block_id_key.hex() == BLOCK_ID_KEY
    assert KEYS.manifest_key.hex() == MANIFEST_KEY
    assert KEYS.path_id_key.hex() == PATH_ID_KEY
    assert KEYS.chunker_seed == CHUNKER_SEED


def test_sub_keys_match_spec_labels():
    for label, expected in [
        (b"haven/v1/block-key", BLOCK_KEY),
        (b"haven/v1/block-id", BLOCK_ID_KEY),
        (b"haven/v1/manifest-key", MANIFEST_KEY),
        (b"haven/v1/path-id", PATH_ID_KEY),
    ]:
        assert _hkdf_sha256_32(USER_KEY, label).hex() == expected
    seed_okm = _hkdf_sha256_32(USER_KEY, b"haven/v1/chunker-seed")
    assert int.from_bytes(seed_okm[:8], "big") & (2**63 - 1) == CHUNKER_SEED


def test_block_id():
    assert block_id_for(KEYS, HELLO).hex() == HELLO_BLOCK_ID
    assert blake3.blake3(HELLO, key=bytes.fromhex(BLOCK_ID_KEY)).hexdigest() == HELLO_BLOCK_ID
    assert block_id_for(KEYS, HAVEN100).hex() == HAVEN100_BLOCK_ID


def test_path_id():
    assert path_id_for(KEYS, PATH) == PATH_ID
    expected = hmac.new(bytes.fromhex(PATH_ID_KEY), PATH.encode(), hashlib.sha256).hexdigest()
    assert expected == PATH_ID


def test_block_encrypt_vector_byte_for_byte():
    bid = bytes.fromhex(HELLO_BLOCK_ID)
    assert block_encrypt(KEYS, bid, HELLO, _nonce=NONCE).hex() == HELLO_BLOB
    assert block_decrypt(KEYS, bid, bytes.fromhex(HELLO_BLOB)) == HELLO


def test_block_vector_matches_documented_layout():
    blob = bytes.fromhex(HELLO_BLOB)
    bid = bytes.fromhex(HELLO_BLOCK_ID)
    assert blob[0] == 1 and blob[1] == 0 and blob[2:18].hex() == KEY_ID and blob[18:30] == NONCE
    ad = b"\x01\x00" + bytes.fromhex(KEY_ID) + bid
    assert AESGCM(bytes.fromhex(BLOCK_KEY)).decrypt(NONCE, blob[30:], ad) == HELLO


def test_compressed_block_vector_decrypts():
    blob = bytes.fromhex(HAVEN100_BLOB)
    assert blob[1] == 0x01  # compressed flag
    assert block_decrypt(KEYS, bytes.fromhex(HAVEN100_BLOCK_ID), blob) == HAVEN100


def test_manifest_vector_decrypts():
    blob = bytes.fromhex(MANIFEST_BLOB)
    got = manifest_decrypt(
        KEYS, blob, archive_id=ARCHIVE_ID, path_id=PATH_ID, version_id=VERSION_ID
    )
    assert got == MANIFEST
    ad = (
        b"\x01" + bytes.fromhex(KEY_ID) + ARCHIVE_ID.bytes + bytes.fromhex(PATH_ID)
        + VERSION_ID.bytes
    )
    assert blob[17:29] == NONCE
    compressed = AESGCM(bytes.fromhex(MANIFEST_KEY)).decrypt(NONCE, blob[29:], ad)
    plaintext = zstandard.ZstdDecompressor().decompress(compressed)
    assert plaintext == MANIFEST_JSON
    assert json.loads(plaintext)["path"] == "L2hvbWUvYWxpY2UvYS50eHQ="


def test_frame_vector():
    encoded = frame_encode(1, ARCHIVE_ID, bytes.fromhex(HELLO_BLOCK_ID), b"payload")
    assert encoded.hex() == FRAME
    # The checksum is computed independently here: BLAKE3 of the checked header fields + payload.
    checked = bytes.fromhex(FRAME[4 : 2 * 55]) + b"payload"
    assert blake3.blake3(checked).hexdigest() == FRAME[2 * 55 : 2 * 87]
    [(offset, frame)] = list(frames_decode(bytes.fromhex(FRAME)))
    assert offset == 0 and bytes(frame.payload) == b"payload"

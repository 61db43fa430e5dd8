"""Version-3 (dense, binary) file manifests, docs/formats.md §5.3: the vector, the layout, and
that malformed bodies are refused. Version 1 is still read (tests/formats/test_vectors.py)."""
import os
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from formats.blocks import zstd_compress
from formats.errors import IntegrityError
from formats.keys import derive_keys
from formats.manifest_binary import binary_decode, binary_encode
from formats.manifests import Manifest, manifest_decrypt, manifest_encrypt, path_id_for

KEYS = derive_keys(bytes(range(32)))
ARCHIVE = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
VERSION = uuid.UUID("ffeeddcc-bbaa-9988-7766-554433221100")
NONCE = bytes(range(12))
HELLO_ID = bytes.fromhex("358c7a73f94b5809cb30e9f01732999d6acd6c29ff7c6df280770171fd1f1603")
MANIFEST = Manifest(path="/home/alice/a.txt", size=11, mtime_ns=1700000000123456789, mode=0o100644,
                    block_ids=[HELLO_ID], block_sizes=[11])
PID = path_id_for(KEYS, MANIFEST.path)
# docs/formats.md §8: the body, then the blob (raw encoding 00, nonce 000102…0b)
BODY = ("112f686f6d652f616c6963652f612e747874" "0b" "aab4aed8c7bfce972f" "a48302" "00" "01"
        "358c7a73f94b5809cb30e9f01732999d6acd6c29ff7c6df280770171fd1f1603" "0b")
BLOB = ("03d8a6df8e610a7c483ef65e7caa9dbeb0000102030405060708090a0b01a85fcac32bf56e8aa0e4d8198637ce17d7d"
        "167e36f3d409d3998c69fe86600afe0c67c484c72e96f877f860d21fe841765aa21aa9ead438645cf1d649852a2d52c5b"
        "54fdee7d020a76db25693d6d086b866b")


def _ad(version: int = 3, pid: str = PID) -> bytes:
    return bytes((version,)) + KEYS.key_id_bytes + ARCHIVE.bytes + bytes.fromhex(pid) + VERSION.bytes


def _seal(plaintext: bytes, version: int = 3, pid: str = PID) -> bytes:
    """An authentic blob around any plaintext (a buggy agent)."""
    nonce = os.urandom(12)
    return bytes((version,)) + KEYS.key_id_bytes + nonce + AESGCM(KEYS.manifest_key).encrypt(
        nonce, plaintext, _ad(version, pid))


def _open(blob: bytes) -> Manifest:
    return manifest_decrypt(KEYS, blob, archive_id=ARCHIVE, path_id=PID, version_id=VERSION)


def test_it_writes_the_vector_byte_for_byte():
    blob = manifest_encrypt(KEYS, MANIFEST, archive_id=ARCHIVE, path_id=PID, version_id=VERSION, _nonce=NONCE)
    assert blob.hex() == BLOB
    assert _open(bytes.fromhex(BLOB)) == MANIFEST


def test_the_vector_has_the_documented_layout():
    blob = bytes.fromhex(BLOB)
    assert blob[0] == 3 and blob[1:17] == KEYS.key_id_bytes and blob[17:29] == NONCE
    plaintext = AESGCM(KEYS.manifest_key).decrypt(NONCE, blob[29:], _ad())
    assert plaintext == b"\x00" + bytes.fromhex(BODY)
    assert binary_decode(bytes.fromhex(BODY)) == (
        MANIFEST.path.encode(), 11, 1700000000123456789, 0o100644, False, [HELLO_ID], [11])


def test_version_1_is_still_written_on_request_and_read():
    blob = manifest_encrypt(KEYS, MANIFEST, archive_id=ARCHIVE, path_id=PID, version_id=VERSION, version=1)
    assert blob[0] == 1
    assert _open(blob) == MANIFEST


def test_a_dense_manifest_is_much_smaller_than_json():
    path = "/home/alice/projects/haven/node_modules/some-package/lib/deeply/nested/module.js"
    manifest = Manifest(path=path, size=5000, mtime_ns=1764600000123456789, mode=0o100644,
                        block_ids=[os.urandom(32)], block_sizes=[5000])
    pid = path_id_for(KEYS, path)
    sizes = [len(manifest_encrypt(KEYS, manifest, archive_id=ARCHIVE, path_id=pid, version_id=VERSION, version=v))
             for v in (1, 3)]
    assert sizes[1] < 0.7 * sizes[0]


@pytest.mark.parametrize("manifest", [
    Manifest(path="/", size=0, mtime_ns=-1, mode=0, deleted=True),
    Manifest(path="/odd/caf\udce9", size=0, mtime_ns=-(2 ** 62), mode=0xFFFFFFFF),
    Manifest(path="/big", size=3 * 4 * 1024 * 1024, mtime_ns=2 ** 62, mode=0o100600,
             block_ids=[bytes([i]) * 32 for i in range(3)], block_sizes=[4 * 1024 * 1024] * 3),
    Manifest(path="/many/" + "x" * 300, size=2000 * 7, mtime_ns=0, mode=0o100644,
             block_ids=[bytes([i % 7]) * 32 for i in range(2000)], block_sizes=[7] * 2000),
])
def test_it_round_trips(manifest):
    pid = path_id_for(KEYS, manifest.path)
    blob = manifest_encrypt(KEYS, manifest, archive_id=ARCHIVE, path_id=pid, version_id=VERSION)
    assert blob[0] == 3
    assert manifest_decrypt(KEYS, blob, archive_id=ARCHIVE, path_id=pid, version_id=VERSION) == manifest


def test_the_version_byte_is_authenticated():
    blob = bytes.fromhex(BLOB)
    with pytest.raises(IntegrityError, match="authentication failed"):
        _open(b"\x01" + blob[1:])


GOOD = bytes.fromhex(BODY)


@pytest.mark.parametrize("plaintext", [
    b"",  # no encoding byte
    b"\x02" + GOOD,  # unknown encoding
    b"\x00" + GOOD + b"\x00",  # trailing bytes
    b"\x00" + GOOD[:-1],  # truncated
    b"\x00" + GOOD[:18] + b"\x8b\x00" + GOOD[19:],  # size as a non-shortest varint
    b"\x00" + GOOD[:-35] + b"\x02" + GOOD[-34:],  # deleted byte 2
    b"\x00" + GOOD[:-34] + b"\x05" + GOOD[-33:],  # more block ids than bytes
    b"\x00" + GOOD[:-1] + b"\x0c",  # sizes do not add up
    b"\x00" + b"\x10" + GOOD[2:],  # path length off by one: fields shift
    b"\x00" + binary_encode(b"/home/alice/a.txt", 11, 0, 0o100644, True, [HELLO_ID], [11]),  # deleted with blocks
    b"\x00" + binary_encode(b"home/alice/a.txt", 0, 0, 0, False, [], []),  # not absolute
    b"\x00" + b"\xff" * 11,  # varint longer than 64 bits
    b"\x01" + b"not zstd",
])
def test_malformed_bodies_are_refused(plaintext):
    with pytest.raises(IntegrityError):
        _open(_seal(plaintext))


def test_a_compressed_body_is_read():
    path = "/" + "abc/" * 60 + "file"
    body = binary_encode(path.encode(), 0, 0, 0o100644, False, [], [])
    pid = path_id_for(KEYS, path)
    manifest = manifest_decrypt(KEYS, _seal(b"\x01" + zstd_compress(body), pid=pid), archive_id=ARCHIVE,
                                path_id=pid, version_id=VERSION)
    assert manifest.path == path


def _plaintext(blob: bytes, pid: str) -> bytes:
    at = 1 + len(KEYS.key_id_bytes)  # version, key id, then the nonce (§5)
    return AESGCM(KEYS.manifest_key).decrypt(blob[at:at + 12], blob[at + 12:], _ad(pid=pid))


def test_short_bodies_are_written_raw_and_long_compressible_ones_compressed():
    """Below 256 bytes the writer does not try zstd (§5.3); a long repetitive body is compressed."""
    assert _plaintext(bytes.fromhex(BLOB), PID)[0] == 0  # the vector's 90-byte body: raw
    short = "/" + "ab/" * 70 + "f"  # a 221-byte body that zstd would shrink
    assert len(zstd_compress(binary_encode(short.encode(), 0, 0, 0o100644, False, [], []))) < 221
    pid = path_id_for(KEYS, short)
    blob = manifest_encrypt(KEYS, Manifest(path=short, size=0, mtime_ns=0, mode=0o100644), archive_id=ARCHIVE,
                            path_id=pid, version_id=VERSION)
    assert _plaintext(blob, pid)[0] == 0
    long = "/" + "abc/" * 80 + "file"
    pid = path_id_for(KEYS, long)
    blob = manifest_encrypt(KEYS, Manifest(path=long, size=0, mtime_ns=0, mode=0o100644), archive_id=ARCHIVE,
                            path_id=pid, version_id=VERSION)
    assert _plaintext(blob, pid)[0] == 1
    assert manifest_decrypt(KEYS, blob, archive_id=ARCHIVE, path_id=pid, version_id=VERSION).path == long

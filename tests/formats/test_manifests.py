import os
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from formats.blocks import block_id_for, zstd_compress
from formats.errors import IntegrityError
from formats.frames import canonical_json
from formats.keys import derive_keys
from formats.manifests import Manifest, manifest_decrypt, manifest_encrypt, path_id_for

KEYS = derive_keys(bytes(range(32)))
OTHER = derive_keys(bytes(32))
ARCHIVE = uuid.UUID(int=1)
VERSION = uuid.UUID(int=2)


def _manifest(path="/home/alice/report.pdf", n_blocks=3, **kw):
    sizes = [1 << 20] * (n_blocks - 1) + [12345] if n_blocks else []
    return Manifest(
        path=path,
        size=sum(sizes),
        mtime_ns=1_700_000_000_000_000_001,
        mode=0o100600,
        block_ids=[block_id_for(KEYS, bytes([i])) for i in range(n_blocks)],
        block_sizes=sizes,
        **kw,
    )


def _enc(m, keys=KEYS, archive=ARCHIVE, version=VERSION):
    pid = path_id_for(keys, m.path)
    return pid, manifest_encrypt(keys, m, archive_id=archive, path_id=pid, version_id=version)


def _dec(blob, pid, keys=KEYS, archive=ARCHIVE, version=VERSION):
    return manifest_decrypt(keys, blob, archive_id=archive, path_id=pid, version_id=version)


@pytest.mark.parametrize(
    "m",
    [
        _manifest(),
        _manifest(n_blocks=0),  # empty file
        _manifest(n_blocks=1),
        _manifest(n_blocks=0, deleted=True),  # tombstone
        _manifest(path=os.fsdecode(b"/data/\xff\xfe caf\xc3\xa9.txt")),  # non-UTF-8 bytes
        _manifest(path="/"),
        _manifest(path="/home/ünï/日本語/file"),
    ],
)
def test_round_trip(m):
    pid, blob = _enc(m)
    assert _dec(blob, pid) == m


def test_non_utf8_path_bytes_preserved():
    raw = b"/data/\xff\xfe.bin"
    m = _manifest(path=os.fsdecode(raw))
    pid, blob = _enc(m)
    assert os.fsencode(_dec(blob, pid).path) == raw
    assert path_id_for(KEYS, os.fsdecode(raw)) != path_id_for(KEYS, "/data/\ufffd\ufffd.bin")


def test_mtime_before_epoch():
    m = _manifest(n_blocks=1)
    m.mtime_ns = -123
    pid, blob = _enc(m)
    assert _dec(blob, pid).mtime_ns == -123


def test_large_manifest():
    n = 20000  # a ~20 GiB file
    m = Manifest(path="/vm.img", size=n << 20, mtime_ns=0, mode=0o100644,
                 block_ids=[os.urandom(32) for _ in range(n)], block_sizes=[1 << 20] * n)
    pid, blob = _enc(m)
    assert _dec(blob, pid) == m


def test_tampering_any_byte_fails():
    pid, blob = _enc(_manifest())
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(IntegrityError):
            _dec(bytes(bad), pid)


@pytest.mark.parametrize("cut", [0, 1, 28, 44, -1])
def test_truncated_fails(cut):
    pid, blob = _enc(_manifest())
    with pytest.raises(IntegrityError):
        _dec(blob[:cut], pid)


def test_wrong_associated_data_fails():
    m = _manifest()
    pid, blob = _enc(m)
    other_pid = path_id_for(KEYS, "/home/alice/other.pdf")
    with pytest.raises(IntegrityError, match="authentication failed"):
        _dec(blob, pid, archive=uuid.UUID(int=99))
    with pytest.raises(IntegrityError, match="authentication failed"):
        _dec(blob, pid, version=uuid.UUID(int=99))
    with pytest.raises(IntegrityError, match="authentication failed"):
        _dec(blob, other_pid)


def test_wrong_key_fails():
    pid, blob = _enc(_manifest())
    with pytest.raises(IntegrityError, match="encrypted with key"):
        _dec(blob, pid, keys=OTHER)


def test_unknown_version_fails():
    pid, blob = _enc(_manifest())
    with pytest.raises(IntegrityError, match="version"):
        _dec(b"\x02" + blob[1:], pid)


def _forge(plaintext: bytes, pid: str) -> bytes:
    """An authentic blob around arbitrary plaintext (a buggy agent)."""
    nonce = os.urandom(12)
    ad = b"\x01" + KEYS.key_id_bytes + ARCHIVE.bytes + bytes.fromhex(pid) + VERSION.bytes
    ct = AESGCM(KEYS.manifest_key).encrypt(nonce, zstd_compress(plaintext), ad)
    return b"\x01" + KEYS.key_id_bytes + nonce + ct


@pytest.mark.parametrize(
    "obj",
    [
        [],
        {"path": "L2E="},
        {"path": "L2E=", "size": 1, "mtime_ns": 0, "mode": 0, "block_ids": [],
         "block_sizes": [], "deleted": False},  # size != sum(block_sizes)
        {"path": "not base64!", "size": 0, "mtime_ns": 0, "mode": 0, "block_ids": [],
         "block_sizes": [], "deleted": False},
        {"path": "L2E=", "size": 0, "mtime_ns": 0, "mode": 0, "block_ids": ["zz"],
         "block_sizes": [], "deleted": False},
        {"path": "L2E=", "size": 0, "mtime_ns": 0, "mode": 0, "block_ids": [],
         "block_sizes": [], "deleted": 0},
    ],
)
def test_malformed_plaintext_is_integrity_error(obj):
    pid = path_id_for(KEYS, "/a")
    with pytest.raises(IntegrityError, match="malformed|JSON"):
        _dec(_forge(canonical_json(obj), pid), pid)


def test_path_in_manifest_must_match_path_id():
    pid = path_id_for(KEYS, "/a")
    obj = {"path": "L2I=", "size": 0, "mtime_ns": 0, "mode": 0, "block_ids": [],
           "block_sizes": [], "deleted": False}  # path "/b"
    with pytest.raises(IntegrityError, match="path id"):
        _dec(_forge(canonical_json(obj), pid), pid)


def test_unknown_fields_ignored():
    pid = path_id_for(KEYS, "/a")
    obj = {"path": "L2E=", "size": 0, "mtime_ns": 0, "mode": 0, "block_ids": [],
           "block_sizes": [], "deleted": False, "uid": 1000}
    assert _dec(_forge(canonical_json(obj), pid), pid).path == "/a"


def test_encrypt_checks_path_id_and_fields():
    m = _manifest()
    with pytest.raises(ValueError, match="path id"):
        manifest_encrypt(KEYS, m, archive_id=ARCHIVE, path_id=path_id_for(KEYS, "/x"),
                         version_id=VERSION)
    with pytest.raises(ValueError):
        manifest_encrypt(KEYS, m, archive_id=ARCHIVE, path_id="ABC", version_id=VERSION)
    bad = _manifest()
    bad.size += 1
    with pytest.raises(ValueError, match="sum"):
        _enc(bad)
    bad = _manifest()
    bad.block_sizes = bad.block_sizes[:-1]
    with pytest.raises(ValueError):
        _enc(bad)


def test_random_nonce():
    m = _manifest()
    assert _enc(m)[1] != _enc(m)[1]


@pytest.mark.parametrize(
    "path", ["", "relative/path", "/a/", "/a//b", "/a/./b", "/a/../b", "/a\0b", "//"]
)
def test_path_id_rejects_non_normalized(path):
    with pytest.raises(ValueError):
        path_id_for(KEYS, path)


def test_path_id_rejects_unencodable_surrogate():
    with pytest.raises(ValueError, match="surrogate"):
        path_id_for(KEYS, "/a/\ud800")


def test_path_id_properties():
    pid = path_id_for(KEYS, "/home/alice/a.txt")
    assert len(pid) == 64 and pid == pid.lower()
    assert pid != path_id_for(OTHER, "/home/alice/a.txt")
    assert pid != path_id_for(KEYS, "/home/alice/A.txt")  # no case folding
    # No Unicode normalization: NFC and NFD spellings are different paths.
    assert path_id_for(KEYS, "/caf\u00e9") != path_id_for(KEYS, "/cafe\u0301")

import os
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from formats.blocks import (
    BLOCK_HEADER_SIZE,
    BLOCK_OVERHEAD,
    FLAG_ZSTD,
    MAX_BLOCK_SIZE,
    block_decrypt,
    block_encrypt,
    block_id_for,
)
from formats.errors import FormatError, IntegrityError
from formats.keys import derive_keys

KEYS = derive_keys(bytes(range(32)))
OTHER = derive_keys(bytes(32))
TEXT = b"The quick brown fox jumps over the lazy dog. " * 2000


def _enc(data, keys=KEYS, **kw):
    bid = block_id_for(keys, data)
    return bid, block_encrypt(keys, bid, data, **kw)


@pytest.mark.parametrize("size", [0, 1, 100, 65536, 1 << 20, MAX_BLOCK_SIZE])
def test_round_trip_random(size):
    data = os.urandom(size)
    bid, blob = _enc(data)
    assert len(bid) == 32
    assert block_decrypt(KEYS, bid, blob) == data
    assert blob[1] == 0 and len(blob) == size + BLOCK_OVERHEAD  # stored raw


def test_accepts_memoryview_and_bytearray():
    data = bytearray(TEXT)
    bid = block_id_for(KEYS, memoryview(data))
    assert bid == block_id_for(KEYS, bytes(data))
    blob = block_encrypt(KEYS, bid, memoryview(data)[:])
    assert isinstance(blob, bytes)
    assert block_decrypt(KEYS, bid, memoryview(blob)) == TEXT


def test_compressible_data_shrinks_and_sets_flag():
    bid, blob = _enc(TEXT)
    assert blob[1] == FLAG_ZSTD
    assert len(blob) < len(TEXT) // 10
    assert block_decrypt(KEYS, bid, blob) == TEXT


@pytest.mark.parametrize("level", [1, 3, 19])
def test_levels(level):
    bid, blob = _enc(TEXT, level=level)
    assert block_decrypt(KEYS, bid, blob) == TEXT


def test_random_nonce_each_time():
    bid = block_id_for(KEYS, TEXT)
    a, b = block_encrypt(KEYS, bid, TEXT), block_encrypt(KEYS, bid, TEXT)
    assert a != b and a[18:30] != b[18:30]


def test_too_large_refused():
    data = bytes(MAX_BLOCK_SIZE + 1)
    with pytest.raises(ValueError):
        block_encrypt(KEYS, block_id_for(KEYS, data), data)


def test_block_ids_are_keyed():
    assert block_id_for(KEYS, b"x") != block_id_for(OTHER, b"x")
    assert block_id_for(KEYS, b"x") != block_id_for(KEYS, b"y")


@pytest.mark.parametrize("data", [b"hello haven", TEXT[:3000]], ids=["raw", "zstd"])
def test_tampering_any_byte_fails(data):
    bid, blob = _enc(data)
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(IntegrityError):
            block_decrypt(KEYS, bid, bytes(bad))


def test_tampering_large_blob_fails():
    bid, blob = _enc(os.urandom(1 << 20))
    rnd = random.Random(7)
    for i in [0, 1, 2, 17, 18, 29, 30, len(blob) // 2, len(blob) - 17, len(blob) - 1] + [
        rnd.randrange(len(blob)) for _ in range(20)
    ]:
        bad = bytearray(blob)
        bad[i] ^= 0x80
        with pytest.raises(IntegrityError):
            block_decrypt(KEYS, bid, bad)


@pytest.mark.parametrize("cut", [0, 1, 29, 45, -1])
def test_truncated_blob_fails(cut):
    bid, blob = _enc(b"hello haven")
    with pytest.raises(IntegrityError):
        block_decrypt(KEYS, bid, blob[:cut])


def test_appended_bytes_fail():
    bid, blob = _enc(b"hello haven")
    with pytest.raises(IntegrityError):
        block_decrypt(KEYS, bid, blob + b"\x00")


def test_wrong_block_id_fails():
    bid, blob = _enc(b"hello haven")
    other = block_id_for(KEYS, b"something else")
    with pytest.raises(IntegrityError, match="authentication failed"):
        block_decrypt(KEYS, other, blob)
    with pytest.raises(IntegrityError):
        block_decrypt(KEYS, bid[:31], blob)


def test_wrong_key_fails_with_key_message():
    bid, blob = _enc(b"hello haven")
    with pytest.raises(IntegrityError, match="encrypted with key"):
        block_decrypt(OTHER, bid, blob)


def test_unknown_version_and_flags():
    bid, blob = _enc(b"hello haven")
    with pytest.raises(IntegrityError, match="version"):
        block_decrypt(KEYS, bid, b"\x02" + blob[1:])
    with pytest.raises(IntegrityError, match="flags"):
        block_decrypt(KEYS, bid, blob[:1] + b"\x02" + blob[2:])


def test_content_not_matching_id_is_caught():
    # A buggy/malicious agent encrypts content under another block's id:
    # authentication passes, the id check must not.
    bid = block_id_for(KEYS, b"what the id claims")
    blob = block_encrypt(KEYS, bid, b"something else entirely")
    with pytest.raises(IntegrityError, match="does not match its id"):
        block_decrypt(KEYS, bid, blob)


def _forge(payload: bytes, flags: int, bid: bytes) -> bytes:
    """A correctly authenticated blob with arbitrary payload (only a key holder can do this)."""
    nonce = os.urandom(12)
    header = bytes((1, flags)) + KEYS.key_id_bytes + nonce
    ad = bytes((1, flags)) + KEYS.key_id_bytes + bid
    return header + AESGCM(KEYS.block_key).encrypt(nonce, payload, ad)


def test_decompression_bomb_bounded():
    big = bytes(MAX_BLOCK_SIZE + 1)
    bid = block_id_for(KEYS, big)
    blob = _forge(zstandard.ZstdCompressor().compress(big), FLAG_ZSTD, bid)
    with pytest.raises(IntegrityError, match="limit"):
        block_decrypt(KEYS, bid, blob)


def test_zstd_frame_without_size_or_with_garbage_rejected():
    data = TEXT
    bid = block_id_for(KEYS, data)
    obj = zstandard.ZstdCompressor().compressobj()
    no_size = obj.compress(data) + obj.flush()
    with pytest.raises(IntegrityError, match="content size"):
        block_decrypt(KEYS, bid, _forge(no_size, FLAG_ZSTD, bid))
    trailing = zstandard.ZstdCompressor().compress(data) + b"junk"
    with pytest.raises(IntegrityError):
        block_decrypt(KEYS, bid, _forge(trailing, FLAG_ZSTD, bid))
    with pytest.raises(IntegrityError):
        block_decrypt(KEYS, bid, _forge(b"not zstd at all", FLAG_ZSTD, bid))


def test_raw_oversize_rejected():
    big = bytes(MAX_BLOCK_SIZE + 1)
    bid = block_id_for(KEYS, big)
    with pytest.raises(IntegrityError):
        block_decrypt(KEYS, bid, _forge(big, 0, bid))


def test_integrity_error_is_format_and_value_error():
    assert issubclass(IntegrityError, FormatError) and issubclass(FormatError, ValueError)


def test_threads_round_trip():
    rnd = random.Random(3)
    inputs = [rnd.randbytes(rnd.randrange(1, 300_000)) + TEXT[: rnd.randrange(100_000)]
              for _ in range(40)]

    def work(i):
        data = inputs[i]
        bid, blob = _enc(data, level=(1, 3)[i % 2])
        return block_decrypt(KEYS, bid, blob) == data

    with ThreadPoolExecutor(4) as ex:
        assert all(ex.map(work, range(len(inputs))))


def test_header_size_constants():
    assert BLOCK_HEADER_SIZE == 30 and BLOCK_OVERHEAD == 46

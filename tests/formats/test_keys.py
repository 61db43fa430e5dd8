import pyfastcdc
import pytest

from formats.keys import KEY_SIZE, KeySet, derive_keys, generate_user_key, key_id_for


def test_generate_user_key():
    a, b = generate_user_key(), generate_user_key()
    assert len(a) == KEY_SIZE == 32 and a != b


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33), "x" * 32])
def test_wrong_key_size_rejected(bad):
    with pytest.raises(ValueError):
        key_id_for(bad)
    with pytest.raises(ValueError):
        derive_keys(bad)


def test_sub_keys_independent_and_sized():
    keys = derive_keys(generate_user_key())
    subkeys = [keys.block_key, keys.block_id_key, keys.manifest_key, keys.path_id_key]
    assert all(len(k) == 32 for k in subkeys)
    assert len(set(subkeys)) == 4
    assert len(keys.key_id) == 32 and keys.key_id_bytes == bytes.fromhex(keys.key_id)


def test_chunker_seed_in_pyfastcdc_range():
    for _ in range(50):
        seed = derive_keys(generate_user_key()).chunker_seed
        assert 0 < seed < 2**63
    pyfastcdc.FastCDC(1024, seed=2**63 - 1)  # the largest seed we can produce is accepted


def test_repr_hides_key_material():
    user_key = generate_user_key()
    keys = derive_keys(user_key)
    text = repr(keys) + str(keys) + f"{keys}"
    assert keys.key_id in text
    for secret in (user_key, keys.block_key, keys.block_id_key, keys.manifest_key,
                   keys.path_id_key):
        assert secret.hex() not in text and repr(secret) not in text
    assert str(keys.chunker_seed) not in text


def test_keyset_is_frozen():
    keys = derive_keys(bytes(32))
    with pytest.raises(AttributeError):
        keys.block_key = bytes(32)  # type: ignore[misc]
    assert isinstance(keys, KeySet) and keys == derive_keys(bytes(32))

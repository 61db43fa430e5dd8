"""Directory listings (docs/formats.md §9): the vectors, the round trip, and what readers refuse."""
import uuid

import pytest

from formats.directories import DirectoryEntry, listing_from_json, listing_id_for, listing_to_json
from formats.errors import FormatError, IntegrityError
from formats.keys import derive_keys
from formats.manifests import Manifest, listing_manifest, manifest_decrypt, manifest_encrypt, path_id_for
from formats.reassembly import restore_selection

KEYS = derive_keys(bytes(range(32)))
ARCHIVE = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
VERSION = uuid.UUID("ffeeddcc-bbaa-9988-7766-554433221100")
ENTRIES = [DirectoryEntry("/home/alice", 0o40755, 1700000000000000000),
           DirectoryEntry("/home/alice/empty", 0o40700, 1700000000111111111),
           DirectoryEntry("/home/alice/café", 0o42775, -5)]
LISTING_ID = "06992467a4c9ba300b53accd42967113aebd0239102761fa3d42b13dbc93883f"
PLAINTEXT = ('{"kind":"directories","modes":[16877,17917,16832],"mtimes_ns":[1700000000000000000,-5,'
             '1700000000111111111],"paths":["","cafÃ©","empty"],"root":"L2hvbWUvYWxpY2U="}').encode()
BLOB = bytes.fromhex(
    "02d8a6df8e610a7c483ef65e7caa9dbeb0000102030405060708090a0b"
    "290c5f5f8ce28545eb5e8aa75e39ef258c99d243b67bdbb08dd0404f3685d3d9cdc34d7a62bda622e8"
    "2046609bfde8b9996025bc80541e73782fed0f151a320e39e1dddbfebcfb786c574408310d7256dbc1"
    "43eb8014107310311fbc6d64435c9ad5518403676c23f87be14dd1e80e1eeea802c16b99a2c82bb4ed"
    "7e138e0b0215b8fa1cee020e95769bbbf34682c9a0a4c2a28433f577a2dffaa2")


def test_listing_id_vector_and_no_collision_with_the_path_id():
    assert listing_id_for(KEYS, "/home/alice") == LISTING_ID
    assert listing_id_for(KEYS, "/home/alice") != path_id_for(KEYS, "/home/alice")


def test_plaintext_vector():
    manifest = listing_manifest("/home/alice", ENTRIES)
    assert listing_to_json(manifest.path, manifest.directories) == PLAINTEXT
    root, entries = listing_from_json(PLAINTEXT)
    assert root == "/home/alice" and entries == manifest.directories


def test_decryption_vector():
    manifest = manifest_decrypt(KEYS, BLOB, archive_id=ARCHIVE, path_id=LISTING_ID, version_id=VERSION)
    assert manifest.is_listing and manifest.path == "/home/alice" and manifest.size == 0
    assert {e.path: (e.mode, e.mtime_ns) for e in manifest.directories} == {
        e.path: (e.mode, e.mtime_ns) for e in ENTRIES}


def test_round_trip_with_an_undecodable_name_and_a_root_of_slash():
    odd = "/" + "caf\udce9"  # the byte 0xe9 as Python's os functions give it
    entries = [DirectoryEntry("/", 0o40755, 1), DirectoryEntry(odd, 0o40700, 2), DirectoryEntry(odd + "/x", 0o40700, 3)]
    manifest = listing_manifest("/", entries)
    pid = listing_id_for(KEYS, "/")
    blob = manifest_encrypt(KEYS, manifest, archive_id=ARCHIVE, path_id=pid, version_id=VERSION)
    back = manifest_decrypt(KEYS, blob, archive_id=ARCHIVE, path_id=pid, version_id=VERSION)
    assert back.directories == manifest.directories


def test_the_version_byte_is_authenticated_and_the_listing_id_is_bound():
    with pytest.raises(IntegrityError, match="authentication failed"):
        manifest_decrypt(KEYS, b"\x01" + BLOB[1:], archive_id=ARCHIVE, path_id=LISTING_ID, version_id=VERSION)
    with pytest.raises(IntegrityError):
        manifest_decrypt(KEYS, BLOB, archive_id=ARCHIVE, path_id=path_id_for(KEYS, "/home/alice"), version_id=VERSION)
    with pytest.raises(IntegrityError, match="authentication failed"):  # 3: a dense file manifest (§5.3)
        manifest_decrypt(KEYS, b"\x03" + BLOB[1:], archive_id=ARCHIVE, path_id=LISTING_ID, version_id=VERSION)
    with pytest.raises(IntegrityError, match="version 9"):
        manifest_decrypt(KEYS, b"\x09" + BLOB[1:], archive_id=ARCHIVE, path_id=LISTING_ID, version_id=VERSION)


def test_a_listing_cannot_be_encrypted_under_a_path_id():
    with pytest.raises(ValueError, match="listing id"):
        manifest_encrypt(KEYS, listing_manifest("/home/alice", ENTRIES), archive_id=ARCHIVE,
                         path_id=path_id_for(KEYS, "/home/alice"), version_id=VERSION)


@pytest.mark.parametrize("plaintext, problem", [
    (b'{"kind":"files","modes":[],"mtimes_ns":[],"paths":[],"root":"Lw=="}', "kind"),
    (b'{"kind":"directories","modes":[16877],"mtimes_ns":[],"paths":[""],"root":"Lw=="}', "one length"),
    (b'{"kind":"directories","modes":[33188],"mtimes_ns":[1],"paths":["a"],"root":"Lw=="}', "S_IFDIR"),
    (b'{"kind":"directories","modes":[16877,16877],"mtimes_ns":[1,1],"paths":["b","a"],"root":"Lw=="}', "sorted"),
    (b'{"kind":"directories","modes":[16877],"mtimes_ns":[1],"paths":["a/../b"],"root":"Lw=="}', "normalized"),
    (b'{"kind":"directories","modes":[16877],"mtimes_ns":[1],"paths":["\\u0100"],"root":"Lw=="}', "Unicode"),
    (b'{"kind":"directories","modes":[16877],"mtimes_ns":[1],"paths":[""],"root":"eA=="}', "absolute"),
])
def test_malformed_listings_are_refused(plaintext, problem):
    with pytest.raises(FormatError, match=problem):
        listing_from_json(plaintext)


def test_restore_selection_leaves_listings_out():
    file = Manifest(path="/home/alice/a.txt", size=0, mtime_ns=1, mode=0o100644)
    assert restore_selection([listing_manifest("/home/alice", ENTRIES), file]) == [file]

"""manifest_seal (the backup's way to encrypt a new version's manifest) gives the same path id and
the same readable manifest as path_id_for and manifest_encrypt."""
import os
import uuid

import pytest

from formats.directories import DirectoryEntry, listing_id_for
from formats.keys import derive_keys
from formats.manifests import Manifest, listing_manifest, manifest_decrypt, manifest_seal, path_id_for

KEYS = derive_keys(bytes(range(32)))
ARCHIVE = uuid.UUID("00000000-0000-0000-0000-0000000000aa")


@pytest.mark.parametrize("path", ["/home/a/notes.txt", "/", "/d/\udcff-not-utf8", "/x/é/ü.bin"])
def test_a_sealed_manifest_reads_back_under_the_path_id_of_its_path(path):
    manifest = Manifest(path=path, size=5, mtime_ns=-3, mode=0o100644, block_ids=[os.urandom(32)], block_sizes=[5])
    version_id = uuid.uuid4()
    path_id, blob = manifest_seal(KEYS, manifest, archive_id=ARCHIVE, version_id=version_id, nonce=os.urandom(12))
    assert path_id == path_id_for(KEYS, path)
    assert manifest_decrypt(KEYS, blob, archive_id=ARCHIVE, path_id=path_id, version_id=version_id) == manifest
    _, again = manifest_seal(KEYS, manifest, archive_id=ARCHIVE, version_id=version_id)
    assert again[1 + 16:1 + 16 + 12] != blob[1 + 16:1 + 16 + 12]  # a nonce of its own when none is given


def test_a_sealed_listing_has_the_listing_id():
    listing = listing_manifest("/home", [DirectoryEntry(path="/home/a", mode=0o40755, mtime_ns=1)])
    version_id = uuid.uuid4()
    path_id, blob = manifest_seal(KEYS, listing, archive_id=ARCHIVE, version_id=version_id)
    assert path_id == listing_id_for(KEYS, "/home")
    assert manifest_decrypt(KEYS, blob, archive_id=ARCHIVE, path_id=path_id, version_id=version_id) == listing


@pytest.mark.parametrize("path", ["relative", "/a//b", "/a/./b", "/a/../b", "/a/", "/a/.", "/a/..", "/nul\0"])
def test_a_path_that_is_not_canonical_is_refused(path):
    manifest = Manifest(path=path, size=0, mtime_ns=0, mode=0)
    with pytest.raises(ValueError):
        manifest_seal(KEYS, manifest, archive_id=ARCHIVE, version_id=uuid.uuid4())

"""Restore results on the pack storage (archives/restore_results.py): written once from a scratch
file, read back in ranged chunks with a Content-Length, invisible to pack listings, deleted cleanly."""
import os

import pytest

from archives.restore_results import (
    DOWNLOAD_CHUNK,
    restore_scratch_dir,
    result_delete,
    result_exists,
    result_open,
    result_response,
    result_spool,
)
from archives.storage import pack_storage

KEY = "restore-results/org/job.zip"


@pytest.fixture
def scratch(settings, tmp_path):
    settings.DATA_DIR = tmp_path / "var"
    return restore_scratch_dir()


def test_a_spooled_result_is_stored_once_and_the_scratch_file_is_gone(scratch):
    data = os.urandom(2 * DOWNLOAD_CHUNK + 5)
    with result_spool(KEY) as spool:
        spool.write_bytes(data)
    assert pack_storage().read_all(KEY) == data and result_exists(KEY)
    assert not list(scratch.iterdir())
    assert KEY not in set(pack_storage().keys("")) and not [s for s in pack_storage().stats("") if s.key == KEY]


def test_a_failure_while_writing_stores_nothing_and_leaves_no_scratch(scratch):
    with pytest.raises(RuntimeError), result_spool(KEY) as spool:
        spool.write_bytes(b"half a zip")
        raise RuntimeError("the worker failed")
    assert not result_exists(KEY) and not list(scratch.iterdir())


def test_the_download_streams_in_chunks_with_its_length(scratch):
    data = os.urandom(2 * DOWNLOAD_CHUNK + 5)
    with result_spool(KEY) as spool:
        spool.write_bytes(data)
    response = result_response(result_open(KEY), content_type="application/zip", filename="r.zip")
    assert response["Content-Length"] == str(len(data)) and "attachment" in response["Content-Disposition"]
    chunks = list(response.streaming_content)
    response.close()
    assert [len(c) for c in chunks] == [DOWNLOAD_CHUNK, DOWNLOAD_CHUNK, 5] and b"".join(chunks) == data


def test_seek_and_partial_reads(scratch):
    with result_spool(KEY) as spool:
        spool.write_bytes(b"0123456789")
    with result_open(KEY) as result:
        assert result.seek(-3, os.SEEK_END) == 7 and result.read() == b"789"
        result.seek(2)
        assert result.read(3) == b"234" and result.tell() == 5


def test_a_deleted_result_is_not_found_and_deleting_twice_is_fine(scratch):
    with result_spool(KEY) as spool:
        spool.write_bytes(b"zip")
    result_delete(KEY)
    result_delete(KEY)
    with pytest.raises(FileNotFoundError):
        result_open(KEY)


def test_only_reserved_keys_are_stored_and_a_legacy_key_names_a_scratch_file(scratch, tmp_path):
    with pytest.raises(ValueError, match="restore-results/"), result_spool("org/job.zip") as spool:
        spool.write_bytes(b"zip")
    assert not result_exists("org/job.zip")  # a result from before: gone, never a pack key
    legacy = scratch / "org" / "job.zip"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"zip")
    outside = tmp_path / "outside.zip"
    outside.write_bytes(b"keep")
    result_delete("../../outside.zip")
    result_delete("org/job.zip")
    assert not legacy.exists() and outside.read_bytes() == b"keep"

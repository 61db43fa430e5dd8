"""Reading a changed file (agent/reading.py): a small file in four system calls gives the same
block as the general path, and a file that changed since the scan is read whole and flagged."""
import os

import pytest

from agent.reading import read_blocks
from agent.scan import FileEntry
from formats.blocks import block_id_for
from formats.chunking import MIN_CHUNK, read_chunks
from formats.keys import derive_keys

KEYS = derive_keys(bytes(range(32)))


def _entry(path) -> FileEntry:
    st = os.lstat(path)
    return FileEntry(str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode & 0o7777, st.st_dev)


def test_a_small_file_is_one_block_as_the_general_path_cuts_it(tmp_path):
    path = tmp_path / "small.txt"
    path.write_bytes(b"small file content\n" * 100)
    blocks, read, unstable = read_blocks(KEYS, _entry(path))
    chunks, _ = read_chunks(KEYS, path)
    assert [(block_id, bytes(data)) for block_id, data in blocks] == [(block_id_for(KEYS, c), bytes(c)) for c in chunks]
    assert read == path.stat().st_size and not unstable


def test_an_empty_file_has_no_blocks(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert read_blocks(KEYS, _entry(path)) == ([], 0, False)


def test_a_file_grown_past_one_chunk_since_the_scan_is_read_whole_and_flagged(tmp_path):
    path = tmp_path / "growing.bin"
    path.write_bytes(b"a" * 1000)
    entry = _entry(path)
    path.write_bytes(os.urandom(3 * MIN_CHUNK))
    blocks, read, unstable = read_blocks(KEYS, entry)
    assert read == 3 * MIN_CHUNK and unstable
    assert b"".join(bytes(data) for _, data in blocks) == path.read_bytes()


def test_a_file_that_shrank_since_the_scan_is_flagged(tmp_path):
    path = tmp_path / "shrinking.txt"
    path.write_bytes(b"b" * 5000)
    entry = _entry(path)
    path.write_bytes(b"b" * 10)
    blocks, read, unstable = read_blocks(KEYS, entry)
    assert read == 10 and unstable and bytes(blocks[0][1]) == b"b" * 10


@pytest.mark.parametrize("size", [100, MIN_CHUNK * 3], ids=["small", "large"])
@pytest.mark.parametrize("swap", ["symlink", "fifo", "other file"])
def test_what_was_put_in_a_files_place_since_the_scan_is_not_read(tmp_path, swap, size):
    """A user swaps a scanned file for a symlink to a file only root may read (the agent may run
    as root), for a FIFO (a read would hang), or for another file: nothing is read, the file
    fails for this run and is read next time."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"root only " * (size // 10))
    path = tmp_path / "mine.txt"
    path.write_bytes(b"x" * size)
    entry = _entry(path)
    (tmp_path / "other").write_bytes(b"y" * size)  # made while the scanned file exists: another inode
    path.unlink()
    if swap == "symlink":
        os.symlink(secret, path)
    elif swap == "fifo":
        os.mkfifo(path)
    else:
        os.rename(tmp_path / "other", path)
    with pytest.raises(OSError):
        read_blocks(KEYS, entry)


def test_a_big_file_streamed_by_the_engine_is_checked_the_same_way(tmp_path, monkeypatch):
    """Files over BackupEngine.WHOLE_FILE_LIMIT are cut by the engine's main thread, not
    read_blocks: a symlink swapped in after the scan is not followed there either."""
    from agent.backup import BackupEngine, scan
    from agent.state import LocalState
    from formats.frames import frames_decode
    from tests.agent.fake_server import EverythingMissingServer

    class Recording(EverythingMissingServer):
        uploaded_bytes = b""

        def uploaded(self, batch) -> None:
            Recording.uploaded_bytes += b"".join(batch)

    monkeypatch.setattr(BackupEngine, "WHOLE_FILE_LIMIT", 64 * 1024)
    source = tmp_path / "home"
    source.mkdir()
    secret = tmp_path / "secret"
    secret.write_bytes(os.urandom(256 * 1024))
    big = source / "big.bin"
    big.write_bytes(os.urandom(256 * 1024))
    (tmp_path / "state").mkdir()
    state = LocalState(tmp_path / "state", "00000000-0000-0000-0000-0000000000aa")
    scanned = scan([str(source)], state.lookup_all())
    big.unlink()
    os.symlink(secret, big)
    summary = BackupEngine(client=Recording(), keys=KEYS, archive_id="00000000-0000-0000-0000-0000000000aa",
                           state=state).run([str(source)], scanned)
    assert [error for error in summary.errors if str(big) in error], summary.errors
    uploaded = {bytes(frame.block_id) for _, frame in frames_decode(Recording.uploaded_bytes)} \
        if Recording.uploaded_bytes else set()
    assert not uploaded & {block_id_for(KEYS, bytes(c)) for c in read_chunks(KEYS, secret)[0]}

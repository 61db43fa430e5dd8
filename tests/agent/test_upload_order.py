"""A batch's blocks are uploaded in random order, not the order they were read and encrypted
(docs/formats.md §2: with chunk sizes, the order would say which blocks make up which file)."""
from agent.backup import BackupEngine
from agent.state import LocalState
from formats.blocks import block_id_for
from formats.frames import frames_decode
from formats.keys import derive_keys
from tests.agent.fake_server import EverythingMissingServer

KEYS = derive_keys(bytes(range(32)))
FILES = 200  # one block each; all in one batch


class RecordingServer(EverythingMissingServer):
    """Every block is missing, each uploaded batch is kept."""

    def __init__(self):
        self.batches: list[bytes] = []

    def uploaded(self, batch) -> None:
        self.batches.append(b"".join(batch))


def _uploaded_order(tmp_path, name: str, source) -> list[bytes]:
    server = RecordingServer()
    (tmp_path / name).mkdir()
    state = LocalState(tmp_path / name, "00000000-0000-0000-0000-0000000000aa")
    BackupEngine(client=server, keys=KEYS, archive_id="00000000-0000-0000-0000-0000000000aa",
                 state=state).run([str(source)])
    assert len(server.batches) == 1
    return [bytes(frame.block_id) for _, frame in frames_decode(server.batches[0])]


def test_blocks_of_a_batch_are_uploaded_in_random_order(tmp_path):
    source = tmp_path / "data"
    source.mkdir()
    contents = {f"file-{index:03}.txt": f"content of file {index}".encode() for index in range(FILES)}
    for name, data in contents.items():
        (source / name).write_bytes(data)
    # Files are read in path order, one block each, and encrypted in that order.
    produced = [block_id_for(KEYS, contents[name]) for name in sorted(contents)]

    first = _uploaded_order(tmp_path, "first", source)
    second = _uploaded_order(tmp_path, "second", source)
    assert sorted(first) == sorted(produced) == sorted(second)  # every block, once
    assert first != produced and second != produced
    # A fixed reordering (sorted, reversed, ...) would give the same order twice; a random one
    # does so with probability 1/200!.
    assert first != second

"""The restore's side of `any_order` fetches: frames placed by the block id in their header, each
one asked for exactly once, every block verified; temporaries created in one pass."""
import os
import stat
import uuid

import pytest

from agent.restore_dest import PREALLOCATE, Destination, DestinationError
from formats.blocks import block_encrypt, block_id_for
from formats.frames import FRAME_BLOCK, frame_encode
from formats.keys import derive_keys
from formats.reassembly import ReassemblyError, frames_open

KEYS = derive_keys(bytes(range(32)))
ARCHIVE = uuid.UUID(int=7)


def _frames(texts: list[bytes]) -> tuple[list[bytes], dict[bytes, bytes]]:
    """Block ids and their frames."""
    ids = [block_id_for(KEYS, text) for text in texts]
    return ids, {block_id: frame_encode(FRAME_BLOCK, ARCHIVE, block_id, block_encrypt(KEYS, block_id, text))
                 for block_id, text in zip(ids, texts)}


def _open(asked, body, texts):
    sizes = {block_id_for(KEYS, t): len(t) for t in texts}
    return list(frames_open(KEYS, asked, body, sizes=sizes, archive_id=ARCHIVE))


TEXTS = [b"alpha", b"beta beta", b"gamma gamma gamma"]


def test_frames_in_any_order_are_placed_by_their_header():
    ids, frames = _frames(TEXTS)
    body = frames[ids[2]] + frames[ids[0]] + frames[ids[1]]
    assert dict(_open(ids, body, TEXTS)) == dict(zip(ids, TEXTS))
    assert [block_id for block_id, _ in _open(ids, body, TEXTS)] == [ids[2], ids[0], ids[1]]


@pytest.mark.parametrize("case", ["missing", "repeated", "not asked", "damaged", "other archive"])
def test_anything_but_each_block_asked_for_once_and_intact_is_refused(case):
    ids, frames = _frames(TEXTS)
    asked, body = ids, b"".join(frames[b] for b in ids)
    if case == "missing":
        body = frames[ids[0]] + frames[ids[1]]
    elif case == "repeated":
        asked, body = ids[:2], frames[ids[0]] + frames[ids[0]]
    elif case == "not asked":
        asked = ids[:2]
        body = frames[ids[0]] + frames[ids[2]]
    elif case == "damaged":
        damaged = bytearray(frames[ids[1]])
        damaged[-1] ^= 1
        body = frames[ids[0]] + bytes(damaged) + frames[ids[2]]
    else:
        body = frames[ids[0]] + frames[ids[1]] + frame_encode(
            FRAME_BLOCK, uuid.UUID(int=8), ids[2], block_encrypt(KEYS, ids[2], TEXTS[2]))
    with pytest.raises(ReassemblyError):
        _open(asked, body, TEXTS)


def test_temporaries_are_created_private_in_one_pass(tmp_path):
    dest = tmp_path / "dest"
    for folder in ("a", "a/b", "c"):
        (dest / folder).mkdir(parents=True, exist_ok=True)
    (dest / "a" / ".left.txt.haven-restore").write_bytes(b"from an interrupted restore")
    items = [(("a", "left.txt"), 3), (("a", "small.txt"), 10), (("a", "b", "big.bin"), PREALLOCATE + 1),
             (("c", "empty"), 0), (("top.txt",), 5)]
    destination = Destination(dest, cache_size=1)
    try:
        identities = destination.temporaries_create(items)
    finally:
        destination.close()
    assert len(identities) == len(items)
    for (parts, size), identity in zip(items, identities):
        path = dest.joinpath(*parts[:-1], f".{parts[-1]}.haven-restore")
        st = path.lstat()
        assert (st.st_dev, st.st_ino) == identity and stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_size == (size if size > PREALLOCATE else 0)  # a small file is written in one write


def test_one_pass_creation_never_follows_a_symlinked_folder(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "a")
    destination = Destination(dest)
    try:
        with pytest.raises(DestinationError):
            destination.temporaries_create([(("a", "f.txt"), 1)])
    finally:
        destination.close()
    assert not list(outside.iterdir())


@pytest.mark.parametrize("path", ["/../etc/passwd", "/home/../../x", "/a/..", ".."])
def test_a_path_that_would_leave_the_destination_is_refused(path):
    from agent.restore import RestoreError, _relative

    with pytest.raises(RestoreError, match="leaves the destination"):
        _relative(path)


@pytest.mark.parametrize(("path", "relative"), [("/home/a/..b", "home/a/..b"), ("/x/.../y", "x/.../y"),
                                                ("/a..", "a.."), ("/home/a", "home/a")])
def test_dots_within_a_name_are_only_a_name(path, relative):
    from agent.restore import _relative

    assert _relative(path) == relative

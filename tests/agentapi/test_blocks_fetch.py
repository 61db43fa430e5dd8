"""The block fetch endpoint with `any_order`: each distinct block once, in pack order, neighbouring
frames of a pack read together and streamed; every check (404, 413, tenancy) as without it."""
import pytest

from archives.models import Block
from archives.selectors import COALESCE_GAP, read_runs
from formats.frames import frames_decode
from tests.archives.conftest import block, escrowed, pack_dir, upload  # noqa: F401 - autouse fixtures

FETCH = "/api/v1/archives/{}/blocks/fetch"


def _batch(client, archive, texts: list[bytes]) -> list[bytes]:
    """Upload the blocks as one batch (one pack); their ids in batch order."""
    built = [block(archive, text) for text in texts]
    assert upload(client, archive, b"".join(frame for _, frame in built)).status_code == 201
    return [block_id for block_id, _ in built]


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def _ids(body: bytes) -> list[bytes]:
    return [bytes(frame.block_id) for _, frame in frames_decode(body)]


def test_any_order_answers_each_block_once_in_pack_order(enrolled, alice):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    first = _batch(client, archive, [f"first {i}".encode() for i in range(3)])
    second = _batch(client, archive, [f"second {i}".encode() for i in range(2)])
    asked = [second[1], first[2], first[0], second[0], first[1], first[0]]
    response = client.post(FETCH.format(archive), {"block_ids": [b.hex() for b in asked], "any_order": True},
                           format="json")
    assert response.status_code == 200 and response.streaming
    body = _body(response)
    assert int(response["Content-Length"]) == len(body)
    rows = {bytes(b.block_id): b for b in Block.objects.select_related("pack")}
    expected = sorted(set(asked), key=lambda b: (rows[b].pack.storage_key, rows[b].offset))
    assert _ids(body) == expected


def test_without_the_flag_the_order_asked_is_kept_repeats_included(enrolled, alice):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    ids = _batch(client, archive, [f"kept {i}".encode() for i in range(3)])
    asked = [ids[2], ids[0], ids[2]]
    response = client.post(FETCH.format(archive), {"block_ids": [b.hex() for b in asked]}, format="json")
    assert response.status_code == 200 and _ids(_body(response)) == asked


def test_neighbouring_frames_of_a_pack_are_one_read(enrolled, alice, monkeypatch):
    from archives import storage

    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    ids = _batch(client, archive, [f"near {i}".encode() * 50 for i in range(6)])
    reads = []
    original = storage.PackReader.read_at
    monkeypatch.setattr(storage.PackReader, "read_at",
                        lambda self, offset, length: reads.append((offset, length)) or original(self, offset, length))
    wanted = [ids[5], ids[0], ids[3]]  # gaps of one and two frames between them
    response = client.post(FETCH.format(archive), {"block_ids": [b.hex() for b in wanted], "any_order": True},
                           format="json")
    assert response.status_code == 200
    offsets = {bytes(b.block_id): b.offset for b in Block.objects.all()}
    assert _ids(_body(response)) == sorted(wanted, key=offsets.get)
    assert len(reads) == 1


def test_any_order_keeps_every_refusal(enrolled, alice, bob, settings):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    ids = _batch(client, archive, [b"mine", b"also mine"])
    absent, _ = block(archive, b"never sent")
    asked = {"block_ids": [ids[0].hex(), absent.hex()], "any_order": True}
    response = client.post(FETCH.format(archive), asked, format="json")
    assert response.status_code == 404 and response.json()["block_ids"] == [absent.hex()]
    foreign = enrolled(bob)
    response = foreign.post(FETCH.format(archive), {"block_ids": [ids[0].hex()], "any_order": True}, format="json")
    assert response.status_code == 404 and not response.streaming
    settings.HAVEN_MAX_BATCH_BYTES = 10
    response = client.post(FETCH.format(archive), {"block_ids": [ids[0].hex()], "any_order": True}, format="json")
    assert response.status_code == 413


def test_any_order_must_be_a_boolean(enrolled, alice):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    ids = _batch(client, archive, [b"x"])
    response = client.post(FETCH.format(archive), {"block_ids": [ids[0].hex()], "any_order": "sometimes"},
                           format="json")
    assert response.status_code == 400


@pytest.mark.parametrize(("located", "expected"), [
    # adjacent frames: one read, one span
    ([("p", 0, 10), ("p", 10, 5)], [("p", 0, 15, [(0, 15)])]),
    # a small gap is read and dropped
    ([("p", 0, 10), ("p", 20, 5)], [("p", 0, 25, [(0, 10), (20, 25)])]),
    # a gap above the limit, or another pack: separate reads
    ([("p", 0, 10), ("p", 10 + COALESCE_GAP + 1, 5), ("q", 0, 5)],
     [("p", 0, 10, [(0, 10)]), ("p", 10 + COALESCE_GAP + 1, 5, [(0, 5)]), ("q", 0, 5, [(0, 5)])]),
])
def test_read_runs_coalesce_within_a_pack(located, expected):
    assert read_runs(located) == expected


def test_read_runs_stay_bounded():
    located = [("p", i * 100, 100) for i in range(10)]
    runs = read_runs(located, max_read=300)
    assert [(offset, length) for _, offset, length, _ in runs] == [(0, 300), (300, 300), (600, 300), (900, 100)]

"""Every PackStorage method keeps one contract on the local folder and on S3 (a real SeaweedFS)."""
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from archives.storage import LocalPackStorage, PackExists, pack_storage
from archives.storage_s3 import S3PackStorage

KEY = "org/archive/ab/one.pack"


@pytest.fixture(params=["local", "s3"])
def storage(request, settings, tmp_path):
    if request.param == "s3":
        request.getfixturevalue("s3_pack_storage")
    else:
        settings.PACK_STORAGE = ""
        settings.PACK_DIR = tmp_path / "packs"
    return pack_storage()


def test_settings_choose_the_backend(storage, request):
    expected = S3PackStorage if "s3" in request.node.callspec.id else LocalPackStorage
    assert isinstance(storage, expected)


def test_put_then_read_whole_and_ranged(storage):
    storage.put(KEY, [b"HVNPACK1", memoryview(b"0123456789"), b"", bytearray(b"abc")])
    assert storage.read_all(KEY) == b"HVNPACK10123456789abc"
    assert storage.read_at(KEY, 8, 4) == b"0123"
    assert storage.read_at(KEY, 18, 3) == b"abc"
    assert storage.size(KEY) == 21 and storage.exists(KEY)
    with storage.open_reader(KEY) as reader:
        assert [reader.read_at(8, 2), reader.read_at(0, 8), reader.read_at(20, 1)] == [b"01", b"HVNPACK1", b"c"]


def test_put_accepts_any_iterable_of_buffers_without_a_length(storage):
    def streamed():  # as a streaming upload hands its slices over, one at a time
        for i in range(1000):
            yield memoryview(bytes([i % 256]) * 17)

    storage.put(KEY, streamed())
    assert storage.read_all(KEY) == b"".join(bytes([i % 256]) * 17 for i in range(1000))


def test_a_body_that_fails_half_way_leaves_no_pack(storage):
    def broken():
        yield b"HVNPACK1"
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        storage.put(KEY, broken())
    assert not storage.exists(KEY) and list(storage.keys("")) == []


def test_a_pack_is_written_once(storage):
    storage.put(KEY, [b"first"])
    with pytest.raises(PackExists):
        storage.put(KEY, [b"second"])
    assert storage.read_all(KEY) == b"first"


def test_a_read_past_the_end_is_an_error_never_a_short_answer(storage):
    storage.put(KEY, [b"HVNPACK1data"])
    with pytest.raises(OSError):
        storage.read_at(KEY, 8, 10)
    with pytest.raises(OSError), storage.open_reader(KEY) as reader:
        reader.read_at(100, 4)


def test_a_missing_pack_is_file_not_found(storage):
    with pytest.raises(FileNotFoundError):
        storage.read_all(KEY)
    with pytest.raises(FileNotFoundError):
        storage.read_at(KEY, 0, 8)
    with pytest.raises(FileNotFoundError):
        storage.size(KEY)
    assert not storage.exists(KEY)


def test_listing_gives_keys_sizes_and_times_under_a_prefix(storage):
    before = timezone.now() - timedelta(minutes=5)
    for key, body in [("org/a/00/x.pack", b"1"), ("org/a/01/y.pack", b"22"), ("org/ab/00/z.pack", b"333")]:
        storage.put(key, [body])
    storage.meta_write("watermark.json", b"{}")
    assert sorted(storage.keys("")) == ["org/a/00/x.pack", "org/a/01/y.pack", "org/ab/00/z.pack"]
    assert sorted(storage.keys("org/a")) == ["org/a/00/x.pack", "org/a/01/y.pack"]  # a folder, not a string prefix
    stats = {stat.key: stat for stat in storage.stats("org")}
    assert {key: stat.size for key, stat in stats.items()} == {
        "org/a/00/x.pack": 1, "org/a/01/y.pack": 2, "org/ab/00/z.pack": 3}
    for stat in stats.values():
        assert stat.modified_at.tzinfo is not None and before < stat.modified_at < timezone.now() + timedelta(minutes=5)
    assert list(storage.keys("nothing/here")) == []


def test_s3_listing_pages_through_more_than_a_thousand_packs(s3_pack_storage):
    storage = pack_storage()
    keys = [f"org/many/{i:04d}.pack" for i in range(1005)]  # more than one list_objects_v2 page
    for key in keys:
        storage.put(key, [b"x"])
    assert list(storage.keys("org/many")) == keys
    assert [stat.key for stat in storage.stats("org")] == keys


def test_quarantine_round_trip_keeps_the_quarantine_time(storage):
    storage.put(KEY, [b"HVNPACK1", b"data"])
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    storage.quarantine(KEY, at=at)
    assert not storage.exists(KEY) and list(storage.keys("")) == [] and list(storage.stats("")) == []
    assert [(s.key, s.size, s.modified_at) for s in storage.quarantined("")] == [(KEY, 12, at)]
    assert [s.key for s in storage.quarantined("org/archive")] == [KEY]
    assert list(storage.quarantined("org/other")) == []
    assert storage.quarantined_read_all(KEY) == b"HVNPACK1data"

    storage.quarantine_restore(KEY)
    assert storage.read_all(KEY) == b"HVNPACK1data" and list(storage.quarantined("")) == []


def test_a_quarantined_pack_is_never_restored_over_a_live_one(storage):
    storage.put(KEY, [b"old"])
    storage.quarantine(KEY, at=timezone.now())
    storage.put(KEY, [b"live"])
    with pytest.raises(PackExists):
        storage.quarantine_restore(KEY)
    assert storage.read_all(KEY) == b"live" and storage.quarantined_read_all(KEY) == b"old"


def test_quarantined_delete_removes_it_for_good(storage):
    storage.put(KEY, [b"x"])
    storage.quarantine(KEY, at=timezone.now())
    storage.quarantined_delete(KEY)
    assert list(storage.quarantined("")) == [] and not storage.exists(KEY)
    with pytest.raises(FileNotFoundError):
        storage.quarantined_read_all(KEY)


def test_meta_records_are_replaced_whole_and_kept_apart_from_packs(storage):
    assert storage.meta_read("gc/watermark.json") is None
    storage.meta_write("gc/watermark.json", b'{"a": 1}')
    storage.meta_write("gc/watermark.json", b'{"a": 2}')
    assert storage.meta_read("gc/watermark.json") == b'{"a": 2}'
    assert list(storage.keys("")) == []
    storage.meta_delete("gc/watermark.json")
    storage.meta_delete("gc/watermark.json")  # absent is fine
    assert storage.meta_read("gc/watermark.json") is None


def test_delete_removes_a_live_pack_and_absent_is_fine(storage):
    storage.put(KEY, [b"x"])
    storage.delete(KEY)
    storage.delete(KEY)
    assert not storage.exists(KEY) and list(storage.keys("")) == []


@pytest.mark.parametrize("bad", ["../escape.pack", "/abs.pack", ".quarantine/x.pack", ".haven/x.pack"])
def test_keys_cannot_escape_or_name_reserved_areas(storage, bad):
    with pytest.raises(ValueError):
        storage.put(bad, [b"x"])


def test_one_boto3_client_per_process_even_when_threads_race_for_it(monkeypatch):
    import threading

    from archives import storage_s3

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    storage_s3.s3_clients_reset()
    barrier, clients = threading.Barrier(8), []

    def get():
        barrier.wait()
        clients.append(storage_s3.s3_client())

    threads = [threading.Thread(target=get) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(client) for client in clients}) == 1
    monkeypatch.setattr(storage_s3.os, "getpid", lambda: -1)  # as in a forked worker: a client of its own
    assert storage_s3.s3_client() is not clients[0]
    storage_s3.s3_clients_reset()

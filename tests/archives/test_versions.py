"""Version commits: only over durable blocks, server-stamped, idempotent; listing and fetching."""
import base64
import uuid
from datetime import timedelta

from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from archives import storage
from archives.models import Archive, FileVersion, Pack
from archives.selectors import manifests_read, versions_at
from formats.frames import frames_decode
from formats.manifests import manifest_decrypt
from tests.archives.conftest import KEYS, block, commit, stored, upload, version


def test_a_version_over_stored_blocks_commits_with_server_time(enrolled, alice):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    block_id = stored(client, archive, b"hello")
    response = commit(client, archive, [version(archive, "/home/alice/a.txt", [block_id], [5])])
    assert response.status_code == 201 and response.json()["committed"] == 1
    row = FileVersion.objects.get()
    assert row.committed_at.isoformat() == response.json()["committed_at"]
    assert bytes(row.block_ids) == block_id and row.stored_size > 5
    assert row.manifest_pack.kind == Pack.Kind.MANIFESTS


def test_a_version_naming_an_absent_block_is_409_and_nothing_commits(enrolled, alice):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    good = stored(client, archive, b"good")
    absent, _ = block(archive, b"never uploaded")
    response = commit(client, archive, [version(archive, "/a", [good], [4]), version(archive, "/b", [absent], [14])])
    assert response.status_code == 409
    assert response.json()["code"] == "missing_blocks" and response.json()["block_ids"] == [absent.hex()]
    assert not FileVersion.objects.exists()
    assert not Pack.objects.filter(kind=Pack.Kind.MANIFESTS).exists()


def test_a_version_cannot_reference_another_archives_block(enrolled, alice):
    first = enrolled(alice, "one")
    second = enrolled(alice, "two")
    foreign = stored(second, second.enrollment["archive_id"], b"belongs to two")
    archive = first.enrollment["archive_id"]
    response = commit(first, archive, [version(archive, "/x", [foreign], [14])])
    assert response.status_code == 409 and not FileVersion.objects.exists()


def test_retrying_a_commit_is_idempotent(enrolled, alice):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    block_id = stored(client, archive, b"once")
    versions = [version(archive, "/once", [block_id], [4])]
    assert commit(client, archive, versions).json()["committed"] == 1
    again = commit(client, archive, versions)
    assert again.status_code == 201 and again.json() == {**again.json(), "committed": 0, "existing": 1}
    assert FileVersion.objects.count() == 1


def test_malformed_versions_are_400(enrolled, alice):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    good = version(archive, "/f", [], [])
    for broken in ({**good, "path_id": "../etc"}, {**good, "manifest": "%%%"}, {**good, "block_ids": ["xyz"]},
                   {**good, "version_id": "nope"}):
        response = commit(client, archive, [broken])
        assert response.status_code == 400, broken
        assert response.json()["code"] == "invalid"
    deleted_with_blocks = {**version(archive, "/g", [], [], deleted=True), "block_ids": ["00" * 32]}
    assert commit(client, archive, [deleted_with_blocks]).status_code == 400
    assert not FileVersion.objects.exists()


def test_listing_at_a_time_gives_the_newest_version_of_each_path(enrolled, alice):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    one, two = stored(client, archive, b"one"), stored(client, archive, b"two")
    first = commit(client, archive, [version(archive, "/f", [one], [3]), version(archive, "/gone", [one], [3])])
    commit(client, archive, [version(archive, "/f", [two], [3]), version(archive, "/gone", [], [], deleted=True)])

    def listed(at=None):
        params = {"at": at} if at else {}
        body = client.get(f"/api/v1/archives/{archive}/versions", params).json()
        out = {}
        for item in body["versions"]:
            manifest = manifest_decrypt(KEYS, base64.b64decode(item["manifest"]), archive_id=uuid.UUID(archive),
                                        path_id=item["path_id"], version_id=uuid.UUID(item["version_id"]))
            out[manifest.path] = manifest.block_ids
        return out

    assert listed() == {"/f": [two]}
    assert listed(first.json()["committed_at"]) == {"/f": [one], "/gone": [one]}
    history = client.get(f"/api/v1/archives/{archive}/versions", {"path_id": FileVersion.objects.filter(
        deleted=True).get().path_id}).json()["versions"]
    assert [item["deleted"] for item in history] == [False, True]


def test_a_naive_time_is_refused(enrolled, alice):
    client = enrolled(alice)
    response = client.get(f"/api/v1/archives/{client.enrollment['archive_id']}/versions", {"at": "2026-01-01T00:00"})
    assert response.status_code == 400


def test_blocks_are_fetched_in_the_order_asked(enrolled, alice):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    ids = [stored(client, archive, f"fetch {i}".encode()) for i in range(3)]
    response = client.post(f"/api/v1/archives/{archive}/blocks/fetch", {"block_ids": [b.hex() for b in ids[::-1]]},
                           format="json")
    assert response.status_code == 200
    assert [bytes(f.block_id) for _, f in frames_decode(response.content)] == ids[::-1]


def test_a_device_reads_its_users_other_archive_but_not_another_users(enrolled, alice, bob):
    old = enrolled(alice, "old")
    archive = old.enrollment["archive_id"]
    block_id = stored(old, archive, b"shared by alice's devices")
    new = enrolled(alice, "new")
    fetch = {"block_ids": [block_id.hex()]}
    assert new.post(f"/api/v1/archives/{archive}/blocks/fetch", fetch, format="json").status_code == 200
    bobs = enrolled(bob)
    assert bobs.post(f"/api/v1/archives/{archive}/blocks/fetch", fetch, format="json").status_code == 404
    assert bobs.get(f"/api/v1/archives/{archive}/versions").status_code == 404


def test_fetching_an_absent_block_is_404_with_its_id(enrolled, alice):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    absent, _ = block(archive, b"absent")
    response = client.post(f"/api/v1/archives/{archive}/blocks/fetch", {"block_ids": [absent.hex()]}, format="json")
    assert response.status_code == 404 and response.json()["block_ids"] == [absent.hex()]


def test_backup_runs_record_what_happened(enrolled, alice):
    from archives.models import BackupRun
    from archives.selectors import last_completed_run

    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    run_id = client.post(f"/api/v1/archives/{archive}/runs").json()["run_id"]
    block_id, frame = block(archive, b"run data")
    upload(client, archive, frame, QUERY_STRING=f"run={run_id}")
    commit(client, archive, [version(archive, "/r", [block_id], [8])], run_id=run_id)
    finished = client.post(f"/api/v1/archives/{archive}/runs/{run_id}/finish",
                           {"status": "completed", "files_scanned": 3, "bytes_scanned": 99}, format="json")
    assert finished.status_code == 200
    run = BackupRun.objects.get(uuid=run_id)
    assert (run.status, run.files_scanned, run.blocks_received, run.versions_committed) == ("completed", 3, 1, 1)
    assert last_completed_run(run.archive) == run
    again = client.post(f"/api/v1/archives/{archive}/runs/{run_id}/finish", {"status": "failed"}, format="json")
    assert again.status_code == 400


def test_the_newest_version_is_chosen_by_commit_time_not_row_order(enrolled, alice):
    """After rebuild-index, rows come back in pack order; the listing must still pick the newest."""

    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    old, new = stored(client, archive, b"old"), stored(client, archive, b"new")
    commit(client, archive, [version(archive, "/f", [new], [3])])
    commit(client, archive, [version(archive, "/f", [old], [3])])
    first, second = FileVersion.objects.order_by("id")
    second.committed_at = first.committed_at - timedelta(hours=1)  # as if its pack was read first
    second.save(update_fields=["committed_at"])
    listed = client.get(f"/api/v1/archives/{archive}/versions").json()["versions"]
    assert [item["version_id"] for item in listed] == [str(first.uuid)]


def test_bad_paging_parameters_are_400_not_500(enrolled, alice):
    client = enrolled(alice)
    url = f"/api/v1/archives/{client.enrollment['archive_id']}/versions"
    for params in ({"limit": 0}, {"limit": -1}, {"limit": 5000}, {"after": -3}, {"limit": "x"}):
        assert client.get(url, params).status_code == 400, params


def test_paging_lists_each_paths_newest_version_once_in_one_statement_per_page(enrolled, alice):
    """Pages follow commit order from a (time, id) cursor: every live path comes once, with its
    newest version, superseded and deleted ones are passed over, and a page is one statement
    (plus the manifest packs' rows) however many versions the archive holds."""
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    one, two = stored(client, archive, b"one"), stored(client, archive, b"two")
    paths = [f"/p/{n:03d}" for n in range(47)]
    commit(client, archive, [version(archive, path, [one], [3]) for path in paths])
    commit(client, archive, [version(archive, path, [two], [3]) for path in paths[::2]])  # newer versions
    commit(client, archive, [version(archive, path, [], [], deleted=True) for path in paths[1::5]])
    expected = {path: ([two] if n % 2 == 0 else [one]) for n, path in enumerate(paths) if n % 5 != 1}

    seen, cursor, sizes = {}, "0", []
    url = f"/api/v1/archives/{archive}/versions"
    while cursor is not None:
        with CaptureQueriesContext(connection) as queries:
            body = client.get(url, {"after": cursor, "limit": 10}).json()
        listing = [q for q in queries.captured_queries if "archives_fileversion" in q["sql"]]
        assert len(listing) == 1, [q["sql"][:120] for q in listing]
        sizes.append(len(body["versions"]))
        for item in body["versions"]:
            manifest = manifest_decrypt(KEYS, base64.b64decode(item["manifest"]), archive_id=uuid.UUID(archive),
                                        path_id=item["path_id"], version_id=uuid.UUID(item["version_id"]))
            assert manifest.path not in seen, manifest.path
            seen[manifest.path] = manifest.block_ids
        cursor = body["next"]
    assert seen == expected
    assert sizes == [10, 10, 10, 7]  # 37 live paths of 47, in pages of 10


def test_paging_continues_past_versions_committed_in_the_same_instant(enrolled, alice):
    """Versions of one commit share their commit time: the cursor's row id orders them."""
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    one = stored(client, archive, b"one")
    commit(client, archive, [version(archive, f"/same/{n}", [one], [3]) for n in range(7)])
    assert FileVersion.objects.values("committed_at").distinct().count() == 1
    url, cursor, listed = f"/api/v1/archives/{archive}/versions", "0", []
    while cursor is not None:
        body = client.get(url, {"after": cursor, "limit": 3}).json()
        listed += [item["version_id"] for item in body["versions"]]
        cursor = body["next"]
    assert sorted(listed) == sorted(str(u) for u in FileVersion.objects.values_list("uuid", flat=True))
    assert len(listed) == 7


def test_a_cursor_that_is_not_a_path_id_is_400(enrolled, alice):
    client = enrolled(alice)
    url = f"/api/v1/archives/{client.enrollment['archive_id']}/versions"
    for after in ("17", "z" * 64, "1-2-3", "-5", "1-" + "9" * 19, "9" * 18 + "-1", "1.5-2"):
        response = client.get(url, {"after": after})
        assert response.status_code == 400 and "query" in response.json()["errors"], after


def test_a_pages_manifests_are_read_from_their_pack_in_one_ranged_read(enrolled, alice, monkeypatch):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    one = stored(client, archive, b"one")
    commit(client, archive, [version(archive, f"/m/{n}", [one], [3]) for n in range(30)])
    reads = []
    real = storage.PackReader.read_at
    monkeypatch.setattr(storage.PackReader, "read_at", lambda self, offset, length: reads.append(length)
                        or real(self, offset, length))
    versions, _ = versions_at(Archive.objects.get(uuid=archive), at=timezone.now())
    blobs = manifests_read(versions)
    assert len(reads) == 1 and len(blobs) == 30
    for item in versions:
        assert manifest_decrypt(KEYS, blobs[item.pk], archive_id=uuid.UUID(archive), path_id=item.path_id,
                                version_id=item.uuid).path.startswith("/m/")


def test_paging_goes_on_past_versions_whose_commit_time_is_before_1970(enrolled, alice):
    """A server clock set wrong, or rows rebuilt from old frames: the cursor carries negative times."""
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    one = stored(client, archive, b"one")
    commit(client, archive, [version(archive, f"/old/{n}", [one], [3]) for n in range(5)])
    FileVersion.objects.update(committed_at=F("committed_at") - timedelta(days=365 * 60))
    url, cursor, listed = f"/api/v1/archives/{archive}/versions", "0", []
    while cursor is not None:
        response = client.get(url, {"after": cursor, "limit": 2})
        assert response.status_code == 200, response.content
        listed += [item["version_id"] for item in response.json()["versions"]]
        cursor = response.json()["next"]
        assert cursor is None or cursor.startswith("-")
    assert len(listed) == len(set(listed)) == 5

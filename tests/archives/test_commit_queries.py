"""A backup's requests cost a fixed number of SQL statements, however many files they carry:
no per-version or per-block query (a first backup of 50,000 small files is 50 commits of 1,000,
and a statement per row would be 100,000 of them). bench/server_commit.py shows the CPU."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from archives.models import Block, FileVersion
from tests.archives.conftest import block, commit, upload, version

# Authentication, the access check, the run lookup, the quota settings, the pack row, the
# savepoints of the test transaction,
# inserts and the counters: a constant, read from a run and pinned so that a new per-row
# statement, or a new per-request one, is noticed.
MAX_COMMIT_QUERIES = 15
MAX_UPLOAD_QUERIES = 17
MAX_MISSING_QUERIES = 6


def _queries(send) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as captured:
        response = send()
    return len(captured.captured_queries), response


def _files(archive: str, first: int, count: int) -> tuple[list[bytes], bytes, list[dict]]:
    """`count` small files of one block each, plus a header block they share (as many files of one
    kind do): more ids than one IN list of 2,000, so a lookup in chunks shows as more statements."""
    pieces = [block(archive, f"small file {index}".encode() * 8) for index in range(first, first + count)]
    shared = block(archive, f"shared header {first}".encode())
    versions = [version(archive, f"/home/alice/f{first + n}.txt", [shared[0], block_id], [14, 8])
                for n, (block_id, _) in enumerate(pieces)]
    pieces.append(shared)
    return [block_id for block_id, _ in pieces], b"".join(frame for _, frame in pieces), versions


@pytest.fixture
def device(enrolled, alice):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    return client, archive, client.post(f"/api/v1/archives/{archive}/runs").json()["run_id"]


def _backup_queries(client, archive, run_id, first: int, count: int) -> dict[str, int]:
    block_ids, body, versions = _files(archive, first, count)
    counts = {}
    counts["missing"], response = _queries(lambda: client.post(
        f"/api/v1/archives/{archive}/blocks/missing", {"block_ids": [b.hex() for b in block_ids]}, format="json"))
    assert response.status_code == 200 and len(response.json()["missing"]) == count + 1
    counts["upload"], response = _queries(lambda: upload(client, archive, body, QUERY_STRING=f"run={run_id}"))
    assert response.status_code == 201 and response.json()["stored"] == count + 1
    counts["commit"], response = _queries(lambda: commit(client, archive, versions, run_id=run_id))
    assert response.status_code == 201 and response.json()["committed"] == count
    counts["missing_again"], response = _queries(lambda: client.post(
        f"/api/v1/archives/{archive}/blocks/missing", {"block_ids": [b.hex() for b in block_ids]}, format="json"))
    assert response.json() == {"missing": []}
    return counts


def test_statements_per_request_do_not_grow_with_its_files(device):
    client, archive, run_id = device
    few = _backup_queries(client, archive, run_id, 0, 3)
    many = _backup_queries(client, archive, run_id, 3, 2000)  # a commit holds at most 2,000 versions
    assert many == few, (few, many)
    assert few["commit"] <= MAX_COMMIT_QUERIES and few["upload"] <= MAX_UPLOAD_QUERIES, few
    assert few["missing"] <= MAX_MISSING_QUERIES and few["missing_again"] <= MAX_MISSING_QUERIES, few
    assert FileVersion.objects.count() == 2003 and Block.objects.count() == 2005


def test_a_commit_stamps_old_blocks_in_one_statement_however_many(device):
    """A block referenced long ago is rewritten (prune's grace runs from it); one UPDATE for all."""
    from datetime import timedelta

    from django.db.models import F
    from django.utils import timezone

    client, archive, run_id = device
    block_ids, body, _ = _files(archive, 0, 300)
    assert upload(client, archive, body).status_code == 201
    Block.objects.update(last_referenced_at=F("last_referenced_at") - timedelta(days=30))
    versions = [version(archive, f"/again/{n}", [block_id], [8]) for n, block_id in enumerate(block_ids)]
    with CaptureQueriesContext(connection) as captured:
        assert commit(client, archive, versions, run_id=run_id).status_code == 201
    updates = [q["sql"] for q in captured.captured_queries if q["sql"].startswith('UPDATE "archives_block"')]
    assert len(updates) == 1, updates  # the check before the manifest pack only reads; the lock-and-touch writes
    assert not Block.objects.filter(last_referenced_at__lt=timezone.now() - timedelta(minutes=5)).exists()

"""Helpers for the maintenance tests: backed-up histories, moving time back, byte-identical
restores of every kept version, and `manage.py maintenance` as a real process."""
import base64
import os
import signal
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path

from django.db import connection
from django.db.models import F

from archives.models import Archive, Block, FileVersion, Pack
from archives.selectors import blocks_read, manifests_read
from archives.storage import pack_storage
from formats.blocks import block_decrypt
from formats.directories import DirectoryEntry, listing_id_for
from formats.frames import frame_decode
from formats.manifests import listing_manifest, manifest_decrypt, manifest_encrypt
from tests.archives.conftest import KEYS, block, commit, upload, version
from tests.support import PYTHON, REPO, wait_until


class Backup:
    """An agent's view of one archive: what each committed version should restore to."""

    def __init__(self, client):
        self.client = client
        self.archive_id = client.enrollment["archive_id"]
        self.expected: dict[uuid.UUID, bytes] = {}  # version uuid -> plaintext

    @property
    def archive(self) -> Archive:
        return Archive.objects.get(uuid=self.archive_id)

    def upload(self, *chunks: bytes) -> list[bytes]:
        """One batch (one pack) holding the given blocks; their ids."""
        ids, frames = zip(*(block(self.archive_id, data) for data in chunks), strict=True)
        response = upload(self.client, self.archive_id, b"".join(frames))
        assert response.status_code == 201, response.content
        return list(ids)

    def commit(self, path: str, chunks: list[bytes], *, deleted: bool = False, status: int = 201):
        ids = [block(self.archive_id, data)[0] for data in chunks]
        body = version(self.archive_id, path, ids, [len(c) for c in chunks], deleted=deleted)
        response = commit(self.client, self.archive_id, [body])
        assert response.status_code == status, response.content
        if status == 201:
            self.expected[uuid.UUID(body["version_id"])] = b"".join(chunks)
        return uuid.UUID(body["version_id"])

    def missing(self, chunks: list[bytes]) -> set[bytes]:
        ids = [block(self.archive_id, data)[0].hex() for data in chunks]
        response = self.client.post(f"/api/v1/archives/{self.archive_id}/blocks/missing", {"block_ids": ids},
                                    format="json")
        assert response.status_code == 200, response.content
        return {bytes.fromhex(b) for b in response.json()["missing"]}


def listing_commit(backup: Backup, root: str) -> None:
    """A root's directory listing (docs/formats.md §9), committed as the agent sends one; it names
    no block, so it restores to b""."""
    version_id, listing_id = uuid.uuid4(), listing_id_for(KEYS, root)
    manifest = listing_manifest(root, [DirectoryEntry(root, 0o40755, 1)])
    blob = manifest_encrypt(KEYS, manifest, archive_id=uuid.UUID(backup.archive_id), path_id=listing_id,
                            version_id=version_id)
    body = {"version_id": str(version_id), "path_id": listing_id, "deleted": False, "block_ids": [],
            "manifest": base64.b64encode(blob).decode()}
    assert commit(backup.client, backup.archive_id, [body]).status_code == 201
    backup.expected[version_id] = b""


def incrementals(backup: Backup, runs: int = 4) -> list[bytes]:
    """`runs` incremental backups: each one small data pack and one small manifest pack per commit."""
    chunks = []
    for run in range(runs):
        new = [os.urandom(3000 + 500 * run) for _ in range(2)]
        backup.upload(*new)
        chunks += new
        backup.commit(f"/file{run}", new)
        backup.commit("/shared", [chunks[0], new[1]])  # a later version naming an older pack's block
    listing_commit(backup, "/home/alice")
    return chunks


def age(versions=None, *, days: float, blocks=None) -> None:
    """As if the given versions (and blocks' last references) had happened `days` earlier."""
    if versions is not None:
        FileVersion.objects.filter(uuid__in=versions).update(committed_at=F("committed_at") - timedelta(days=days))
    if blocks is not None:
        Block.objects.filter(block_id__in=blocks).update(
            last_referenced_at=F("last_referenced_at") - timedelta(days=days))


def assert_every_kept_version_restores(backup: Backup) -> int:
    """Every version row left restores byte for byte (blocks decrypted, manifest decrypted)."""
    archive = backup.archive
    rows = list(FileVersion.objects.filter(archive=archive).annotate(storage_key=F("manifest_pack__storage_key")))
    manifests = manifests_read(rows)
    for row in rows:
        manifest = manifest_decrypt(KEYS, manifests[row.pk], archive_id=archive.uuid, path_id=row.path_id,
                                    version_id=row.uuid)
        raw = bytes(row.block_ids)
        ids = [raw[i:i + 32] for i in range(0, len(raw), 32)]
        frames = blocks_read(archive, ids, max_bytes=1 << 30) if ids else []
        data = b"".join(block_decrypt(KEYS, bid, frame_decode(f).payload) for bid, f in zip(ids, frames, strict=True))
        assert data == backup.expected[row.uuid], f"version {row.uuid} ({manifest.path}) restores wrong"
    return len(rows)


def storage_consistent(pack_dir: Path) -> tuple[set[str], set[str]]:
    """(live pack files with no row, rows whose file is not live)."""
    files = {str(p.relative_to(pack_dir)) for p in pack_dir.rglob("*.pack")
             if not p.relative_to(pack_dir).parts[0].startswith(".")}
    rows = set(Pack.objects.values_list("storage_key", flat=True))
    return files - rows, rows - files


def packs_consistent() -> tuple[set[str], set[str]]:
    """storage_consistent through the configured pack storage (a folder or an S3 bucket)."""
    files = set(pack_storage().keys(""))
    rows = set(Pack.objects.values_list("storage_key", flat=True))
    return files - rows, rows - files


def maintenance_env(pack_dir: Path, **extra: str) -> dict[str, str]:
    url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + connection.settings_dict["NAME"]
    return {**os.environ, "DATABASE_URL": url, "HAVEN_TEST_DATABASE_NAME": "", "HAVEN_PACK_DIR": str(pack_dir),
            "HAVEN_DATA_DIR": str(pack_dir.parent / "var"), "HAVEN_SECRET_KEY": "test-secret", **extra}


def maintenance_process(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "manage.py", "maintenance", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# A child that merges every settled small pack (the tests' packs are tiny; docs/maintenance.md).
AGGREGATE_EAGER_ENV = {"HAVEN_PACK_TARGET_MIB": "1", "HAVEN_PACK_SETTLE_SECONDS": "0", "HAVEN_PACK_QUIET_DAYS": "0"}


def maintenance_killed_at(env: dict, archive_id: str, point: str, faults: Path) -> None:
    """Run `manage.py maintenance` on one archive (env names the fault point and HAVEN_FAULT_DIR
    = faults) and SIGKILL it once it reached `point`; it must still be running there."""
    process = maintenance_process(env, "--archive", archive_id)
    try:
        wait_until(lambda: (faults / point).exists() or process.poll() is not None, timeout=120,
                   what=f"maintenance to reach {point}")
        assert process.poll() is None, process.communicate()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()

"""Verification and self-healing with a real agent, a live server and the real keystore (issue 11
items 4 and 5): a corrupted byte in a pack is found by the keyless shallow check, the deep check
names the file, the next `agent backup` heals it and a restore is byte-identical; the deep check
finds a block whose frame is intact but whose content is wrong; restore drills record "restorable
as of" and alert when they fail."""
import os
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from activity.models import Alert
from agent.keys import user_key_load
from archives.drills import restorable_as_of, restore_drill_run
from archives.models import Archive, ArchiveCheck, Block, DamagedBlock, FileVersion, HealPath, Pack
from archives.storage import pack_storage
from archives.verify import archive_verify_deep, archive_verify_shallow
from formats.blocks import block_encrypt
from formats.frames import FRAME_BLOCK, FRAME_HEADER_SIZE, PACK_MAGIC, frame_encode
from formats.keys import derive_keys
from formats.manifests import path_id_for
from keystore.models import KeyAccess
from tests.e2e.conftest import (  # noqa: F401 - the live server fixtures are used here
    enroll_agent,
    haven_env,
    live_server_haven,
    live_servers,
    restored,
    run_agent,
    tree_state,
)

pytestmark = pytest.mark.slow
MiB = 1024 * 1024


@pytest.fixture
def escrowed():
    """Overrides tests/archives/conftest.py: here the agent escrows its own key in OpenBao."""
    yield


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class Backed:
    def __init__(self, source: Path, config: Path, archive: Archive):
        self.source, self.config, self.archive = source, config, archive
        self.keys = derive_keys(user_key_load(config))

    def blocks_of(self, relative: str) -> list[bytes]:
        path_id = path_id_for(self.keys, str(self.source / relative))
        row = FileVersion.objects.filter(archive=self.archive, path_id=path_id).latest("committed_at")
        raw = bytes(row.block_ids)
        return [raw[i:i + 32] for i in range(0, len(raw), 32)]


@pytest.fixture
def backed(live_server_haven, alice, tmp_path) -> Backed:  # noqa: F811
    source = tmp_path / "home"
    _write(source / "docs" / "report.txt", os.urandom(300 * 1024))
    _write(source / "docs" / "notes.md", b"# notes\n" * 500)
    _write(source / "big.bin", os.urandom(6 * MiB))
    for index in range(5):
        _write(source / "many" / f"small-{index}.txt", f"small file {index}\n".encode() * 50)
    config = enroll_agent(live_server_haven, tmp_path / "agent", alice, "laptop")
    run_agent(config, "backup", str(source))
    return Backed(source, config, Archive.objects.get(user=alice))


def _corrupt_byte(block_id: bytes, archive: Archive) -> None:
    """Flip one payload byte of the block's frame in its pack file, as a failing disk would."""
    row = Block.objects.select_related("pack").get(archive=archive, block_id=block_id)
    path = Path(settings.PACK_DIR) / row.pack.storage_key
    with open(path, "r+b") as handle:
        handle.seek(row.offset + FRAME_HEADER_SIZE + 40)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0x01]))


def _verify_exit(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_status:
        call_command("verify", *args)
    return exit_status.value.code


def test_a_corrupted_byte_is_found_named_and_healed_by_the_next_backup(backed, tmp_path, capsys):
    archive, report = backed.archive, str(backed.source / "docs" / "report.txt")
    assert _verify_exit("--archive", str(archive.uuid)) == 0
    damaged = backed.blocks_of("docs/report.txt")[0]
    _corrupt_byte(damaged, archive)
    capsys.readouterr()

    shallow = archive_verify_shallow(archive=archive)  # keyless: path ids, no names
    assert shallow.check.outcome == ArchiveCheck.Outcome.DAMAGED and list(shallow.damage.blocks) == [damaged]
    alert = Alert.objects.get(kind="archive_damaged", archive_uuid=archive.uuid)
    report_path_id = path_id_for(backed.keys, report)
    assert alert.detail["path_ids"] == [report_path_id] and "files" not in alert.detail
    assert len(alert.detail["versions"]) == 1
    assert not Block.objects.filter(archive=archive, block_id=damaged).exists()  # dropped: the agent re-sends it
    assert list(HealPath.objects.filter(archive=archive, healed_at__isnull=True).values_list("path_id", flat=True)) == [
        report_path_id]

    accesses = KeyAccess.objects.filter(purpose="archive_maintenance").count()
    assert _verify_exit("--archive", str(archive.uuid), "--deep") == 1  # names the file, with the key
    out = capsys.readouterr().out
    assert f"file: {report}" in out
    assert KeyAccess.objects.filter(purpose="archive_maintenance", outcome="succeeded").count() == accesses + 1
    alert.refresh_from_db()
    assert alert.detail["files"] == [report] and alert.occurrences == 2

    healing = run_agent(backed.config, "backup", str(backed.source))
    assert f"healed 1 file(s) the server found damaged: {report}" in healing.stdout, healing.stdout
    assert Block.objects.filter(archive=archive, block_id=damaged).exists()
    assert not HealPath.objects.filter(archive=archive, healed_at__isnull=True).exists()
    assert DamagedBlock.objects.get(block_id=damaged).healed_at is not None
    alert.refresh_from_db()
    assert alert.status == "resolved"
    assert archive_verify_deep(archive=archive).clean

    target = tmp_path / "restored"
    run_agent(backed.config, "restore", "--to", str(target))
    assert tree_state(restored(target, backed.source)) == tree_state(backed.source)


def test_the_deep_check_finds_a_block_that_decrypts_wrongly(backed):
    """An intact frame (its checksum is right) whose content is not the block it claims: only
    decryption and the keyed id can tell."""
    archive, notes = backed.archive, str(backed.source / "docs" / "notes.md")
    block_id = backed.blocks_of("docs/notes.md")[0]
    forged = frame_encode(FRAME_BLOCK, archive.uuid, block_id, block_encrypt(backed.keys, block_id, b"not the notes"))
    pack_uuid = uuid.uuid4()
    key = f"{archive.organization.uuid}/{archive.uuid}/{pack_uuid.hex[:2]}/{pack_uuid}.pack"
    pack_storage().put(key, [PACK_MAGIC, forged])
    pack = Pack.objects.create(uuid=pack_uuid, archive=archive, kind=Pack.Kind.BLOCKS, storage_key=key,
                               size=len(PACK_MAGIC) + len(forged), frame_count=1)
    Block.objects.filter(archive=archive, block_id=block_id).update(pack=pack, offset=len(PACK_MAGIC),
                                                                    frame_size=len(forged))

    assert archive_verify_shallow(archive=archive).clean  # every checksum is right
    deep = archive_verify_deep(archive=archive)
    assert deep.check.outcome == ArchiveCheck.Outcome.DAMAGED
    assert "content does not match its id" in deep.damage.blocks[block_id]
    assert deep.report.files == [notes]
    alert = Alert.objects.get(kind="archive_damaged", archive_uuid=archive.uuid)
    assert alert.detail["files"] == [notes]


def test_a_restore_drill_records_restorable_as_of_and_a_failed_one_alerts(backed):
    archive = backed.archive
    assert restorable_as_of(archive) is None
    check = restore_drill_run(archive=archive, files=50)
    assert check.outcome == ArchiveCheck.Outcome.CLEAN and check.files_checked == 8
    assert check.bytes_checked == sum(p.stat().st_size for p in backed.source.rglob("*") if p.is_file())
    assert restorable_as_of(archive) == check.point_in_time
    access = KeyAccess.objects.filter(purpose="archive_maintenance", job=str(check.uuid))
    assert set(access.values_list("outcome", flat=True)) == {"started", "succeeded"}

    for block_id in backed.blocks_of("big.bin"):  # every file is drilled (8 ≤ 50): the damage is met
        _corrupt_byte(block_id, archive)
    failed = restore_drill_run(archive=archive, files=50)
    assert failed.outcome == ArchiveCheck.Outcome.FAILED and "damaged data" in failed.detail["error"]
    assert failed.detail["file"] == str(backed.source / "big.bin")
    assert restorable_as_of(archive) == check.point_in_time  # still the last good drill
    alert = Alert.objects.get(kind="restore_drill_failed", archive_uuid=archive.uuid)
    assert alert.status == "open"


def test_the_agent_reports_a_full_quota_and_the_server_stores_nothing(backed, alice):
    from archives.models import Pack
    from archives.quotas import user_quota_set, user_usage

    user_quota_set(user=alice, actor=alice, quota_bytes=user_usage(alice) + 1000)
    _write(backed.source / "new" / "large.bin", os.urandom(2 * MiB))
    packs = set(Pack.objects.values_list("storage_key", flat=True))
    result = run_agent(backed.config, "backup", str(backed.source), check=False)
    assert result.returncode == 2
    assert "storage quota exceeded, nothing more was stored" in result.stderr, result.stderr
    assert set(Pack.objects.values_list("storage_key", flat=True)) == packs
    assert sorted(pack_storage().keys("")) == sorted(packs)

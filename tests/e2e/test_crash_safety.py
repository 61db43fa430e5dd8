"""kill -9 at the worst moments: every committed version stays restorable, a resumed backup
completes, and nothing that arrived is sent twice (DESIGN §4). The acknowledged-write case runs on
the local folder and on S3 (a SeaweedFS bucket): an object the store acknowledged but no index row
names is an orphan the collector quarantines, never a lost block."""
import os
import shutil
import signal
from datetime import timedelta

import pytest

from archives.gc import orphan_packs_collect
from archives.models import BackupRun, Block, Pack
from archives.storage import pack_storage
from tests.e2e.conftest import enroll_agent, restored, run_agent, start_agent, stored_packs, tree_state
from tests.support import wait_until

pytestmark = pytest.mark.slow
MiB = 1024 * 1024


def _source(root, seed: int):
    root.mkdir(parents=True)
    (root / "big.bin").write_bytes(os.urandom(12 * MiB))
    for index in range(40):
        (root / f"text-{index}.txt").write_bytes(f"seed {seed} line {index}\n".encode() * 500)
    return root


@pytest.mark.parametrize("fault,pack_backend", [
    ("blocks.pack_durable", "local"), ("blocks.pack_durable", "s3"), ("blocks.before_commit", "local"),
    ("versions.pack_durable", "local"), ("versions.before_commit", "local")], indirect=["pack_backend"])
def test_killing_the_server_mid_write_loses_nothing_committed(live_servers, haven_env, alice, tmp_path, fault,
                                                              settings):
    # A first backup is committed before the crash; it must survive whatever happens next.
    server = live_servers()
    source = _source(tmp_path / "data", seed=1)
    config = enroll_agent(server, tmp_path / "agent", alice, "laptop")
    run_agent(config, "backup", str(source))
    committed_state = tree_state(source)
    committed_copy = tmp_path / "committed"
    shutil.copytree(source, committed_copy, copy_function=shutil.copy2)

    # Change everything, then crash the server at the fault point during the next backup.
    for path in source.iterdir():
        path.write_bytes(path.read_bytes() + os.urandom(1000))
    server.stop()
    crashing = live_servers(faults=fault)
    assert crashing.port != server.port
    config_file = config / "agent.json"
    config_file.write_text(config_file.read_text().replace(server.url, crashing.url))
    agent = start_agent(config, "backup", str(source))
    wait_until(lambda: (tmp_path / "faults" / fault).exists(), timeout=120, what=f"the server to reach {fault}")
    crashing.kill()
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    orphans = set(stored_packs(haven_env)) - set(Pack.objects.values_list("storage_key", flat=True))
    if fault == "blocks.pack_durable":
        assert len(orphans) == 1, "the acknowledged pack of the killed request has no index row"

    # The committed point in time restores byte for byte from a fresh server on the same data.
    (tmp_path / "faults" / fault).unlink()
    fresh = live_servers()
    config_file.write_text(config_file.read_text().replace(crashing.url, fresh.url))
    before = tmp_path / "restore-committed"
    run_agent(config, "restore", "--to", str(before))
    assert tree_state(restored(before, source)) == committed_state

    # The interrupted backup resumes and completes; the newest state restores.
    run_agent(config, "backup", str(source))
    after = tmp_path / "restore-resumed"
    run_agent(config, "restore", "--to", str(after))
    assert tree_state(restored(after, source)) == tree_state(source)
    assert Block.objects.filter(pack__in=Pack.objects.all()).count() == Block.objects.count()

    # The collector quarantines exactly the crash's orphans, inside the same storage.
    settings.PACK_DIR = haven_env["HAVEN_PACK_DIR"]  # the servers' folder (S3: already their bucket)
    sweep = orphan_packs_collect(grace=timedelta(0), retention=timedelta(days=30))
    assert not sweep.refused and set(sweep.quarantined) == orphans
    assert {stat.key for stat in pack_storage().quarantined("")} == orphans


def test_a_killed_agent_resumes_without_resending_what_arrived(live_server_haven, alice, tmp_path):
    source = tmp_path / "data"
    source.mkdir()
    for index in range(16):  # 384 MiB: many batches, so the kill lands mid-backup
        (source / f"part-{index}.bin").write_bytes(os.urandom(24 * MiB))
    config = enroll_agent(live_server_haven, tmp_path / "agent", alice, "laptop")
    agent = start_agent(config, "backup", str(source))
    wait_until(lambda: Pack.objects.filter(kind=Pack.Kind.BLOCKS).exists(), timeout=120, interval=0.02,
               what="a first block pack")
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    received_before = Block.objects.count()
    assert 0 < received_before
    assert not BackupRun.objects.filter(status="completed").exists(), "the agent finished before it was killed"

    run_agent(config, "backup", str(source))
    resumed = BackupRun.objects.filter(status="completed").get()
    total_blocks = Block.objects.count()
    assert resumed.blocks_received == total_blocks - received_before  # nothing that arrived was sent again
    out = tmp_path / "out"
    run_agent(config, "restore", "--to", str(out))
    assert tree_state(restored(out, source)) == tree_state(source)

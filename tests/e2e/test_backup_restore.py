"""End to end through real HTTP on PostgreSQL: enroll, back up, change, back up, restore both
points in time, rebuild the index from the packs alone, restore again."""
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from archives.models import Archive, FileVersion
from tests.e2e.conftest import enroll_agent, pack_files, restored, run_agent, stored_packs, tree_state
from tests.support import PYTHON, REPO

pytestmark = pytest.mark.slow
MiB = 1024 * 1024
# The central tests run on both pack storages: a folder, and a bucket on a real SeaweedFS.
both_storages = pytest.mark.parametrize("pack_backend", ["local", "s3"], indirect=True)


def _write(path: Path, data: bytes, mode: int = 0o644, mtime: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))


def _build_tree(root: Path) -> None:
    _write(root / "docs" / "report.txt", b"QUARTERLY-SECRET-REPORT " * 4000, mtime=1_600_000_000_123_456_789)
    _write(root / "docs" / "deep" / "er" / "still" / "notes.md", b"# notes\n" * 100, mode=0o600)
    _write(root / "empty.txt", b"")
    _write(root / "empty-dir-sibling" / "zero", b"")
    (root / "empty-dir").mkdir()
    _write(root / "big.bin", os.urandom(50 * MiB))
    _write(root / "unicode" / "naïve café ☕.txt", "κείμενο ünïcödé".encode())
    _write(root / os.fsdecode(b"latin1-caf\xe9.txt"), b"a name that is not UTF-8")
    _write(root / "scripts" / "run.sh", b"#!/bin/sh\necho hi\n", mode=0o755)
    for index in range(30):
        _write(root / "many" / f"small-{index:03}.txt", f"small file {index}\n".encode() * (index + 1))
    os.symlink("docs/report.txt", root / "link-to-report")


def _change_tree(root: Path) -> None:
    _write(root / "docs" / "report.txt", b"REVISED-REPORT " * 5000)
    with open(root / "big.bin", "r+b") as handle:  # change 1 MiB in the middle of the 50 MiB file
        handle.seek(20 * MiB)
        handle.write(os.urandom(MiB))
    os.unlink(root / "many" / "small-007.txt")
    shutil.rmtree(root / "docs" / "deep")
    _write(root / "new" / "added.txt", b"added after the first backup")
    os.chmod(root / "scripts" / "run.sh", 0o700)


def _snapshot(root: Path, into: Path) -> dict:
    shutil.copytree(root, into, symlinks=True, copy_function=shutil.copy2)
    return tree_state(root)


@both_storages
def test_backup_change_restore_both_points_and_rebuild_the_index(live_server_haven, haven_env, alice, tmp_path):
    source = tmp_path / "home"
    _build_tree(source)
    config = enroll_agent(live_server_haven, tmp_path / "agent", alice, "laptop")

    first = run_agent(config, "backup", str(source))
    assert "backup completed" in first.stdout and "1 skipped" in first.stdout, first.stdout
    first_state = _snapshot(source, tmp_path / "snapshot-1")
    first_time = datetime.now(UTC).isoformat()

    _change_tree(source)
    second = run_agent(config, "backup", str(source))
    assert "2 deleted" in second.stdout, second.stdout  # small-007.txt, and notes.md with its removed directory
    second_state = tree_state(source)
    assert first_state != second_state

    def restore_and_compare(label: str) -> None:
        latest, earlier = tmp_path / f"{label}-latest", tmp_path / f"{label}-first"
        run_agent(config, "restore", "--to", str(latest))
        assert tree_state(restored(latest, source)) == second_state
        run_agent(config, "restore", "--to", str(earlier), "--at", first_time)
        assert tree_state(restored(earlier, source)) == first_state

    restore_and_compare("before-rebuild")

    history = run_agent(config, "versions", str(source / "docs" / "report.txt")).stdout.strip().splitlines()
    assert len(history) == 2
    gone = run_agent(config, "versions", str(source / "many" / "small-007.txt")).stdout
    assert "deleted" in gone

    # The packs alone rebuild the index: drop it, rebuild, restore both points again.
    archive = Archive.objects.get(device__name="laptop")
    versions_before = FileVersion.objects.filter(archive=archive).count()
    rebuilt = subprocess.run([PYTHON, "manage.py", "rebuild-index", str(archive.uuid), "--drop"], cwd=REPO,
                             env=haven_env, capture_output=True, text=True)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert FileVersion.objects.filter(archive=archive).count() == versions_before
    restore_and_compare("after-rebuild")


@both_storages
def test_packs_hold_no_plaintext_content_or_names(live_server_haven, haven_env, alice, tmp_path):
    source = tmp_path / "secret-home"
    _write(source / "confidential-merger-plan.txt", b"PROJECT NIGHTINGALE ACQUISITION TERMS " * 2000)
    _write(source / "compressible.log", b"GET /index.html 200 OK\n" * 50000)
    config = enroll_agent(live_server_haven, tmp_path / "agent", alice, "laptop")
    run_agent(config, "backup", str(source))
    packs = stored_packs(haven_env)
    assert packs
    assert (pack_files(haven_env) != []) == (not haven_env["HAVEN_PACK_STORAGE"])  # S3: nothing on the disk
    needles = [b"PROJECT NIGHTINGALE", b"GET /index.html", b"confidential-merger-plan", b"secret-home",
               "confidential-merger-plan".encode("utf-16-le")]
    for key, data in packs.items():
        for needle in needles:
            assert needle not in data, f"{needle!r} found in {key}"


def test_a_copy_of_a_100_mib_file_adds_less_than_one_percent(live_server_haven, haven_env, alice, tmp_path):
    source = tmp_path / "data"
    _write(source / "original.bin", os.urandom(100 * MiB))
    config = enroll_agent(live_server_haven, tmp_path / "agent", alice, "laptop")
    run_agent(config, "backup", str(source))
    stored_before = sum(p.stat().st_size for p in pack_files(haven_env))
    shutil.copy2(source / "original.bin", source / "copy.bin")
    run_agent(config, "backup", str(source))
    stored_after = sum(p.stat().st_size for p in pack_files(haven_env))
    assert stored_before > 100 * MiB
    assert stored_after - stored_before < 0.01 * stored_before, (stored_before, stored_after)
    out = tmp_path / "out"
    run_agent(config, "restore", "--to", str(out))
    assert tree_state(restored(out, source)) == tree_state(source)


def test_a_missing_root_marks_nothing_deleted(live_server_haven, alice, tmp_path):
    volume = tmp_path / "usb"
    _write(volume / "photo.jpg", os.urandom(1000))
    config = enroll_agent(live_server_haven, tmp_path / "agent", alice, "laptop")
    run_agent(config, "backup", str(volume))
    shutil.move(volume, tmp_path / "unplugged")
    result = run_agent(config, "backup", str(volume), check=False)
    assert result.returncode == 1 and "nothing under it is marked deleted" in result.stderr
    assert "0 deleted" in result.stdout
    out = tmp_path / "out"
    run_agent(config, "restore", "--to", str(out))
    assert (restored(out, volume) / "photo.jpg").exists()


@both_storages
def test_two_devices_back_up_at_once_through_two_server_processes(live_servers, alice, bob, tmp_path):
    from tests.e2e.conftest import start_agent

    first_server, second_server = live_servers(), live_servers()
    sources, configs = [], []
    for index, (user, server) in enumerate(((alice, first_server), (bob, second_server))):
        source = tmp_path / f"source-{index}"
        _write(source / "big.bin", os.urandom(30 * MiB))
        for n in range(50):
            _write(source / "files" / f"{n}.txt", f"device {index} file {n}\n".encode() * 100)
        sources.append(source)
        configs.append(enroll_agent(server, tmp_path / f"agent-{index}", user, f"box-{index}"))
    running = [start_agent(config, "backup", str(source)) for config, source in zip(configs, sources)]
    for process in running:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, (out, err)
    for index, (config, source) in enumerate(zip(configs, sources)):
        out = tmp_path / f"out-{index}"
        run_agent(config, "restore", "--to", str(out))
        assert tree_state(restored(out, source)) == tree_state(source)


def test_a_deauthorized_agent_stops_and_wipes_its_local_key(live_server_haven, alice, tmp_path):
    from accounts.models import Device
    from accounts.services import device_deauthorize

    source = tmp_path / "data"
    _write(source / "f.txt", b"x")
    config = enroll_agent(live_server_haven, tmp_path / "agent", alice, "stolen-laptop")
    run_agent(config, "backup", str(source))
    device_deauthorize(device=Device.objects.get(name="stolen-laptop"), actor=alice)
    result = run_agent(config, "backup", str(source), check=False)
    assert result.returncode == 3 and "deauthorized" in result.stderr
    assert not (config / "authorized-storage.json").exists()
    assert not (config / "authorized-storage.secret").exists()


def test_computer_replacement_a_new_device_restores_the_old_devices_data(live_server_haven, alice, tmp_path):
    from keystore.models import KeyAccess

    source = tmp_path / "old-home"
    _write(source / "thesis" / "chapter-1.tex", b"\\chapter{Introduction}\n" * 1000)
    _write(source / "photo.jpg", os.urandom(3 * MiB))
    old = enroll_agent(live_server_haven, tmp_path / "old-agent", alice, "old-laptop")
    run_agent(old, "backup", str(source))

    new = tmp_path / "new-agent"
    enrolled = run_agent(new, "enroll", "--server", live_server_haven.url, "--user", alice.email,
                         "--device-name", "new-laptop")
    assert "received your escrowed key" in enrolled.stdout
    out = tmp_path / "replacement"
    run_agent(new, "restore", "--from-device", "old-laptop", "--to", str(out))
    assert tree_state(restored(out, source)) == tree_state(source)
    retrieval = KeyAccess.objects.filter(subject=alice, purpose="device_retrieval", outcome="succeeded").get()
    assert "new-laptop" in retrieval.actor_label



def test_a_single_sign_on_user_enrolls_an_agent_with_a_one_time_code(live_server_haven, alice, tmp_path):
    from accounts.services import enrollment_code_issue

    code = enrollment_code_issue(user=alice)
    config = tmp_path / "agent"
    enrolled = run_agent(config, "enroll", "--server", live_server_haven.url, "--code", code, "--device-name", "sso")
    assert "for alice@a.example" in enrolled.stdout and "escrowed" in enrolled.stdout
    assert "alice@a.example" in run_agent(config, "status").stdout
    reused = run_agent(tmp_path / "other", "enroll", "--server", live_server_haven.url, "--code", code, check=False)
    assert reused.returncode == 2 and "used or expired" in reused.stderr

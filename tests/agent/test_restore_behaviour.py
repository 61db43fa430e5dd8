"""Restore behaviour users expect, through the real agent CLI against a live server: folders
(empty ones too) come back with their mode and mtime, a restore of nothing says so, files are
private until complete, setuid only on request, symlinks in the destination are never followed,
and existing files are never overwritten without being asked."""
import os
import pty
import stat
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tests.conftest import PASSWORD
from tests.e2e.conftest import (  # noqa: F401 - the live server fixtures are used here
    enroll_agent,
    haven_env,
    live_server_haven,
    live_servers,
    restored,
    run_agent,
    tree_state,
)
from tests.support import PYTHON, REPO

pytestmark = pytest.mark.slow


def agent(config: Path, *args: str, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """The agent CLI with no terminal on stdin (as from cron or a script)."""
    return subprocess.run([PYTHON, "-m", "agent", "--config", str(config), *args], cwd=REPO, stdin=stdin,
                          env={**os.environ, "HAVEN_PASSWORD": PASSWORD}, capture_output=True, text=True,
                          timeout=600)


def _write(path: Path, data: bytes, mode: int = 0o644, mtime: int = 1_600_000_000_000_000_000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    os.utime(path, ns=(mtime, mtime))


def full_state(root: Path) -> dict[str, tuple]:
    """Every file and directory under root (root included): kind, mode bits, mtime, content."""
    state = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
        content = path.read_bytes() if kind == "file" else None
        state[str(path.relative_to(root))] = (kind, stat.S_IMODE(st.st_mode), st.st_mtime_ns, content)
    return state


def _folders(root: Path) -> None:
    """A tree with empty folders and folder modes and mtimes set bottom-up, as a user's would be."""
    _write(root / "docs" / "report.txt", b"report " * 1000)
    _write(root / "docs" / "deep" / "notes.md", b"# notes\n", mode=0o600)
    (root / "empty").mkdir()
    (root / "nested" / "empty" / "inside").mkdir(parents=True)
    (root / "unicode café" / "vide").mkdir(parents=True)
    modes = {"docs/deep": 0o700, "docs": 0o750, "empty": 0o711, "nested/empty/inside": 0o755, "nested/empty": 0o700,
             "nested": 0o755, "unicode café/vide": 0o700, "unicode café": 0o755, ".": 0o755}
    for index, (relative, mode) in enumerate(modes.items()):  # deepest first: children before parents
        os.chmod(root / relative, mode)
        moment = 1_500_000_000_000_000_000 + index * 86_400_000_000_123
        os.utime(root / relative, ns=(moment, moment))


def test_agent_restore_in_worker_processes_restores_the_tree_identical(live_server_haven, alice, tmp_path):  # noqa: F811
    """`agent restore` against a real server, split among worker processes (forced: the
    automatic choice depends on the machine's cores): folders, modes, mtimes and bytes as backed up."""
    import random
    rng = random.Random(12)
    source = tmp_path / "home"
    _folders(source)
    for i in range(600):  # 600 one-block files, some the same, and one file of several blocks
        _write(source / f"many/d{i % 13}/f{i:03d}.txt", rng.randbytes(rng.randint(1, 3000)) if i % 50 else b"same",
               mode=0o640 if i % 2 else 0o644, mtime=1_600_000_000_000_000_000 + i)
    _write(source / "big.bin", rng.randbytes(5_000_000), mode=0o600)
    os.utime(source / "many", ns=(1_400_000_000_000_000_000,) * 2)
    expected = full_state(source)
    config = enroll_agent(live_server_haven, tmp_path / "agent", alice, "laptop")
    assert agent(config, "backup", str(source)).returncode == 0
    out = tmp_path / "out"
    result = subprocess.run([PYTHON, "-m", "agent", "--config", str(config), "restore", "--to", str(out)], cwd=REPO,
                            env={**os.environ, "HAVEN_PASSWORD": PASSWORD, "HAVEN_RESTORE_PROCESSES": "3"},
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "restore completed: 603 files" in result.stdout, result.stdout
    assert full_state(restored(out, source)) == expected


def test_empty_folders_and_folder_modes_and_mtimes_restore_identical(live_server_haven, alice, tmp_path):  # noqa: F811
    source = tmp_path / "home"
    _folders(source)
    expected = full_state(source)
    config = enroll_agent(live_server_haven, tmp_path / "agent", alice, "laptop")
    first = agent(config, "backup", str(source))
    assert first.returncode == 0, first.stderr
    assert "3 versions committed" in first.stdout, first.stdout  # two files and one listing, no row per folder

    out = tmp_path / "out"
    result = agent(config, "restore", "--to", str(out))
    assert result.returncode == 0, result.stderr
    assert full_state(restored(out, source)) == expected

    # Nothing changed: no new listing. A folder's mode alone changed: a new listing, restored.
    assert "0 versions committed" in agent(config, "backup", str(source)).stdout
    os.chmod(source / "empty", 0o700)
    os.utime(source, ns=(expected["."][2], expected["."][2]))
    assert "1 versions committed" in agent(config, "backup", str(source)).stdout
    newest = tmp_path / "newest"
    assert agent(config, "restore", "--to", str(newest)).returncode == 0
    assert stat.S_IMODE((restored(newest, source) / "empty").stat().st_mode) == 0o700

    # Only a selection: the folders within it, and its files.
    part = tmp_path / "part"
    assert agent(config, "restore", "--to", str(part), str(source / "nested")).returncode == 0
    got = full_state(restored(part, source / "nested"))
    assert got == {k.removeprefix("nested/").replace("nested", "."): v for k, v in expected.items()
                   if k.startswith("nested")}
    assert not (restored(part, source) / "docs").exists()


def test_an_archive_without_listings_still_restores(live_server_haven, alice, tmp_path):  # noqa: F811
    """A version-1 archive (backed up before directory listings existed) restores its files."""
    from agent.keys import user_key_load
    from archives.models import FileVersion
    from formats.directories import listing_id_for
    from formats.keys import derive_keys

    source = tmp_path / "home"
    _folders(source)
    config = enroll_agent(live_server_haven, tmp_path / "agent", alice, "laptop")
    assert agent(config, "backup", str(source)).returncode == 0
    keys = derive_keys(user_key_load(config))
    deleted, _ = FileVersion.objects.filter(path_id=listing_id_for(keys, str(source))).delete()
    assert deleted == 1
    out = tmp_path / "out"
    result = agent(config, "restore", "--to", str(out))
    assert result.returncode == 0, result.stderr
    assert tree_state(restored(out, source)) == tree_state(source)
    assert not (restored(out, source) / "empty").exists()  # version 1 never knew about it


def test_a_restore_of_nothing_says_so_and_fails(live_server_haven, alice, tmp_path):  # noqa: F811
    source = tmp_path / "home"
    _write(source / "a.txt", b"a")
    config = enroll_agent(live_server_haven, tmp_path / "agent", alice, "laptop")
    out = tmp_path / "out"

    never = agent(config, "restore", "--to", str(out))
    assert never.returncode != 0 and "nothing to restore" in never.stderr, never.stderr

    before = datetime.now(UTC).isoformat()
    assert agent(config, "backup", str(source)).returncode == 0
    early = agent(config, "restore", "--to", str(out), "--at", before)
    assert early.returncode != 0 and "nothing to restore" in early.stderr and "first backup" in early.stderr
    assert "completed" not in early.stdout

    typo = agent(config, "restore", "--to", str(out), str(source / "a.txt"), str(source / "no-such-file"))
    assert typo.returncode != 0 and str(source / "no-such-file") in typo.stderr, typo.stderr
    assert str(source / "a.txt") not in typo.stderr.split("backup now:")[-1]
    assert not out.exists() or not list(out.rglob("*"))  # nothing written

    good = agent(config, "restore", "--to", str(out), str(source / "a.txt"))
    assert good.returncode == 0 and "restore completed: 1 files" in good.stdout


def test_files_are_private_until_complete_and_setuid_bits_only_on_request(live_server_haven, alice, tmp_path):  # noqa: F811
    from agent.client import ApiClient
    from agent.config import config_load
    from agent.keys import user_key_load
    from agent.restore import restore
    from formats.keys import derive_keys

    source = tmp_path / "home"
    # Larger than PREALLOCATE: its temporary exists before its blocks arrive (a file of one small
    # block is created, written and placed at once: test_a_whole_file_write_...).
    _write(source / "bin" / "tool", b"#!/bin/sh\n" + os.urandom(3_000_000), mode=0o4755)
    _write(source / "shared" / "sticky.txt", os.urandom(1000), mode=0o1644)
    _write(source / "plain.txt", os.urandom(1000), mode=0o644)
    os.chmod(source / "shared", 0o2775)
    config = enroll_agent(live_server_haven, tmp_path / "agent", alice, "laptop")
    assert agent(config, "backup", str(source)).returncode == 0

    out = tmp_path / "out"
    result = agent(config, "restore", "--to", str(out))
    assert result.returncode == 0, result.stderr
    home = restored(out, source)
    assert stat.S_IMODE((home / "bin" / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((home / "shared" / "sticky.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((home / "shared").stat().st_mode) == 0o775
    asked = tmp_path / "asked"
    assert agent(config, "restore", "--to", str(asked), "--restore-setuid").returncode == 0
    assert stat.S_IMODE((restored(asked, source) / "bin" / "tool").stat().st_mode) == 0o4755
    assert stat.S_IMODE((restored(asked, source) / "shared" / "sticky.txt").stat().st_mode) == 0o1644
    assert stat.S_IMODE((restored(asked, source) / "shared").stat().st_mode) == 0o2775

    # While blocks arrive, what the restore has created is private: files 0600, folders 0700.
    cfg = config_load(config)
    seen: list[tuple[str, int]] = []

    class Watching(ApiClient):
        def blocks_fetch(self, archive_id, block_ids):
            for path in [*private.rglob("*")]:
                seen.append((path.name, stat.S_IMODE(path.lstat().st_mode), path.is_dir()))
            return super().blocks_fetch(archive_id, block_ids)

    private = tmp_path / "private"
    client = Watching(cfg.server, token=cfg.token)
    summary = restore(client=client, keys=derive_keys(user_key_load(config)), archive_id=cfg.archive_id, dest=private)
    assert summary.files == 3 and seen
    temporaries = {name: mode for name, mode, is_dir in seen if name.endswith(".haven-restore")}
    assert temporaries and set(temporaries.values()) == {0o600}, temporaries
    assert {mode for name, mode, is_dir in seen if is_dir} == {0o700}
    assert not [name for name, _, _ in seen if name in ("tool", "sticky.txt", "plain.txt")]  # none placed early


def test_symlinks_in_the_destination_are_never_followed(live_server_haven, alice, tmp_path):  # noqa: F811
    source = tmp_path / "home"
    _write(source / "docs" / "report.txt", b"restored report")
    _write(source / "top.txt", b"restored top")
    _write(source / "other.txt", b"restored other")
    config = enroll_agent(live_server_haven, tmp_path / "agent", alice, "laptop")
    assert agent(config, "backup", str(source)).returncode == 0

    outside = tmp_path / "outside"
    outside.mkdir()
    _write(outside / "victim.txt", b"must stay")
    out = tmp_path / "out"
    home = restored(out, source)
    home.mkdir(parents=True)
    os.symlink(outside, home / "docs")  # a symlinked parent directory
    os.symlink(outside / "victim.txt", home / "top.txt")  # a symlinked file
    os.symlink(outside / "planted.txt", home / ".other.txt.haven-restore")  # a planted temporary name
    before = full_state(outside)

    refused = agent(config, "restore", "--to", str(out))
    assert refused.returncode != 0 and "nothing was written" in refused.stderr, refused.stderr
    assert str(home / "docs") in refused.stderr and str(home / "top.txt") in refused.stderr
    assert not (home / "other.txt").exists()

    skipped = agent(config, "restore", "--to", str(out), "--skip-existing")
    assert skipped.returncode == 0, skipped.stderr
    assert (home / "other.txt").read_bytes() == b"restored other"
    assert (home / "docs").is_symlink() and (home / "top.txt").is_symlink()
    assert full_state(outside) == before

    overwritten = agent(config, "restore", "--to", str(out), "--overwrite")
    assert overwritten.returncode == 0, overwritten.stderr
    assert not (home / "docs").is_symlink() and (home / "docs" / "report.txt").read_bytes() == b"restored report"
    assert not (home / "top.txt").is_symlink() and (home / "top.txt").read_bytes() == b"restored top"
    assert full_state(outside) == before  # nothing outside the destination was written, moved or created


def test_the_destination_is_checked_by_descriptor_not_by_path(tmp_path):
    """A symlink swapped in for a parent after the plan was made: the write refuses, nothing leaks."""
    from agent.restore_dest import Destination, DestinationError

    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    (dest / "a").mkdir(parents=True)
    destination = Destination(dest, cache_size=0)
    try:
        identity = destination.temporary_create(("a", "f.txt"), 10)
        (dest / "a").rename(tmp_path / "moved")
        os.symlink(outside, dest / "a")
        with pytest.raises(DestinationError, match="not a directory"):
            destination.temporary_create(("a", "g.txt"), 10)
        with pytest.raises(DestinationError):
            with destination.temporary_open(("a", "f.txt"), identity):
                pass
    finally:
        destination.close()
    assert not list(outside.iterdir())


def test_a_whole_file_write_is_private_until_placed_follows_no_symlink_and_overwrites_only_if_asked(tmp_path):
    """Destination.whole_write (a file of one small block): a symlink planted at the temporary's
    name or the file's name is replaced itself, never followed; without `replace` an existing
    name is left alone; the file has its mode and mtime when it appears under its name."""
    from agent.restore_dest import Destination, temporary_name

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"victim")
    dest = tmp_path / "dest"
    (dest / "a").mkdir(parents=True)
    os.symlink(outside / "victim", dest / "a" / temporary_name("f.txt"))
    (dest / "a" / "kept.txt").write_bytes(b"already here")
    os.symlink(outside / "victim", dest / "a" / "link.txt")
    modes = []
    real_link = os.link

    def link(source, target, **kwargs):  # what the name will show, just before it shows it
        modes.append(stat.S_IMODE(os.stat(source, dir_fd=kwargs["src_dir_fd"]).st_mode))
        return real_link(source, target, **kwargs)

    destination = Destination(dest)
    try:
        os.link = link
        assert destination.whole_write(("a", "f.txt"), b"new f", bits=0o640, mtime_ns=10**18, replace=False)
        assert not destination.whole_write(("a", "kept.txt"), b"not this", bits=0o644, mtime_ns=1, replace=False)
        assert destination.whole_write(("a", "link.txt"), b"new link", bits=0o644, mtime_ns=1, replace=True)
    finally:
        os.link = real_link
        destination.close()
    assert (outside / "victim").read_bytes() == b"victim" and sorted(os.listdir(outside)) == ["victim"]
    f = dest / "a" / "f.txt"
    assert f.read_bytes() == b"new f" and stat.S_IMODE(f.stat().st_mode) == 0o640 and f.stat().st_mtime_ns == 10**18
    assert modes and modes[0] == 0o640  # mode set before the name appears
    assert (dest / "a" / "kept.txt").read_bytes() == b"already here"
    assert not (dest / "a" / "link.txt").is_symlink() and (dest / "a" / "link.txt").read_bytes() == b"new link"
    assert sorted(os.listdir(dest / "a")) == ["f.txt", "kept.txt", "link.txt"]  # no temporary left


def test_a_whole_file_write_that_cannot_be_placed_leaves_no_copy_behind(tmp_path):
    """--overwrite where a directory now stands: the placement fails, and the finished temporary
    (with its final mode) is removed rather than left beside the name."""
    from agent.restore_dest import Destination

    dest = tmp_path / "dest"
    (dest / "a" / "f.txt").mkdir(parents=True)
    destination = Destination(dest)
    try:
        with pytest.raises(OSError):
            destination.whole_write(("a", "f.txt"), b"data", bits=0o644, mtime_ns=1, replace=True)
    finally:
        destination.close()
    assert os.listdir(dest / "a") == ["f.txt"] and (dest / "a" / "f.txt").is_dir()


def test_a_path_listed_twice_is_restored_once_from_its_later_version():
    """Pages come in commit order; with the agent's clock ahead of the server's a backup that
    commits during the listing can make a path come twice: the later one is newer."""
    import base64
    import uuid

    from agent.restore import manifests_at
    from formats.keys import derive_keys
    from formats.manifests import Manifest, manifest_encrypt, path_id_for

    keys = derive_keys(bytes(range(32)))
    archive = uuid.uuid4()

    def listed(mtime_ns):
        version_id = uuid.uuid4()
        manifest = Manifest(path="/f", size=0, mtime_ns=mtime_ns, mode=0o644, block_ids=[], block_sizes=[])
        path_id = path_id_for(keys, "/f")
        blob = manifest_encrypt(keys, manifest, archive_id=archive, path_id=path_id, version_id=version_id)
        return {"version_id": str(version_id), "path_id": path_id, "manifest": base64.b64encode(blob).decode()}

    class Client:
        def versions_at(self, archive_id, at):
            return iter([listed(1), listed(2)])

    manifests = manifests_at(Client(), keys, str(archive), None)
    assert [(m.path, m.mtime_ns) for m in manifests] == [("/f", 2)]


def test_existing_files_are_not_overwritten_without_being_asked(live_server_haven, alice, tmp_path):  # noqa: F811
    source = tmp_path / "home"
    _write(source / "a.txt", b"original a")
    _write(source / "b.txt", b"original b")
    _write(source / "sub" / "c.txt", b"original c")
    config = enroll_agent(live_server_haven, tmp_path / "agent", alice, "laptop")
    assert agent(config, "backup", str(source)).returncode == 0
    _write(source / "a.txt", b"edited a")
    os.unlink(source / "b.txt")

    # To the original location, no terminal, no flag: refused, conflicts listed, nothing written.
    refused = agent(config, "restore", "--to", "/", str(source))
    assert refused.returncode != 0, refused.stdout
    assert str(source / "a.txt") in refused.stderr and "--overwrite" in refused.stderr
    assert str(source / "sub" / "c.txt") not in refused.stderr  # same size and mtime: already restored
    assert not (source / "b.txt").exists() and (source / "a.txt").read_bytes() == b"edited a"

    skip = agent(config, "restore", "--to", "/", "--skip-existing", str(source))
    assert skip.returncode == 0 and "1 skipped" in skip.stdout and "1 unchanged" in skip.stdout, skip.stdout
    assert (source / "b.txt").read_bytes() == b"original b" and (source / "a.txt").read_bytes() == b"edited a"

    renamed = agent(config, "restore", "--to", "/", "--rename", str(source / "a.txt"))
    assert renamed.returncode == 0, renamed.stderr
    today = date.today().isoformat()
    assert (source / f"a (restored {today}).txt").read_bytes() == b"original a"
    assert (source / "a.txt").read_bytes() == b"edited a"

    # On a terminal without a flag it asks; "o" overwrites.
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"o\n")
        asked = agent(config, "restore", "--to", "/", str(source / "a.txt"), stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)
    assert asked.returncode == 0, asked.stderr
    assert "already exist" in asked.stderr and "[o]verwrite" in asked.stdout
    assert (source / "a.txt").read_bytes() == b"original a"

    _write(source / "sub" / "c.txt", b"edited c")
    overwrite = agent(config, "restore", "--to", "/", "--overwrite", str(source))
    assert overwrite.returncode == 0, overwrite.stderr
    assert (source / "sub" / "c.txt").read_bytes() == b"original c"

"""What counts as changed and, above all, what may be marked deleted (DESIGN §4)."""
import os

from agent.backup import scan
from agent.state import CachedFile


def _cache_of(root):
    cache = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            cache[str(path)] = CachedFile(str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, "v",
                                          st.st_dev)
    return cache


def _tree(root):
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "one.txt").write_text("1")
    (root / "a" / "b" / "two.txt").write_text("2")
    (root / "three.txt").write_text("3")
    return root


def test_unchanged_files_are_skipped_and_changes_found(tmp_path):
    root = _tree(tmp_path / "r")
    cache = _cache_of(root)
    assert scan([str(root)], cache).changed == []
    (root / "three.txt").write_text("changed!")
    os.chmod(root / "a" / "one.txt", 0o600)
    changed = {entry.path for entry in scan([str(root)], cache).changed}
    assert changed == {str(root / "three.txt"), str(root / "a" / "one.txt")}


def test_files_gone_from_a_completely_listed_directory_are_deleted(tmp_path):
    root = _tree(tmp_path / "r")
    cache = _cache_of(root)
    (root / "three.txt").unlink()
    for path in (root / "a" / "b").iterdir():
        path.unlink()
    (root / "a" / "b").rmdir()
    assert sorted(scan([str(root)], cache).deleted) == [str(root / "a" / "b" / "two.txt"), str(root / "three.txt")]


def test_nothing_under_a_directory_that_could_not_be_listed_is_deleted(tmp_path, monkeypatch):
    root = _tree(tmp_path / "r")
    cache = _cache_of(root)
    real_scandir = os.scandir
    unreadable = str(root / "a")

    def failing_scandir(path):
        if str(path) == unreadable:
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", failing_scandir)
    result = scan([str(root)], cache)
    assert result.deleted == []
    assert any("Permission denied" in error for error in result.errors)


def test_a_missing_root_deletes_nothing(tmp_path):
    root = _tree(tmp_path / "r")
    cache = _cache_of(root)
    root.rename(tmp_path / "elsewhere")
    result = scan([str(root)], cache)
    assert result.deleted == [] and "nothing under it is marked deleted" in result.errors[0]


def test_files_outside_the_given_roots_are_never_deleted(tmp_path):
    root = _tree(tmp_path / "r")
    cache = _cache_of(root)
    result = scan([str(root / "a")], cache)
    assert result.deleted == []


def test_symlinks_and_special_files_are_skipped(tmp_path):
    root = _tree(tmp_path / "r")
    os.symlink(root / "three.txt", root / "link")
    os.mkfifo(root / "fifo")
    result = scan([str(root)], {})
    assert result.skipped == 2
    assert str(root / "link") not in {entry.path for entry in result.changed}


def test_files_of_a_volume_no_longer_mounted_inside_a_root_are_not_deleted(tmp_path):
    """An unmounted volume leaves an empty mount point that lists completely: the cached files
    were on another file system, so they are not marked deleted."""
    root = _tree(tmp_path / "r")
    cache = _cache_of(root)
    for path in list(cache):
        if "/a/b/" in path:  # as if a/b had been another volume's mount point
            cache[path] = cache[path]._replace(dev=cache[path].dev + 1)
    (root / "a" / "b" / "two.txt").unlink()  # now "unmounted": an empty directory
    (root / "three.txt").unlink()
    assert scan([str(root)], cache).deleted == [str(root / "three.txt")]

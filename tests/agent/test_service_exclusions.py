"""Exclusions in the scan: the policy's defaults (caches, temp files, node_modules, big VM images)
are neither read nor walked, and a newly excluded file is not marked deleted (its versions stay)."""
import fnmatch
import os

from agent.backup import scan
from agent.policy import Exclusions, Policy
from archives.policies import COMMON_EXCLUDES, OS_EXCLUDES, VM_IMAGE_PATTERNS
from tests.agent.test_scan import _cache_of

MiB = 1024 * 1024


def _default_exclusions(home: str, vm_max: int = MiB) -> Exclusions:
    policy = Policy(exclude_effective=COMMON_EXCLUDES + OS_EXCLUDES["linux"], vm_image_patterns=VM_IMAGE_PATTERNS,
                    vm_image_max_bytes=vm_max)
    return policy.exclusions(home=home)


def _write(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_the_default_exclusions_leave_out_caches_temp_files_and_node_modules(tmp_path):
    home = tmp_path / "home"
    kept = [home / "Documents" / "report.odt", home / "project" / "src" / "main.py", home / "small.vmdk"]
    dropped = [home / ".cache" / "pip" / "wheel.whl", home / "project" / "node_modules" / "left-pad" / "index.js",
               home / "project" / "__pycache__" / "main.cpython-311.pyc", home / "download.tmp",
               home / "notes.txt.swp", home / "VMs" / "big.vmdk"]
    for path in kept + dropped:
        _write(path, b"v" * (2 * MiB) if path.name == "big.vmdk" else b"data")
    result = scan([str(home)], {}, exclude=_default_exclusions(str(home)))
    assert sorted(entry.path for entry in result.changed) == sorted(map(str, kept))
    assert result.excluded == 6  # 3 directories (not walked), 2 temporary files, the big VM image
    assert result.files_scanned == len(kept)


def test_a_path_pattern_matches_under_the_home_only(tmp_path):
    home = tmp_path / "home"
    _write(home / ".cache" / "a")
    _write(home / "work" / "cachedir" / "b")
    result = scan([str(home)], {}, exclude=Exclusions(["~/work/cachedir"], home=str(home)))
    assert [entry.path for entry in result.changed] == [str(home / ".cache" / "a")]


def test_a_newly_excluded_file_or_directory_is_not_marked_deleted(tmp_path):
    home = tmp_path / "home"
    _write(home / "keep.txt")
    _write(home / "big.iso")
    _write(home / "build" / "out.bin")
    cache = _cache_of(home)
    result = scan([str(home)], cache, exclude=Exclusions(["*.iso", "build"]))
    assert result.deleted == [] and result.changed == []
    # ... while a file really gone still is.
    (home / "keep.txt").unlink()
    assert scan([str(home)], cache, exclude=Exclusions(["*.iso", "build"])).deleted == [str(home / "keep.txt")]


def test_without_exclusions_the_scan_is_unchanged(tmp_path):
    home = tmp_path / "home"
    _write(home / "node_modules" / "x.js")
    assert [entry.path for entry in scan([str(home)], {}).changed] == [str(home / "node_modules" / "x.js")]


def test_all_patterns_in_one_expression_match_as_each_glob_alone(tmp_path):
    home = str(tmp_path / "home")
    exclusions = _default_exclusions(home, vm_max=MiB)
    names = ["report.odt", "wheel.whl", "node_modules", "x.tmp", "~lock.doc#", ".DS_Store", "Thumbs.db",
             "disk.VMDK", "disk.vmdk", "cache", ".cache", "a[b].txt", "core", "file.swp", "plain"]
    paths = [os.path.join(home, sub, name) for sub in ("", ".cache", "project/node_modules", ".local/share/Trash")
             for name in names]
    for path in paths:
        for size in (None, 10, 2 * MiB):
            name = os.path.basename(path)
            expected = any(fnmatch.fnmatchcase(name, p) for p in exclusions.name_patterns) \
                or any(fnmatch.fnmatchcase(path, p) for p in exclusions.path_patterns) \
                or (size is not None and size > exclusions.vm_max_bytes
                    and any(fnmatch.fnmatchcase(name.lower(), p) for p in exclusions.vm_patterns))
            assert bool(exclusions.matches(path, size=size)) == expected, (path, size)

"""Deterministic benchmark data set: random, compressible and duplicated files.

The data set is a pure function of (seed, size): the file layout is planned from the seed
and every file's bytes are derived from (seed, path), so any single file can be rebuilt on
its own. That is what lets a run reuse the data of an earlier run and undo the 5 % change
of step 3 (rebuilding only the changed files) instead of generating a gigabyte again.

Layout under ``DIR/tree`` (the marker ``DIR/bench-data.json`` records the parameters):

* ``random/`` — one third of the bytes, incompressible (BLAKE3 in XOF mode, ~1.5 GB/s);
* ``text/``   — one third, pseudo log lines that compress ~3.5x with zstd;
* ``dup/``    — one third, byte-for-byte copies of files of the first two thirds, under
  other directory names, as a user's second copy of a project or a photo folder would be.

Each of the first two thirds is a quarter small files (1-64 KiB, nested two levels deep),
a quarter medium files (256 KiB-8 MiB) and half big files (50-200 MiB, clipped to what
the budget leaves, so a small ``--size`` still works).

No numpy: stdlib ``random`` for the layout and text, ``blake3`` (a Haven dependency,
falling back to hashlib's SHAKE-128) for random bytes.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

try:
    import blake3 as _blake3
except ImportError:  # the generator still works, only ~3x slower (and with other bytes)
    _blake3 = None

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

FORMAT = 2  # bump when the layout or contents change, so old data sets are regenerated
SMALL_FORMAT = 1  # the same, for the small-files data set
MARKER = "bench-data.json"
TREE = "tree"
PIECE = 4 * MiB  # write in pieces: a 200 MiB file never sits in memory whole
MODIFY_FRACTION = 0.05
SMALL_MODIFY_FRACTION = 0.01  # a day's change on a tree of many small files
SMALL_PER_FOLDER = 20
GENERATOR = "blake3" if _blake3 else "shake128"


@dataclass(frozen=True)
class FileSpec:
    """One file of the plan; ``source`` is the original's path for a duplicate."""

    path: str
    kind: str  # "random" | "text" | "dup"
    size: int
    source: str | None = None


@dataclass(frozen=True)
class Dataset:
    """A generated data set on disk and the plan it was made from."""

    root: Path  # the directory that is backed up (DIR/tree)
    seed: int
    files: tuple[FileSpec, ...]
    modify_fraction: float = MODIFY_FRACTION

    @property
    def total_bytes(self) -> int:
        return sum(spec.size for spec in self.files)


# --------------------------------------------------------------------------- the plan


def plan(seed: int, size: int) -> list[FileSpec]:
    """The full layout for (seed, size): at least ``size`` bytes in total."""
    rng = random.Random(f"haven-bench:{seed}:layout")
    third = math.ceil(size / 3)
    originals = _plan_kind(rng, "random", ".bin", third) + _plan_kind(rng, "text", ".log", third)
    return originals + _plan_duplicates(rng, originals, max(0, size - sum(f.size for f in originals)))


def _plan_kind(rng: random.Random, kind: str, ext: str, budget: int) -> list[FileSpec]:
    """A quarter small files, a quarter medium files, half big ones: many files and big files."""
    specs: list[FileSpec] = []
    small = _sizes(rng, budget // 4, 1 * KiB, 64 * KiB)
    for index, file_size in enumerate(small):
        folder = index // 40  # ~40 files a folder, 10 folders a parent: a nested home directory
        specs.append(FileSpec(f"{kind}/small/p{folder // 10:03d}/q{folder % 10}/f{index:05d}{ext}", kind, file_size))
    medium = _sizes(rng, budget // 4, 256 * KiB, 8 * MiB)
    specs += [FileSpec(f"{kind}/medium/m{index:04d}{ext}", kind, s) for index, s in enumerate(medium)]
    big = _sizes(rng, budget - sum(small) - sum(medium), 50 * MiB, 200 * MiB)
    specs += [FileSpec(f"{kind}/big/b{index:03d}{ext}", kind, s) for index, s in enumerate(big)]
    return specs


def _sizes(rng: random.Random, budget: int, low: int, high: int) -> list[int]:
    """File sizes drawn from [low, high] that add up to exactly ``budget`` (the last is clipped)."""
    sizes: list[int] = []
    left = budget
    while left > 0:
        size = min(rng.randint(low, high), left)
        sizes.append(size)
        left -= size
    return sizes


def _plan_duplicates(rng: random.Random, originals: list[FileSpec], budget: int) -> list[FileSpec]:
    """Copies of randomly chosen originals, under other folders, adding up to >= ``budget``."""
    homes = ["alice-laptop", "bob-old-pc", "projects-2023", "photos-backup", "shared-drive"]
    shuffled = originals[:]
    rng.shuffle(shuffled)
    chosen: list[FileSpec] = []
    left = budget
    for spec in shuffled:
        if 0 < spec.size <= left:
            chosen.append(spec)
            left -= spec.size
    if left > 0:  # the budget must be met: add the smallest original that covers the rest
        taken = {spec.path for spec in chosen}
        rest = [spec for spec in shuffled if spec.path not in taken and spec.size >= left]
        chosen.append(min(rest, key=lambda spec: spec.size) if rest else shuffled[0])
    return [FileSpec(f"dup/{rng.choice(homes)}/{spec.path}", "dup", spec.size, spec.path) for spec in chosen]


def plan_small(seed: int, count: int) -> list[FileSpec]:
    """``count`` small files (1-64 KiB, log-uniform: most are a few KiB, as in /usr/share or a
    source tree), ~20 to a folder, 4-6 folders deep: 55 % text, 35 % random bytes, 10 % copies of
    earlier files under a vendored folder."""
    rng = random.Random(f"haven-bench:{seed}:small-layout")
    specs: list[FileSpec] = []
    originals: list[FileSpec] = []
    for index in range(count):
        folder = index // SMALL_PER_FOLDER
        parts = f"s{folder // 512:03d}/t{(folder // 64) % 8}/u{(folder // 8) % 8}/v{folder % 8}"
        if folder % 3 == 0:
            parts += "/deeper/still"
        size = int(KiB * 64 ** rng.random())
        pick = rng.random()
        if pick < 0.10 and originals:
            source = rng.choice(originals)
            specs.append(FileSpec(f"small/vendor/{parts}/c{index:06d}-{source.path.rsplit('/', 1)[1]}", "dup",
                                  source.size, source.path))
            continue
        kind, ext = ("text", ".txt") if pick < 0.65 else ("random", ".dat")
        spec = FileSpec(f"small/{parts}/f{index:06d}{ext}", kind, size)
        specs.append(spec)
        originals.append(spec)
    return specs


def modified_files(seed: int, files: tuple[FileSpec, ...] | list[FileSpec],
                   fraction: float = MODIFY_FRACTION) -> list[FileSpec]:
    """The 5 % (small-files set: 1 %) of files, by count, that step 3 changes, chosen from the seed."""
    rng = random.Random(f"haven-bench:{seed}:modify")
    count = max(1, math.ceil(len(files) * fraction))
    return sorted(rng.sample(list(files), count), key=lambda spec: spec.path)


# --------------------------------------------------------------------------- contents


def random_pieces(label: str, size: int) -> Iterator[bytes]:
    """Incompressible bytes for ``label`` in counter mode: piece i is H(label, i)."""
    for index, offset in enumerate(range(0, size, PIECE)):
        length = min(PIECE, size - offset)
        seed = f"{label}:{index}".encode()
        if _blake3 is not None:
            yield _blake3.blake3(seed).digest(length=length)
        else:
            yield hashlib.shake_128(seed).digest(length)


def _vocabulary(seed: int, count: int = 3000) -> tuple[list[str], list[float]]:
    """Pseudo-words with Zipf weights: log text whose redundancy resembles the real thing."""
    rng = random.Random(f"haven-bench:{seed}:vocabulary")
    syllables = ["ba", "ko", "ri", "tem", "on", "al", "ser", "vi", "ce", "da", "ta", "ex",
                 "port", "ing", "con", "fig", "load", "sync", "pack", "ly", "mo", "ne", "st", "ar"]
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))))
    ordered = sorted(words)
    rng.shuffle(ordered)
    return ordered, list(itertools.accumulate(1 / (rank + 1) for rank in range(count)))


_LEVELS = ["INFO"] * 12 + ["DEBUG"] * 6 + ["WARN"] * 2 + ["ERROR"]
_SERVICES = ["api", "worker", "scheduler", "db", "auth", "cache", "gateway", "indexer"]


def text_pieces(seed: int, label: str, size: int, vocabulary: tuple[list[str], list[float]]) -> Iterator[bytes]:
    """Pseudo log lines (timestamp, level, service, 3-12 words, a hex request id): ~3.5x with zstd."""
    words, weights = vocabulary
    rng = random.Random(label)
    clock = 1_700_000_000 + rng.randrange(10_000_000)
    left = size
    while left > 0:
        # draw words in bulk (~40 MB/s instead of ~5 MB/s line by line), but no more lines
        # than the file needs (lines average ~100 bytes): most files are small
        lines_per_batch = min(2000, left // 80 + 1)
        counts = [rng.randint(3, 12) for _ in range(lines_per_batch)]
        drawn = rng.choices(words, cum_weights=weights, k=sum(counts))
        request_ids = rng.randbytes(lines_per_batch * 4).hex()
        lines = []
        start = 0
        for line, count in enumerate(counts):
            lines.append(
                f"{clock + line // 3} {_LEVELS[line % 21]} {_SERVICES[line % 8]}[{4000 + line % 97}]: "
                f"{' '.join(drawn[start:start + count])} req={request_ids[line * 8:line * 8 + 8]}\n"
            )
            start += count
        piece = "".join(lines).encode()[:left]
        left -= len(piece)
        clock += lines_per_batch // 3
        yield piece


# --------------------------------------------------------------------------- writing


def _write(path: Path, pieces: Iterator[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        for piece in pieces:
            handle.write(piece)


def write_file(root: Path, seed: int, spec: FileSpec, vocabulary: tuple[list[str], list[float]]) -> None:
    """(Re)write one file from its spec; a duplicate copies its (already written) original."""
    target = root / spec.path
    label = f"haven-bench:{seed}:{spec.path}"
    if spec.kind == "random":
        _write(target, random_pieces(label, spec.size))
    elif spec.kind == "text":
        _write(target, text_pieces(seed, label, spec.size, vocabulary))
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / spec.source, target)


def write_all(root: Path, seed: int, specs: list[FileSpec] | tuple[FileSpec, ...]) -> None:
    """Write ``specs``, originals first so duplicates copy pristine originals."""
    vocabulary = _vocabulary(seed)
    for spec in sorted(specs, key=lambda spec: spec.kind == "dup"):
        write_file(root, seed, spec, vocabulary)


def apply_modification(dataset: Dataset) -> tuple[int, int]:
    """Change 5 % of the files in place: half get a region in the middle overwritten, half
    get bytes appended. Returns (files changed, bytes written). The marker says "modified"
    *before* the first write, so an interrupted run is undone by the next one."""
    _marker_update(dataset.root.parent, state="modified")
    written = 0
    changed = modified_files(dataset.seed, dataset.files, dataset.modify_fraction)
    for index, spec in enumerate(changed):
        path = dataset.root / spec.path
        label = f"haven-bench:{dataset.seed}:modify:{spec.path}"
        if index % 2 == 0 and spec.size > 0:
            length = min(64 * KiB, max(1, spec.size // 8))
            data = b"".join(random_pieces(label, length))
            with open(path, "r+b") as handle:
                handle.seek((spec.size - length) // 2)
                handle.write(data)
        else:
            data = b"".join(random_pieces(label, 4 * KiB))
            with open(path, "ab") as handle:
                handle.write(data)
        written += len(data)
    return len(changed), written


# --------------------------------------------------------------------------- reuse


def _marker_read(directory: Path) -> dict | None:
    try:
        return json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _marker_write(directory: Path, marker: dict) -> None:
    temporary = directory / (MARKER + ".tmp")
    temporary.write_text(json.dumps(marker, indent=2) + "\n")
    os.replace(temporary, directory / MARKER)


def _marker_update(directory: Path, **changes: object) -> None:
    marker = _marker_read(directory) or {}
    marker.update(changes)
    _marker_write(directory, marker)


def tree_sizes(root: Path) -> dict[str, int]:
    """Relative path -> size of every regular file under ``root`` (stat only, fast)."""
    sizes: dict[str, int] = {}
    stack = [root]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    sizes[Path(entry.path).relative_to(root).as_posix()] = entry.stat(follow_symlinks=False).st_size
    return sizes


def _matches(root: Path, specs: list[FileSpec]) -> bool:
    return root.is_dir() and tree_sizes(root) == {spec.path: spec.size for spec in specs}


def ensure_dataset(directory: Path, seed: int, size: int, log: Callable[[str], None] = print, *,
                   small_files: int | None = None) -> tuple[Dataset, bool]:
    """Generate the data set into ``directory`` or reuse it. Returns (dataset, generated?).

    ``small_files``: the small-files data set of that many files instead of the mixed one of ``size``.
    Reuse needs a marker with the same parameters and a tree whose file sizes match the plan;
    a tree left modified by step 3 of an earlier run is first put back by rebuilding the
    changed files. Refuses to clear a non-empty directory that has no marker of ours."""
    directory = directory.resolve()
    if small_files:
        specs = plan_small(seed, small_files)
        params = {"format": SMALL_FORMAT, "kind": "small", "seed": seed, "files": small_files,
                  "generator": GENERATOR}
        fraction = SMALL_MODIFY_FRACTION
    else:
        specs = plan(seed, size)
        params = {"format": FORMAT, "seed": seed, "size": size, "generator": GENERATOR}
        fraction = MODIFY_FRACTION
    root = directory / TREE
    marker = _marker_read(directory)
    if marker is not None and all(marker.get(key) == value for key, value in params.items()):
        if marker.get("state") != "pristine":
            log(f"data set {directory}: undoing the previous run's step-3 changes")
            write_all(root, seed, modified_files(seed, specs, fraction))
            _marker_update(directory, state="pristine")
        if _matches(root, specs):
            return Dataset(root, seed, tuple(specs), fraction), False
        log(f"data set {directory}: files do not match the plan, regenerating")
    elif directory.exists() and any(directory.iterdir()) and marker is None:
        raise ValueError(f"{directory} is not empty and holds no {MARKER}: refusing to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    _marker_write(directory, {**params, "state": "generating"})
    shutil.rmtree(root, ignore_errors=True)
    write_all(root, seed, specs)
    _marker_write(directory, {**params, "state": "pristine", "files": len(specs),
                              "bytes": sum(spec.size for spec in specs)})
    return Dataset(root, seed, tuple(specs), fraction), True

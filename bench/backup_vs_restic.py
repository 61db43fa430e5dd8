"""Haven vs restic on the same data, same machine, one run.

Four steps, each timed for both tools, interleaved (Haven then restic) so both see the
same page cache and the same machine load:

1. first backup of the data set;
2. the same backup again with nothing changed;
3. the backup again after 5 % of the files (by count; 1 % on the small-files set) were
   changed — the change is applied once, before both step-3 runs, so both tools back up the
   very same tree;
4. a full restore of the latest snapshot into an empty directory, checked against the data.

Run from the repository root (see bench/README.md):

    apt-get update && apt-get install -y restic
    .venv/bin/python bench/backup_vs_restic.py --size 1G
    .venv/bin/python bench/backup_vs_restic.py --dataset both --files 200000

Two data sets (bench/datagen.py): "mixed" (1 GiB of random, text and duplicated files, small to
200 MiB) and "small" (--files small files of 1-64 KiB in deep folders, text and binary).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402  (sibling modules, not a package)
import datagen  # noqa: E402  (a sibling module, not a package)
from bench_tools import Haven, Restic, Tool  # noqa: E402
from benchlib import (  # noqa: E402
    DEFAULT_DATA,
    INSTALL_RESTIC,
    MB,
    REPO,
    STEPS,
    BenchError,
    CommandResult,
    busy_cpus,
    debug,
    log,
)


@dataclass
class Verification:
    """How a restored tree compares with the data set."""

    ok: bool
    files: int
    bytes: int
    hashed_files: int
    problems: list[str]


def verify_restore(data: Path, restored: Path, must_hash: list[str], seed: int) -> Verification:
    """Same paths and sizes for every file, and equal SHA-256 for a sample: the changed files
    of step 3 (did the last backup catch them?), every big file and 200 others at random."""
    problems: list[str] = []
    expected = datagen.tree_sizes(data)
    actual = datagen.tree_sizes(restored) if restored.is_dir() else {}
    if not actual:
        problems.append(f"nothing was restored at {restored}")
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    wrong_size = sorted(path for path in set(expected) & set(actual) if expected[path] != actual[path])
    for label, paths in (("missing", missing), ("unexpected", extra), ("wrong size", wrong_size)):
        if paths:
            problems.append(f"{len(paths)} {label} file(s), e.g. {', '.join(paths[:3])}")
    common = sorted(set(expected) & set(actual) - set(wrong_size))
    sample = set(must_hash) | {path for path in common if expected[path] >= 50 * datagen.MiB}
    sample |= set(random.Random(f"haven-bench:{seed}:verify").sample(common, min(200, len(common))))
    sample &= set(common)
    differing = sorted(path for path in sample if _sha256(data / path) != _sha256(restored / path))
    if differing:
        problems.append(f"{len(differing)} of {len(sample)} hashed file(s) differ, e.g. {', '.join(differing[:3])}")
    return Verification(not problems, len(actual), sum(actual.values()), len(sample), problems)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while piece := handle.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


# --------------------------------------------------------------------------- the run


@dataclass
class StepResult:
    """One tool's figures for one step, as printed and as written to --json."""

    seconds: float
    mb_per_s: float
    cpu_seconds: float
    max_rss_mib: float
    server_cpu_seconds: float | None = None
    server_peak_rss_mib: float | None = None


def timed_step(tool: Tool, step: str, action: Callable[[Path], CommandResult], path: Path,
               data_bytes: int) -> StepResult:
    """Run ``action(path)``, one step of one tool; MB/s is always the full data-set size over the wall time."""
    # Flush dirty pages first (untimed): the data generator's or the other tool's pending
    # writeback would otherwise land in this step's time.
    os.sync()
    server_before = tool.server_cpu_seconds() if isinstance(tool, Haven) else None
    result = action(path)
    server_cpu = tool.server_cpu_seconds() - server_before if isinstance(tool, Haven) else None
    server_rss = tool.server_peak_rss_mib() if isinstance(tool, Haven) else None
    cpu = f"cpu {result.cpu_seconds:6.2f} s" + (f" + server {server_cpu:6.2f} s" if server_cpu is not None else "")
    log(f"  {tool.name:6} {STEPS[step]:30} {result.seconds:8.2f} s  {data_bytes / MB / result.seconds:8.1f} MB/s  {cpu}")
    return StepResult(result.seconds, data_bytes / MB / result.seconds, result.cpu_seconds,
                      result.max_rss_mib, server_cpu, server_rss)


def run_benchmark(tools: list[Tool], dataset: datagen.Dataset, workdir: Path) -> dict:
    """Steps 1-4, each for every tool in turn; returns the results as a JSON-able dict."""
    data_bytes = dataset.total_bytes
    steps: dict[str, dict[str, StepResult]] = {step: {} for step in STEPS}
    verifications: dict[str, Verification] = {}
    for step in ("backup-1", "backup-2"):
        for tool in tools:
            steps[step][tool.name] = timed_step(tool, step, tool.backup, dataset.root, data_bytes)
    changed, written = datagen.apply_modification(dataset)
    log(f"  (changed {changed} of {len(dataset.files)} files, {written / MB:.2f} MB written)")
    modified_bytes = sum(datagen.tree_sizes(dataset.root).values())
    for tool in tools:
        steps["backup-3"][tool.name] = timed_step(tool, "backup-3", tool.backup, dataset.root, modified_bytes)
    must_hash = [spec.path for spec in datagen.modified_files(dataset.seed, dataset.files, dataset.modify_fraction)]
    targets = [workdir / f"restore-{tool.name}" for tool in tools]
    for tool, target in zip(tools, targets):
        target.mkdir()
        steps["restore"][tool.name] = timed_step(tool, "restore", tool.restore, target, modified_bytes)
        verification = verify_restore(dataset.root, target / dataset.root.relative_to("/"), must_hash, dataset.seed)
        verifications[tool.name] = verification
        if not verification.ok:
            log(f"\n!!!!! RESTORE CHECK FAILED for {tool.name}: " + "; ".join(verification.problems) + "\n")
    # Restored trees are deleted only after the last data set (run_one leaves its directory to
    # main): on ext4 without a journal (this VM's disk) creating files for minutes after many
    # deletions, or in a crowded directory such as /tmp, costs several times more (7,500 creates:
    # 0.26 s under /work, 4-7 s under /tmp; 50,000 files restored after 200,000 were deleted:
    # twice the system time), so a deletion before a step slowed whichever tool came first.
    return {
        "data_bytes": data_bytes,
        "data_bytes_after_change": modified_bytes,
        "files": len(dataset.files),
        "changed_files": changed,
        "changed_fraction": dataset.modify_fraction,
        "changed_bytes_written": written,
        "steps": {step: {name: asdict(result) for name, result in by_tool.items()} for step, by_tool in steps.items()},
        "restore_check": {name: asdict(verification) for name, verification in verifications.items()},
        "sizes": {tool.name: tool.sizes() for tool in tools},
        "setup": {tool.name: tool.describe() for tool in tools},
    }


# --------------------------------------------------------------------------- report


def _ratio(step: str, haven: dict | None, restic: dict | None) -> str:
    """Throughput ratio Haven/restic (>1: Haven faster); for step 2 the time ratio (>1: slower)."""
    if not haven or not restic:
        return "-"
    if step == "backup-2":
        return f"{haven['seconds'] / restic['seconds']:.2f}x time"
    return f"{haven['mb_per_s'] / restic['mb_per_s']:.2f}x thru"


def _cells(result: dict | None) -> str:
    return f"{result['seconds']:9.2f} {result['mb_per_s']:11.1f}" if result else f"{'-':>9} {'-':>11}"


def print_report(results: dict) -> None:
    steps = results["steps"]
    log("")
    log(f"===== data set {results.get('dataset', 'mixed')}: {results['files']:,} files, "
        f"{results['data_bytes'] / MB:,.0f} MB; step 3 changed {results['changed_fraction']:.0%} of the files")
    log(f"{'step':32} {'Haven s':>9} {'Haven MB/s':>11} {'restic s':>9} {'restic MB/s':>11} {'Haven/restic':>14}")
    for step, label in STEPS.items():
        haven, restic = steps[step].get("haven"), steps[step].get("restic")
        log(f"{label:32} {_cells(haven)} {_cells(restic)} {_ratio(step, haven, restic):>14}")
    log("")
    log(f"{'CPU seconds (user+sys)':32} {'agent':>9} {'server':>11} {'restic':>9}   "
        "peak RSS MiB agent/server/restic")
    for step, label in STEPS.items():
        haven, restic = steps[step].get("haven"), steps[step].get("restic")
        agent = f"{haven['cpu_seconds']:9.2f} {haven['server_cpu_seconds']:11.2f}" if haven else f"{'-':>9} {'-':>11}"
        own = f"{restic['cpu_seconds']:9.2f}" if restic else f"{'-':>9}"
        rss = "/".join(f"{r['max_rss_mib']:.0f}" if r else "-" for r in (haven, restic))
        if haven and haven.get("server_peak_rss_mib") is not None:
            rss = rss.replace("/", f"/{haven['server_peak_rss_mib']:.0f}/", 1)
        log(f"{label:32} {agent} {own}   {rss}")
    log("")
    per = 10_000 / results["files"]
    log(f"{'seconds per 10,000 files':32} {'Haven':>9} {'(CPU a+s)':>11} {'restic':>9} {'(CPU)':>11}")
    for step, label in STEPS.items():
        haven, restic = steps[step].get("haven"), steps[step].get("restic")
        left = f"{haven['seconds'] * per:9.2f} {(haven['cpu_seconds'] + haven['server_cpu_seconds']) * per:11.2f}" \
            if haven else f"{'-':>9} {'-':>11}"
        right = f"{restic['seconds'] * per:9.2f} {restic['cpu_seconds'] * per:11.2f}" if restic else f"{'-':>9} {'-':>11}"
        log(f"{label:32} {left} {right}")
    log("")
    log("MB/s = data-set bytes / wall seconds (MB = 10^6 bytes). Step 3 counts the whole data set too,")
    log("since both tools scan every file to find the changed ones; step 2 compares times (lower is better),")
    log("the other steps throughput (>1x: Haven faster).")
    log("")
    sizes = results["sizes"]
    log(f"data set:                {results['data_bytes']:>15,} bytes in {results['files']:,} files "
        f"({results['changed_files']} changed in step 3: {results['data_bytes_after_change']:,} bytes after)")
    if "haven" in sizes:
        haven = sizes["haven"]
        log(f"Haven packs:             {haven['pack_bytes']:>15,} bytes")
        log(f"Haven database:          {haven['database_bytes']:>15,} bytes "
            f"({haven['database_bytes_before_backup']:,} of them before the first backup)")
        log(f"Haven agent state:       {haven['agent_state_bytes']:>15,} bytes")
    if "restic" in sizes:
        log(f"restic repository:       {sizes['restic']['repository_bytes']:>15,} bytes")
    if "haven" in sizes and "restic" in sizes:
        stored = sizes["haven"]["pack_bytes"] + sizes["haven"]["database_bytes"] - \
            sizes["haven"]["database_bytes_before_backup"]
        log(f"stored Haven/restic:     {stored / sizes['restic']['repository_bytes']:15.3f}x "
            "(packs + database growth over restic's repository)")
    for name, description in results["setup"].items():
        log(f"{name}: {description}")
    for name, check in results["restore_check"].items():
        state = "OK" if check["ok"] else "FAILED: " + "; ".join(check["problems"])
        log(f"restore check {name}: {state} ({check['files']:,} files, {check['bytes']:,} bytes, "
            f"{check['hashed_files']} hashed)")


# --------------------------------------------------------------------------- main


def parse_size(text: str) -> int:
    """'1G', '256M', '512MiB', '1073741824': binary units (1G = 2^30 bytes)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 256M or 1G)")
    factor = 1024 ** " kmgt".index(match.group(2).lower() or " ")
    return int(float(match.group(1)) * factor)


def _files_list(text: str) -> list[int]:
    try:
        counts = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a file count or list of them: {text!r} (try 200000 or 50000,100000)")
    if not counts or min(counts) < 100:
        raise argparse.ArgumentTypeError("file counts must be at least 100")
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["mixed", "small", "both"], default="mixed",
                        help="mixed: --size of files small to big; small: --files small files; both: one after the other")
    parser.add_argument("--size", type=parse_size, default=datagen.GiB, help="mixed data-set size (default 1G; e.g. 256M)")
    parser.add_argument("--files", type=_files_list, default=[200_000], metavar="N[,N...]",
                        help="small-files data set: number of files (default 200000); a list (50000,100000,200000) "
                             "runs it once per count, to show the time per 10,000 files stays flat")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR",
                        help=f"where the mixed data set is generated and reused (default {DEFAULT_DATA.relative_to(REPO)}); "
                             "the small-files sets go beside it, in DIR-small-N")
    parser.add_argument("--seed", type=int, default=1, help="data-set seed (default 1)")
    parser.add_argument("--only", choices=["haven", "restic", "both"], default="both")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (repos, logs)")
    parser.add_argument("--database-url", metavar="URL", help="run Haven on this (empty) PostgreSQL database")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="run the agent's backups and restores under bench/profile.py (pyinstrument); "
                             "call trees and stage tables go to DIR/<data set>/")
    parser.add_argument("--verbose", action="store_true", help="show commands and their output")
    return parser


def run_one(args, name: str, small_files: int | None, load: float) -> dict | None:
    """One data set, all steps, both tools; None after a failure (already reported)."""
    started = time.perf_counter()
    directory = args.data if small_files is None else args.data.with_name(f"{args.data.name}-small-{small_files}")
    dataset, generated = datagen.ensure_dataset(directory, args.seed, args.size, log=log, small_files=small_files)
    log(f"data set {name}: {dataset.root} — {dataset.total_bytes:,} bytes, {len(dataset.files):,} files, "
        f"{'generated' if generated else 'reused'} in {time.perf_counter() - started:.1f} s ({datagen.GENERATOR})")
    if args.database_url and getattr(args, "_database_used", False):
        log("error: --database-url serves one data set only (the database must be empty): run them one at a time")
        return None
    workdir = Path(tempfile.mkdtemp(prefix="haven-bench-"))
    tools: list[Tool] = []
    if args.only in ("haven", "both"):
        tools.append(Haven(workdir, args.database_url, None if args.profile is None else args.profile / name))
        args._database_used = True
    if args.only in ("restic", "both"):
        tools.append(Restic(workdir))
    try:
        for tool in tools:
            log(f"setting up {tool.name} in {workdir}")
            tool.setup()
        results = run_benchmark(tools, dataset, workdir)
    except BenchError as error:
        log(f"\nerror: {error}")
        return None
    finally:
        for tool in tools:
            tool.close()
        if args.keep:
            log(f"kept {workdir}")
        else:
            args._workdirs.append(workdir)  # deleted by main after the last data set
    for tool in tools:
        if isinstance(tool, Haven):
            for what, output in tool.agent_outputs.items():
                debug(f"haven agent {what}: {output}")
    results.update(dataset=name, seed=args.seed, size_arg=args.size, cpus=os.cpu_count(),
                   python=platform.python_version(), generator=datagen.GENERATOR, busy_cpus_at_start=round(load, 2))
    results["agent_output"] = next((t.agent_outputs for t in tools if isinstance(t, Haven)), {})
    print_report(results)
    return results


def print_summary(all_results: list[dict]) -> None:
    """Every data set's Haven/restic ratios side by side."""
    if len(all_results) < 2:
        return
    log("")
    log("===== Haven/restic, every data set (steps 1, 3, 4: throughput, >1 Haven faster; step 2: time, <1 Haven faster)")
    names = [f"{r['dataset']} ({r['files']:,} files)" for r in all_results]
    log(f"{'step':32} " + " ".join(f"{name:>24}" for name in names))
    for step, label in STEPS.items():
        cells = [_ratio(step, r["steps"][step].get("haven"), r["steps"][step].get("restic")) for r in all_results]
        log(f"{label:32} " + " ".join(f"{cell:>24}" for cell in cells))
    small = [r for r in all_results if r["dataset"].startswith("small")]
    if len(small) > 1:
        log("")
        log("seconds per 10,000 files (Haven wall / restic wall)")
        for step, label in STEPS.items():
            cells = []
            for r in small:
                per = 10_000 / r["files"]
                haven, restic = r["steps"][step].get("haven"), r["steps"][step].get("restic")
                cells.append("/".join(f"{x['seconds'] * per:.2f}" if x else "-" for x in (haven, restic)))
            log(f"{label:32} " + " ".join(f"{cell:>24}" for cell in cells))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    benchlib.VERBOSE = args.verbose
    if args.only != "haven" and shutil.which("restic") is None:
        log(f"error: restic is not installed; install it with: {INSTALL_RESTIC}")
        return 2
    load = busy_cpus()
    if load > 0.3:
        log(f"warning: {load:.1f} of {os.cpu_count()} CPUs busy before starting: other work on this machine "
            "will make the timings noisy")
    runs: list[tuple[str, int | None]] = []
    if args.dataset in ("mixed", "both"):
        runs.append(("mixed", None))
    if args.dataset in ("small", "both"):
        runs += [(f"small-{count}" if len(args.files) > 1 else "small", count) for count in args.files]
    all_results: list[dict] = []
    args._workdirs = []
    try:
        for name, small_files in runs:
            try:
                results = run_one(args, name, small_files, load)
            except ValueError as error:
                log(f"error: {error}")
                return 2
            if results is None:
                return 1
            all_results.append(results)
    finally:
        for workdir in args._workdirs:  # no deletion while anything is timed (run_benchmark)
            shutil.rmtree(workdir, ignore_errors=True)
    print_summary(all_results)
    if args.json:
        document = all_results[0] if len(all_results) == 1 else {"datasets": all_results}
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        log(f"results written to {args.json}")
    return 0 if all(check["ok"] for r in all_results for check in r["restore_check"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

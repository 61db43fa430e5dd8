"""Run one agent command under pyinstrument and say where its time went, stage by stage.

    .venv/bin/python bench/profile.py --out var/prof/backup-1 -- --config DIR backup TREE

Everything after ``--`` is the agent's command line (as for ``python -m agent``). Every thread
the agent starts (the read/hash/encrypt pool, the uploader, the restore fetchers) is profiled on
its own and the sessions are combined, so the figures are thread-seconds: with two cores busy a
stage can take more seconds than the wall clock. Time spent waiting (a queue, a future, a lock)
is its own stage, so the rest is work or waiting for the GIL or the server. A restore runs in
this one process (HAVEN_RESTORE_PROCESSES=1, its fetch threads profiled), not split among
worker processes as it is otherwise on a machine of several cores (agent/restore_workers.py).

Writes ``OUT.txt`` (pyinstrument's call tree, combined over threads), ``OUT.stages.json`` and
prints the stage table. bench/backup_vs_restic.py --profile DIR runs every agent step this way.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path

from pyinstrument import Profiler
from pyinstrument.session import Session

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# (stage, file suffix, function names or None for any): the innermost match on the stack wins,
# and for one frame the first entry that matches. Names of the agent before its split
# (agent/backup.py's _read_whole, _version, ...) stay listed, so an older checkout profiles alike.
STAGES: list[tuple[str, str, tuple[str, ...] | None]] = [
    ("scan (walk + stat)", "agent/scan.py", ("scan",)),
    ("local state (SQLite)", "agent/state.py", None),
    ("read + chunk", "formats/chunking.py", None),
    ("read + chunk", "agent/reading.py", ("_read_small", "read_blocks")),
    ("read + chunk", "agent/backup.py", ("_read_whole",)),
    ("stat after read", "agent/reading.py", ("changed_while_read",)),
    ("stat after read", "agent/backup.py", ("_changed_while_read",)),
    ("block id (BLAKE3)", "formats/blocks.py", ("block_id_for",)),
    ("compress (zstd)", "formats/blocks.py", ("block_compress", "zstd_compress")),
    ("encrypt (AES-GCM)", "formats/blocks.py", ("block_encrypt", "_block_seal")),
    ("frame", "formats/frames.py", ("frame_encode", "frame_header", "_header", "frame_checksum")),
    ("manifest decrypt", "formats/manifests.py", ("manifest_decrypt",)),
    ("manifest build + encrypt", "formats/manifests.py", None),
    ("manifest build + encrypt", "agent/commits.py", ("version", "materialize", "deleted")),
    ("manifest build + encrypt", "agent/backup.py", ("_version", "_materialize", "_commit_files", "_commit_deleted")),
    ("directory listings", "formats/directories.py", None),
    ("directory listings", "agent/commits.py", ("listings",)),
    ("directory listings", "agent/backup.py", ("_commit_listings",)),
    ("http client (httpx, JSON)", "agent/client.py", None),
    ("http client (httpx, JSON)", "agent/throttle.py", ("__iter__", "_through_bucket")),
    ("uploader (own work, gc)", "agent/uploader.py", ("_send",)),
    ("engine bookkeeping", "agent/backup.py", None),
    ("engine bookkeeping", "agent/commits.py", None),
    ("decrypt + verify (restore)", "formats/reassembly.py", None),
    ("decrypt + verify (restore)", "formats/blocks.py", ("block_decrypt", "zstd_decompress_bounded")),
    ("restore plan", "agent/restore_plan.py", None),
    ("restore: files in the destination", "agent/restore_dest.py", None),
    ("restore: write + place", "agent/restore_fetch.py", None),
    ("restore: write + place", "agent/restore_workers.py", None),
    ("restore: write + place", "agent/restore.py", ("fetch", "finish")),
]
IDLE_FILES = ("threading.py", "queue.py", "concurrent/futures/_base.py", "concurrent/futures/thread.py")
IDLE_FUNCTIONS = ("wait", "get", "acquire", "result", "_worker", "join")

_sessions: list[Session] = []
_lock = threading.Lock()


def _profiled_run(original):
    def run(self) -> None:
        profiler = Profiler(interval=0.001, async_mode="disabled")
        profiler.start()
        try:
            original(self)
        finally:
            session = profiler.stop()
            with _lock:
                _sessions.append(session)
    return run


def _stage_of(frame, current: str) -> str:
    path = (frame.file_path or "").replace("\\", "/")
    for stage, suffix, functions in STAGES:
        if path.endswith(suffix) and (functions is None or frame.function in functions):
            return stage
    if path.endswith(IDLE_FILES) and frame.function in IDLE_FUNCTIONS:
        return "idle (waiting)"
    return current


def stage_totals(root) -> dict[str, float]:
    """Self time of every frame, summed under the innermost stage on its stack."""
    totals: dict[str, float] = {}
    stack = [(root, "other")]
    while stack:
        frame, current = stack.pop()
        stage = _stage_of(frame, current)
        self_time = frame.time - sum(child.time for child in frame.children)
        totals[stage] = totals.get(stage, 0.0) + self_time
        stack.extend((child, stage) for child in frame.children)
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        print(__doc__)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(description="profile one agent command")
    parser.add_argument("--out", type=Path, required=True, help="OUT.txt and OUT.stages.json are written")
    args = parser.parse_args(argv[:split])
    agent_argv = argv[split + 1:]

    from agent.cli import main as agent_main
    from agent.restore_workers import PROCESSES_ENV

    os.environ[PROCESSES_ENV] = "1"  # worker processes would not be profiled

    threading.Thread.run = _profiled_run(threading.Thread.run)
    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    try:
        status = agent_main(agent_argv)
    finally:
        main_session = profiler.stop()
        with _lock:
            sessions = [main_session, *_sessions]
        combined = sessions[0]
        for session in sessions[1:]:
            combined = Session.combine(combined, session)
        root = combined.root_frame()
        totals = stage_totals(root) if root is not None else {}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        from pyinstrument.renderers import ConsoleRenderer

        text = ConsoleRenderer(unicode=False, color=False, show_all=False).render(combined)
        Path(f"{args.out}.txt").write_text(text)
        Path(f"{args.out}.stages.json").write_text(json.dumps(
            {"wall_seconds": main_session.duration, "thread_seconds": sum(totals.values()),
             "threads": len(sessions), "stages": totals}, indent=2) + "\n")
        print_stages(totals, main_session.duration, file=sys.stderr)
    return status


def print_stages(totals: dict[str, float], wall: float, file=sys.stdout) -> None:
    busy = sum(seconds for stage, seconds in totals.items() if stage != "idle (waiting)")
    print(f"profile: {wall:.2f} s wall, {busy:.2f} thread-seconds not idle", file=file)
    for stage, seconds in totals.items():
        share = f"{100 * seconds / busy:5.1f} %" if stage != "idle (waiting)" and busy else "      "
        print(f"  {stage:36} {seconds:8.2f} s {share}", file=file)


if __name__ == "__main__":
    sys.exit(main())

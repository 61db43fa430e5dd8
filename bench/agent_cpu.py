"""The agent's own CPU for a first backup, without the server: the engine (scan, read, chunk,
hash, compress, encrypt, frame, manifests, commit bodies, local state) against a stand-in for
the API that answers at once and keeps nothing but counts.

    .venv/bin/python bench/agent_cpu.py TREE [--repeat 3] [--workers 2]

bench/backup_vs_restic.py measures the whole system on a shared 2-core machine, where the
server's CPU and the machine's noise swing a run by 10-20 %; this measures only the agent's
process (user + sys of all its threads), so a change of a few microseconds per file shows. It
prints CPU and wall seconds per 10,000 files, the best of the repeats (the least disturbed).
HTTP is not measured (no sockets): bench/backup_vs_restic.py has that.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.backup import BackupEngine  # noqa: E402
from agent.scan import scan  # noqa: E402
from agent.state import LocalState  # noqa: E402
from formats.commit_body import commit_body_encode  # noqa: E402
from formats.keys import derive_keys, generate_user_key  # noqa: E402


class StandInClient:
    """The calls BackupEngine makes, answered as a server with an empty archive would."""

    def __init__(self):
        self.blocks = self.bytes = self.versions = self.commit_bytes = 0

    def heal_paths(self, archive_id):
        return []

    def run_start(self, archive_id):
        return str(uuid.uuid4())

    def run_finish(self, archive_id, run_id, **kwargs):
        pass

    def blocks_missing(self, archive_id, block_ids):
        return set(block_ids)

    def blocks_upload(self, archive_id, run_id, parts):
        self.blocks += len(parts) // 2
        self.bytes += sum(len(part) for part in parts)
        return {}

    def versions_commit(self, archive_id, run_id, versions):
        body = commit_body_encode(uuid.UUID(run_id), versions)  # what the real client does
        self.versions += len(versions)
        self.commit_bytes += len(body)
        return {}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one_run(tree: str, workers: int) -> dict:
    keys = derive_keys(generate_user_key())
    archive_id = str(uuid.uuid4())
    with tempfile.TemporaryDirectory(prefix="haven-agent-cpu-") as config_dir:
        state = LocalState(Path(config_dir), archive_id)
        client = StandInClient()
        cpu, wall = _cpu(), time.perf_counter()
        scanned = scan([tree], state.lookup_all())
        engine = BackupEngine(client=client, keys=keys, archive_id=archive_id, state=state, workers=workers)
        summary = engine.run([tree], scanned)
        cpu, wall = _cpu() - cpu, time.perf_counter() - wall
        state.close()
    if summary.errors:
        raise SystemExit(f"backup errors: {summary.errors[:5]}")
    return {"files": summary.files_changed, "cpu": cpu, "wall": wall, "blocks": client.blocks,
            "bytes_sent": client.bytes, "versions": client.versions}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tree")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    runs = [one_run(args.tree, args.workers) for _ in range(args.repeat)]
    for run in runs:
        per = 10_000 / max(1, run["files"])
        print(f"  {run['files']:,} files, {run['blocks']:,} blocks, {run['bytes_sent'] / 1e6:,.1f} MB sent: "
              f"cpu {run['cpu'] * per:.2f} s / 10k files, wall {run['wall'] * per:.2f} s / 10k files")
    best = min(runs, key=lambda run: run["cpu"])
    per = 10_000 / max(1, best["files"])
    print(f"best of {len(runs)}: cpu {best['cpu'] * per:.3f} s, wall {best['wall'] * per:.3f} s per 10,000 files")
    return 0


if __name__ == "__main__":
    sys.exit(main())

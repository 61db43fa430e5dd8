"""Does `agent run` hold the policy's bandwidth limit? One measured backup, not a timed unit test.

A fresh Haven server (as bench/backup_vs_restic.py starts it), a policy of `--limit` bytes/s
(active and away alike), `agent run` on `--size` bytes of random data; the upload rate the
agent logs must stay within `--tolerance` of the limit. Run from the repository root:

    .venv/bin/python bench/bandwidth_limit.py --limit 5M --size 100M
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tools import Haven  # noqa: E402  (sibling modules)
from benchlib import REPO, BenchError, log  # noqa: E402

SUMMARY = re.compile(r"backup completed .*?(\d+) bytes sent in ([\d.]+)s")


def _amount(value: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kMG]?)", value)
    if not match:
        raise argparse.ArgumentTypeError(f"{value!r}: a number with an optional k, M or G (powers of 1000)")
    return int(float(match[1]) * {"": 1, "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9}[match[2]])


def measure(limit: int, size: int, workdir: Path) -> tuple[int, float]:
    haven = Haven(workdir, None)
    try:
        haven.setup()
        haven._manage(["policy", "--org", "Bench", "--bandwidth-active", str(limit), "--bandwidth-away", str(limit)],
                      "manage.py policy")
        data = workdir / "data"
        data.mkdir()
        for index in range((size + 2 ** 24 - 1) // 2 ** 24):  # random: nothing compresses or deduplicates
            (data / f"part-{index:03}.bin").write_bytes(os.urandom(min(2 ** 24, size - index * 2 ** 24)))
        agent_log = haven.agent_dir / "agent.log"
        process = subprocess.Popen([haven.python, "-m", "agent", "--config", str(haven.agent_dir), "run", str(data)],
                                   cwd=REPO, env=haven.agent_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60 + 3 * size / limit
            while time.monotonic() < deadline:
                found = SUMMARY.search(agent_log.read_text()) if agent_log.exists() else None
                if found:
                    return int(found[1]), float(found[2])
                if process.poll() is not None:
                    raise BenchError(f"agent run exited {process.returncode}; see {agent_log}")
                time.sleep(0.5)
            raise BenchError(f"no completed backup in time; see {agent_log}")
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
    finally:
        haven.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=_amount, default=5 * 10 ** 6, help="bytes/s (default 5M)")
    parser.add_argument("--size", type=_amount, default=100 * 10 ** 6, help="bytes to back up (default 100M)")
    parser.add_argument("--tolerance", type=float, default=0.10, help="allowed deviation (default 0.10)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="haven-bandwidth-"))
    try:
        sent, seconds = measure(args.limit, args.size, workdir)
    except BenchError as error:
        log(f"error: {error}")
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    rate = sent / seconds
    deviation = rate / args.limit - 1
    log(f"limit {args.limit / 1e6:.2f} MB/s: sent {sent:,} bytes in {seconds:.1f} s = {rate / 1e6:.2f} MB/s "
        f"({deviation:+.1%}, tolerance ±{args.tolerance:.0%})")
    return 0 if abs(deviation) <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())

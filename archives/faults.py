"""Named crash points for the crash-safety tests (kill -9 at a precise moment).

Inactive unless HAVEN_FAULT_POINTS names the point (`name`, or `name=pause@N` to pass it N-1
times first): the process then writes `<HAVEN_FAULT_DIR>/<name>` and sleeps, so a test can kill
it exactly there. `name=wait` instead waits there until the test creates `<name>.go`, then goes on
(the interleaving tests: another actor does its part while this process holds its place). Production never
sets these variables; the cost is one dict lookup.
"""
import os
import time
from pathlib import Path

_ACTIVE = {item.split("=")[0]: (item.split("=") + ["pause"])[1]
           for item in os.environ.get("HAVEN_FAULT_POINTS", "").split(",") if item}


_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    if name not in _ACTIVE:
        return
    _hits[name] = _hits.get(name, 0) + 1
    _, _, nth = _ACTIVE[name].partition("@")
    if _hits[name] < int(nth or 1):
        return
    marker_dir = Path(os.environ.get("HAVEN_FAULT_DIR", "."))
    (marker_dir / name).write_text(str(os.getpid()))
    if _ACTIVE[name].startswith("wait"):
        while not (marker_dir / f"{name}.go").exists():
            time.sleep(0.05)
        return
    time.sleep(3600)

"""The backup policy the server resolved for this device: its selection, exclusions, schedule and
limits, cached in the config directory with its ETag (the agent keeps following the last policy
it saw while the server is unreachable)."""
import fnmatch
import json
import os
import re
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path

from agent.config import write_private_file

POLICY_FILE = "policy.json"


@dataclass
class Policy:
    """Mirrors the server's built-in defaults (archives/policies.py), used before the first fetch."""

    include: list[str] = field(default_factory=lambda: ["~"])
    exclude: list[str] = field(default_factory=list)
    default_excludes: bool = True
    exclude_effective: list[str] = field(default_factory=list)
    vm_image_patterns: list[str] = field(default_factory=list)
    vm_image_max_bytes: int = 1024 ** 3
    interval_seconds: int = 900
    allowed_hours: list[int] = field(default_factory=list)
    allowed_days: list[int] = field(default_factory=list)
    bandwidth_active: int = 0
    bandwidth_away: int = 0
    cpu_threads: int = 2
    nice: int = 10
    version_interval_seconds: int = 0
    os_family: str = "linux"
    etag: str = ""

    @classmethod
    def from_json(cls, body: dict, etag: str = "") -> "Policy":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in body.items() if k in known and k != "etag"}, etag=etag)

    def roots(self, home: str | None = None) -> list[str]:
        """The selection as absolute paths (`~` is the agent's user's home)."""
        return sorted({os.path.abspath(expand_home(path, home)) for path in self.include})

    def exclusions(self, home: str | None = None, extra: list[str] | None = None) -> "Exclusions":
        return Exclusions([*self.exclude_effective, *(extra or [])], home=home,
                          vm_patterns=self.vm_image_patterns, vm_max_bytes=self.vm_image_max_bytes)

    def allows_now(self, now: datetime | None = None) -> bool:
        now = now or datetime.now()
        return (not self.allowed_hours or now.hour in self.allowed_hours) and \
            (not self.allowed_days or now.weekday() in self.allowed_days)

    def describe(self) -> list[str]:
        limit = lambda rate: f"{rate / 1e6:.1f} MB/s" if rate else "no limit"  # noqa: E731
        hours = ",".join(map(str, self.allowed_hours)) or "any"
        days = ",".join("Mon Tue Wed Thu Fri Sat Sun".split()[d] for d in self.allowed_days) or "any"
        return [
            f"selection:    {', '.join(self.include)}",
            f"exclusions:   {', '.join(self.exclude_effective) or 'none'}"
            f" (+ VM images over {self.vm_image_max_bytes // 1024 ** 2} MiB)",
            f"schedule:     every {self.interval_seconds}s, hours {hours}, days {days}",
            f"bandwidth:    {limit(self.bandwidth_active)} when active, {limit(self.bandwidth_away)} when away",
            f"cpu:          {self.cpu_threads} threads, nice {self.nice}",
            f"versions:     {'every backup' if not self.version_interval_seconds else f'at most every {self.version_interval_seconds}s'}",
        ]


def _any_of(patterns: list[str]) -> re.Pattern | None:
    """One expression that matches what any of the globs matches (as fnmatch.fnmatchcase)."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(pattern)})" for pattern in patterns))


def expand_home(path: str, home: str | None = None) -> str:
    if path == "~" or path.startswith("~/"):
        base = home or os.path.expanduser("~")
        return os.path.join(base, path[2:]) if path != "~" else base  # a home of "/" gives "/x", not "//x"
    return path


class Exclusions:
    """Glob patterns: without "/" a pattern matches a file or directory name anywhere, with "/"
    a whole path (and so everything beneath it). VM images match by name and size."""

    def __init__(self, patterns: list[str], *, home: str | None = None, vm_patterns: list[str] = (),
                 vm_max_bytes: int = 0):
        self.name_patterns = [p for p in patterns if "/" not in p]
        self.path_patterns = [os.path.normpath(expand_home(p, home)) for p in patterns if "/" in p]
        self.vm_patterns, self.vm_max_bytes = list(vm_patterns), vm_max_bytes
        # Each list as one regular expression: one match per file, where a policy's dozens of
        # patterns cost one fnmatch call each (the scan asks for every file and directory).
        self._names, self._paths, self._vm = (_any_of(self.name_patterns), _any_of(self.path_patterns),
                                              _any_of(self.vm_patterns))

    def __bool__(self) -> bool:
        return bool(self.name_patterns or self.path_patterns or self.vm_patterns)

    def matches(self, path: str, *, size: int | None = None) -> bool:
        """Is this one entry (a file, or a directory when size is None) excluded by itself?"""
        name = os.path.basename(path)
        if self._names is not None and self._names.match(name):
            return True
        if self._paths is not None and self._paths.match(path):
            return True
        return size is not None and size > self.vm_max_bytes and self._vm is not None \
            and self._vm.match(name.lower()) is not None

    def covers(self, path: str, root: str, *, size: int | None = None) -> bool:
        """Is `path` excluded, itself or through a directory between `root` and it?"""
        if self.matches(path, size=size):
            return True
        ancestor = os.path.dirname(path)
        while len(ancestor) >= len(root) and ancestor != os.path.dirname(ancestor):
            if self.matches(ancestor):
                return True
            ancestor = os.path.dirname(ancestor)
        return False


def policy_cache_load(config_dir: Path) -> Policy | None:
    try:
        raw = json.loads((config_dir / POLICY_FILE).read_text())
        return Policy.from_json(raw["policy"], raw.get("etag", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def policy_cache_save(config_dir: Path, body: dict, etag: str) -> None:
    write_private_file(config_dir / POLICY_FILE, json.dumps({"etag": etag, "policy": body}, indent=2).encode())

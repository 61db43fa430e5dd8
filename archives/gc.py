"""Garbage collection of orphan pack files: durable packs that no index row references."""
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from archives.models import Pack
from archives.storage import pack_storage


@dataclass
class OrphanSweep:
    quarantined: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def orphan_packs_collect(*, grace: timedelta, retention: timedelta, now: datetime | None = None) -> OrphanSweep:
    """Move pack files that no row references (a crash between fsync and commit) out of the way.

    An orphan is quarantined only once it is older than `grace` — an upload still between its
    rename and its commit is never touched — and deleted only after `retention` in quarantine,
    so a database restored from an older backup can still rebuild its index from them.
    Packs are never truncated or rewritten in place.
    """
    now = now or timezone.now()
    storage = pack_storage()
    quarantine = storage.root.parent / f"{storage.root.name}-quarantine"
    sweep = OrphanSweep()
    known = set(Pack.objects.values_list("storage_key", flat=True))
    for key in list(storage.keys("")):
        if key in known:
            continue
        path = storage.root / key
        age = now.timestamp() - path.stat().st_mtime
        if age < grace.total_seconds() or Pack.objects.filter(storage_key=key).exists():
            continue
        target = quarantine / key
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        os.utime(target, (now.timestamp(), now.timestamp()))  # the retention clock starts at quarantine
        sweep.quarantined.append(key)
    if quarantine.exists():
        for path in quarantine.rglob("*.pack"):
            if now.timestamp() - path.stat().st_mtime >= retention.total_seconds():
                path.unlink()
                sweep.deleted.append(str(path.relative_to(quarantine)))
    return sweep

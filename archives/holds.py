"""Why an archive must not be pruned now (legal hold, departed-user hold, ransomware freeze).

Stub: helper "verify" owns this module; the lead takes its version at merge. Retention, prune
and compaction skip an archive for which this returns a reason (docs/maintenance.md).
"""
from archives.models import Archive


def prune_block_reason(archive: Archive) -> str | None:
    return None

"""Self-healing before a backup (agent/backup.py): files whose stored data the server found
damaged are read and sent again."""
import os
import stat

from agent.scan import FileEntry, ScanResult
from agent.state import LocalState
from formats.keys import KeySet
from formats.manifests import path_id_for


def heal_rescan(client, keys: KeySet, state: LocalState, archive_id: str, scanned: ScanResult) -> list[str]:
    """The server names (by keyed path id) files whose stored data it found damaged. Their cache
    entries are forgotten and unchanged ones are added to the scan's changed files, so the blocks
    the server dropped are sent again (an interrupted run re-reads them next time)."""
    wanted = set(client.heal_paths(archive_id))
    if not wanted:
        return []
    changing = {entry.path for entry in scanned.changed}
    healed = [path for path in state.lookup_all() if path_id_for(keys, path) in wanted]
    for path in healed:
        if path in changing:
            continue
        try:
            st = os.lstat(path)
        except OSError:
            continue  # gone: nothing left to send
        if stat.S_ISREG(st.st_mode):
            scanned.changed.append(FileEntry(path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
                                             stat.S_IMODE(st.st_mode), st.st_dev))
    state.forget(healed)
    return healed

"""The server's API as BackupEngine tests need it, without a server: every block is missing,
runs and commits succeed. Subclasses say what an upload does (`uploaded`: the batch as the list
of its frames' parts, as the engine hands it to the client)."""
import time


class EverythingMissingServer:
    def run_start(self, archive_id):
        return "run"

    def run_finish(self, archive_id, run_id, **kwargs):
        pass

    def heal_paths(self, archive_id):
        return []

    def blocks_missing(self, archive_id, block_ids):
        return set(block_ids)

    def blocks_upload(self, archive_id, run_id, batch):
        self.uploaded(batch)
        return {"stored": 0, "duplicates": 0, "pack_id": None}

    def uploaded(self, batch) -> None:
        pass

    def versions_commit(self, archive_id, run_id, versions):
        return {"committed": len(versions)}


def refuse_uploads(client) -> None:
    """Every upload of `client` fails after a moment, as when the server goes away mid-batch."""

    def refuse(archive_id, run_id, batch):
        time.sleep(0.05)
        raise ConnectionError("server gone")
    client.blocks_upload = refuse

"""The backup's uploader thread (agent/backup.py): block batches and version commits, in order."""
import queue
import threading


class Uploader:
    """One thread sends block batches and version commits in the order they were queued.

    Order is the crash rule on the agent's side: a commit queued after batch N is sent only once
    batch N (and every batch before it) was acknowledged.
    """

    def __init__(self, engine, run_id: str):
        self.engine, self.run_id = engine, run_id
        self.queue: queue.Queue = queue.Queue(maxsize=2)  # memory: a batch sending, two waiting
        self.error: BaseException | None = None
        self.bytes_sent = 0
        self._thread = threading.Thread(target=self._run, name="haven-uploader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        engine = self.engine
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is not None:
                continue
            try:
                if item[0] == "batch":
                    engine.client.blocks_upload(engine.archive_id, self.run_id, item[1])
                    self.bytes_sent += len(item[1])
                else:
                    _, versions, cached, deleted_paths, listings = item
                    versions, cached = engine._materialize(versions, cached)
                    engine.client.versions_commit(engine.archive_id, self.run_id, versions)
                    if cached:
                        engine.state.record_committed(cached)
                    if deleted_paths:
                        engine.state.forget(deleted_paths)
                    if listings:
                        engine.state.record_listings(listings)
                    engine.summary.versions_committed += len(versions)
            except BaseException as error:  # noqa: BLE001 - handed to the main thread
                self.error = error

    def put(self, item) -> None:
        while True:
            self.check()
            try:
                self.queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def finish(self) -> None:
        self.put(None)
        self._thread.join()
        self.check()

    def abandon(self) -> None:
        self.error = self.error or RuntimeError("abandoned")
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass

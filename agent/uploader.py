"""The backup's uploader thread (agent/backup.py): block batches and version commits, in order."""
import gc
import queue
import threading


class Uploader:
    """One thread sends block batches and version commits in the order they were queued.

    Order is the crash rule on the agent's side: a commit queued after batch N is sent only once
    batch N (and every batch before it) was acknowledged.

    Memory (issue 12): a batch is ~24 MiB of frames, so how many exist at once is most of the
    agent's peak. A batch is the list of its frames' parts, sent as they are (never joined into
    one body), so handing it over costs nothing and the uploader need not have one waiting
    ready: the engine takes a slot (batch_slot) before it queues a batch, and a slot is given
    back once the batch was sent and dropped. With BATCHES_AHEAD = 1, one batch is being sent
    while the next is being built.
    """

    BATCHES_AHEAD = 1

    def __init__(self, engine, run_id: str):
        self.engine, self.run_id = engine, run_id
        self.queue: queue.Queue = queue.Queue(maxsize=4)  # batches are bounded by the slots; commits are small
        self.error: BaseException | None = None
        self.bytes_sent = 0
        self._slots = threading.Semaphore(self.BATCHES_AHEAD)
        self._thread = threading.Thread(target=self._run, name="haven-uploader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            is_batch = item[0] == "batch"
            try:
                if self.error is None:
                    self._send(item)
            except BaseException as error:  # noqa: BLE001 - handed to the main thread
                self.error = error
            finally:
                item = None  # not kept while waiting for the next one
                if is_batch:
                    self._slots.release()

    def _send(self, item: tuple) -> None:
        engine = self.engine
        if item[0] == "batch":
            _, parts, nbytes = item
            item = None
            engine.client.blocks_upload(engine.archive_id, self.run_id, parts)
            self.bytes_sent += nbytes
            # httpx leaves each response in a reference cycle (response.stream <-> response) that
            # holds the request and so the ~24 MiB batch until the cyclic collector runs, which on
            # a big heap is rare: collected here, cheaply (the scan's objects are frozen, run()).
            parts = None
            gc.collect()
            return
        _, versions, cached, deleted_paths, listings = item
        versions, cached = engine.commits.materialize(versions, cached)
        engine.client.versions_commit(engine.archive_id, self.run_id, versions)
        if cached:
            engine.state.record_committed(cached)
        if deleted_paths:
            engine.state.forget(deleted_paths)
        if listings:
            engine.state.record_listings(listings)
        engine.summary.versions_committed += len(versions)

    def batch_slot(self) -> None:
        """Wait until one more batch may be queued (see the class docstring)."""
        while not self._slots.acquire(timeout=0.5):
            self.check()
        self.check()

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

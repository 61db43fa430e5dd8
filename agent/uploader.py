"""The backup's uploader (agent/backup.py): block batches and version commits, each on its own
thread, in the order the crash rule asks for."""
import gc
import queue
import threading


class Uploader:
    """One thread sends the block batches, another the version commits, each in the order queued.

    Order is the crash rule on the agent's side: a commit queued after batch N is sent only once
    batch N (and every batch before it) was acknowledged; the local state is updated only after
    the server confirmed the commit. The two threads (and so two HTTP connections, and both of
    the server's workers) overlap otherwise: while batch N+1 is being sent, the commit of the
    files of batch N is built (its manifests encrypted), sent and recorded. On trees of small
    files the commits were half of one thread's time, spent in series with the batches.

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
        self.error: BaseException | None = None
        self.bytes_sent = 0
        self._slots = threading.Semaphore(self.BATCHES_AHEAD)
        self._batches: queue.Queue = queue.Queue(maxsize=4)  # bounded by the slots anyway
        self._commits: queue.Queue = queue.Queue(maxsize=4)  # commits are small
        self._acked = threading.Condition()
        self._batches_queued = 0  # by the engine's thread
        self._batches_acked = 0  # by the batch thread, under _acked
        self._threads = [threading.Thread(target=self._run, args=(self._batches,), name="haven-uploader", daemon=True),
                         threading.Thread(target=self._run, args=(self._commits,), name="haven-committer",
                                          daemon=True)]
        for thread in self._threads:
            thread.start()

    def _run(self, items: queue.Queue) -> None:
        while True:
            item = items.get()
            if item is None:
                return
            is_batch = item[0] == "batch"
            try:
                if self.error is None:
                    self._send(item)
            except BaseException as error:  # noqa: BLE001 - handed to the main thread
                self._fail(error)
            finally:
                item = None  # not kept while waiting for the next one
                if is_batch:
                    self._slots.release()

    def _fail(self, error: BaseException) -> None:
        with self._acked:
            self.error = self.error or error
            self._acked.notify_all()  # a commit waiting for a batch gives up

    def _send(self, item: tuple) -> None:
        if item[0] == "batch":
            self._send_batch(item)
        else:
            self._send_commit(item)

    def _send_batch(self, item: tuple) -> None:
        engine = self.engine
        _, parts, nbytes = item
        item = None
        engine.client.blocks_upload(engine.archive_id, self.run_id, parts)
        self.bytes_sent += nbytes
        with self._acked:
            self._batches_acked += 1
            self._acked.notify_all()
        # httpx leaves each response in a reference cycle (response.stream <-> response) that
        # holds the request and so the ~24 MiB batch until the cyclic collector runs, which on
        # a big heap is rare: collected here, cheaply (the scan's objects are frozen, run()).
        parts = None
        gc.collect()

    def _send_commit(self, item: tuple) -> None:
        engine = self.engine
        _, after, versions, cached, deleted_paths, listings = item
        # Built before waiting: the manifests are encrypted while the batches are still being sent.
        versions, cached = engine.commits.materialize(versions, cached)
        if not self._wait_acked(after):
            return  # a batch failed: this commit must not be sent
        engine.client.versions_commit(engine.archive_id, self.run_id, versions)
        if cached:
            engine.state.record_committed(cached)
        if deleted_paths:
            engine.state.forget(deleted_paths)
        if listings:
            engine.state.record_listings(listings)
        engine.summary.versions_committed += len(versions)

    def _wait_acked(self, batches: int) -> bool:
        """Wait until the first `batches` batches were acknowledged; False if sending failed."""
        with self._acked:
            while self._batches_acked < batches and self.error is None:
                self._acked.wait()
            return self.error is None

    def batch_slot(self) -> None:
        """Wait until one more batch may be queued (see the class docstring)."""
        while not self._slots.acquire(timeout=0.5):
            self.check()
        self.check()

    def put(self, item) -> None:
        """A ("batch", parts, nbytes) or ("commit", versions, cached, deleted paths, listings), or
        None at the end; a commit then waits for every batch put before it."""
        if item is None:
            self._put(self._batches, None)
            self._put(self._commits, None)
        elif item[0] == "batch":
            self._batches_queued += 1
            self._put(self._batches, item)
        else:
            self._put(self._commits, (item[0], self._batches_queued, *item[1:]))

    def _put(self, items: queue.Queue, item) -> None:
        while True:
            self.check()
            try:
                items.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def finish(self) -> None:
        self.put(None)
        for thread in self._threads:
            thread.join()
        self.check()

    def abandon(self) -> None:
        self._fail(RuntimeError("abandoned"))
        for items in (self._batches, self._commits):
            try:
                items.put_nowait(None)
            except queue.Full:
                pass

"""The backup's memory bound (issue 12): at most Uploader.BATCHES_AHEAD batches are handed to the
uploader at once (one being sent), and the next is queued only when a slot is free."""
import threading

from agent.uploader import Uploader
from tests.agent.fake_server import refuse_uploads


class SlowServer:
    """blocks_upload waits until the test lets it return."""

    def __init__(self):
        self.release = threading.Semaphore(0)
        self.received: list[bytes] = []

    def blocks_upload(self, archive_id, run_id, batch):
        self.release.acquire()
        self.received.append(b"".join(batch))


class Engine:
    archive_id = "archive"

    def __init__(self):
        self.client = SlowServer()


def _in_thread(target) -> threading.Event:
    done = threading.Event()

    def run():
        target()
        done.set()
    threading.Thread(target=run, daemon=True).start()
    return done


def test_a_batch_beyond_the_slots_waits_for_the_first_to_be_sent():
    engine = Engine()
    uploader = Uploader(engine, "run")
    for index in range(Uploader.BATCHES_AHEAD):
        uploader.batch_slot()
        uploader.put(("batch", [bytes([index]) * 10], 10))
    late = _in_thread(uploader.batch_slot)
    assert not late.wait(0.3)  # every slot taken: no room to queue another
    engine.client.release.release()  # the first batch is acknowledged
    assert late.wait(5)
    uploader.put(("batch", [bytes([Uploader.BATCHES_AHEAD]) * 10], 10))
    for _ in range(Uploader.BATCHES_AHEAD + 1):
        engine.client.release.release()
    uploader.finish()
    assert engine.client.received == [bytes([index]) * 10 for index in range(Uploader.BATCHES_AHEAD + 1)]
    assert uploader.bytes_sent == 10 * (Uploader.BATCHES_AHEAD + 1)


def test_a_failed_upload_frees_the_waiting_engine():
    engine = Engine()
    refuse_uploads(engine.client)
    uploader = Uploader(engine, "run")
    for index in range(Uploader.BATCHES_AHEAD):
        uploader.batch_slot()
        uploader.put(("batch", [bytes([index])], 1))
    errors = []

    def third():
        try:
            uploader.batch_slot()
            uploader.batch_slot()  # slots come back as the refused batches are dropped; then it raises
        except ConnectionError as error:
            errors.append(error)
    assert _in_thread(third).wait(5)
    assert errors and "server gone" in str(errors[0])
    uploader.abandon()

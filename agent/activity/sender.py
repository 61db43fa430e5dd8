"""Delivering the queue: oldest batch first, deleted only after the server's 200 or 201."""
import logging
import threading
from collections.abc import Callable

from agent.activity.queue import EventQueue
from agent.client import ApiClient, ApiError, DeviceDeauthorized
from agent.runtime import Backoff

log = logging.getLogger("haven.agent")

# Answers after which the same bytes can never succeed; anything else is retried.
PERMANENT = {400, 409, 413, 415, 422}


class EventSender:
    def __init__(self, queue: EventQueue, client: ApiClient, *, max_backoff: float = 300.0,
                 on_deauthorized: Callable[[], None] | None = None):
        self.queue, self.client = queue, client
        self.backoff = Backoff(base=1.0, cap=max_backoff)
        self.on_deauthorized = on_deauthorized
        self.last_error = ""

    def send_once(self) -> bool | None:
        """Send the oldest batch. True: sent (or refused for good); None: queue empty; False: retry later."""
        batch = self.queue.oldest()
        if batch is None:
            return None
        seq, batch_id, payload, count = batch
        try:
            answer = self.client.events_upload(payload)
        except DeviceDeauthorized:
            raise
        except ApiError as error:
            if error.status in PERMANENT:
                log.error("activity: the server refused batch %s of %d events for good: %s", batch_id, count, error)
                self.queue.rejected(seq)
                return True
            self.last_error = str(error)
            return False
        self.queue.delivered(seq)
        log.debug("activity: batch %s delivered (%s accepted, duplicate %s)", batch_id, answer.get("accepted"),
                  answer.get("duplicate"))
        return True

    def run(self, stop: threading.Event) -> None:
        """Until `stop`: drain the queue, wait for a new batch, back off while the server is away."""
        while not stop.is_set():
            try:
                sent = self.send_once()
            except DeviceDeauthorized:
                log.error("activity: this device was deauthorized; no more events are sent")
                if self.on_deauthorized:
                    self.on_deauthorized()
                return
            except Exception:  # noqa: BLE001 - the sender must outlive a surprise
                log.exception("activity: sending events failed")
                sent = False
            if sent:
                self.backoff.reset()
                continue
            if sent is None:
                self.queue.sealed.wait(1.0)
                self.queue.sealed.clear()
                continue
            delay = self.backoff.failure()
            log.info("activity: server unavailable (%s); %d events queued; retrying in %.1fs", self.last_error,
                     self.queue.stats()["queued_events"], delay)
            stop.wait(delay)

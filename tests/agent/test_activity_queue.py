"""The agent's event queue and sender: batches sealed once, deleted only after a 200/201, the
same batch id re-sent after a failure or a lost answer, bounded disk with drops counted."""
import gzip
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.activity.queue import EventQueue, queued_event_ids
from agent.activity.sender import EventSender
from agent.client import ApiClient


def _event(i=0):
    return {"event_id": str(uuid.uuid4()), "occurred_at": "2026-12-01T12:00:00.000Z", "type": "created",
            "path": f"/home/alice/{i}.txt", "dest_path": None, "size": 1, "sha256": None, "category": "other",
            "mime_type": None, "vector": None, "entropy": 1.0, "os_user": "alice", "process": None}


def _bodies(queue):
    bodies = []
    while (batch := queue.oldest()) is not None:
        bodies.append(json.loads(gzip.decompress(batch[2])))
        queue.delivered(batch[0])
    return bodies


def test_events_are_sealed_by_count_and_by_age(tmp_path):
    queue = EventQueue(tmp_path / "q.sqlite3", batch_events=3, batch_seconds=0.2)
    for i in range(7):
        queue.add(_event(i))
    assert queue.stats()["queued_batches"] == 2 and queue.stats()["buffered_events"] == 1
    assert not queue.seal_due()  # the buffered event is younger than 0.2 s
    time.sleep(0.3)
    assert queue.seal_due()
    bodies = _bodies(queue)
    assert [len(b["events"]) for b in bodies] == [3, 3, 1]
    assert len({b["batch_id"] for b in bodies}) == 3
    assert queue.stats()["delivered"] == 7 and queue.stats()["queued_events"] == 0


def test_a_sealed_batch_survives_a_restart_unchanged(tmp_path):
    queue = EventQueue(tmp_path / "q.sqlite3", batch_events=2)
    events = [_event(i) for i in range(2)]
    for event in events:
        queue.add(event)
    first = queue.oldest()
    queue.close()
    again = EventQueue(tmp_path / "q.sqlite3").oldest()
    assert again == first
    assert queued_event_ids(tmp_path / "q.sqlite3") == [e["event_id"] for e in events]


def test_disk_use_is_bounded_and_drops_are_reported_once(tmp_path):
    queue = EventQueue(tmp_path / "q.sqlite3", batch_events=50, max_bytes=6000)
    for i in range(500):
        queue.add(_event(i))
    stats = queue.stats()
    assert stats["queued_bytes"] <= 6000 + 4000  # the newest batch always stays
    assert stats["dropped_total"] == 500 - stats["queued_events"] > 0
    bodies = _bodies(queue)
    # Every drop is reported once, in a later batch, and no event is both dropped and kept; the
    # drops of the last seal ride in the next batch.
    unreported = queue.stats()["dropped_unreported"]
    assert sum(b.get("dropped", 0) for b in bodies) + sum(len(b["events"]) for b in bodies) + unreported == 500
    queue.add(_event())
    queue.seal()
    assert _bodies(queue)[0]["dropped"] == unreported and queue.stats()["dropped_unreported"] == 0


class _Server:
    """A local HTTP server scripted per request: an int is the status to answer, "drop" reads the
    body and closes the connection unanswered (the answer is lost)."""

    def __init__(self, script):
        self.script, self.received = list(script), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(gzip.decompress(self.rfile.read(int(self.headers["Content-Length"]))))
                outer.received.append(body["batch_id"])
                step = outer.script.pop(0) if outer.script else 201
                if step == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                answer = json.dumps({"batch_id": body["batch_id"], "accepted": len(body["events"]),
                                     "duplicate": False, "detail": "x", "code": "invalid_events"}).encode()
                self.send_response(step)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server_factory():
    servers = []

    def make(script):
        servers.append(_Server(script))
        return servers[-1]

    yield make
    for server in servers:
        server.httpd.shutdown()


def test_a_batch_is_resent_until_answered_and_deleted_only_then(tmp_path, server_factory):
    server = server_factory([503, "drop", 201])
    queue = EventQueue(tmp_path / "q.sqlite3", batch_events=2)
    queue.add(_event(1))
    queue.add(_event(2))
    sender = EventSender(queue, ApiClient(server.url, token="hvd_x", retries=0, timeout=5))
    assert sender.send_once() is False and queue.stats()["queued_batches"] == 1  # 503
    assert sender.send_once() is False and queue.stats()["queued_batches"] == 1  # answer lost
    assert sender.send_once() is True and queue.stats()["queued_batches"] == 0  # 201
    assert sender.send_once() is None
    assert len(server.received) == 3 and len(set(server.received)) == 1  # one batch id, three tries
    assert queue.stats()["delivered"] == 2


def test_a_batch_refused_for_good_is_counted_not_retried_forever(tmp_path, server_factory):
    server = server_factory([400])
    queue = EventQueue(tmp_path / "q.sqlite3", batch_events=1)
    queue.add(_event())
    queue.add(_event())
    sender = EventSender(queue, ApiClient(server.url, token="hvd_x", retries=0, timeout=5))
    assert sender.send_once() is True and sender.send_once() is True
    assert queue.stats()["rejected"] == 1 and queue.stats()["delivered"] == 1


def test_the_sender_backs_off_while_the_server_is_unreachable(tmp_path):
    queue = EventQueue(tmp_path / "q.sqlite3", batch_events=1)
    queue.add(_event())
    sender = EventSender(queue, ApiClient("http://127.0.0.1:9", token="hvd_x", retries=0, timeout=2),
                         max_backoff=4)
    stop = threading.Event()
    thread = threading.Thread(target=sender.run, args=(stop,))
    thread.start()
    time.sleep(1.5)
    stop.set()
    thread.join(timeout=10)
    assert sender.backoff.failures >= 1 and queue.stats()["queued_batches"] == 1
    assert "unreachable" in sender.last_error or "cannot reach" in sender.last_error

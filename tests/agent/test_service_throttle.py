"""The bandwidth limit: a token bucket the upload bodies go through, and the client sending a
throttled body with its Content-Length (the server refuses a body without one)."""
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agent.client import ApiClient
from agent.throttle import TokenBucket, UploadBody


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_bucket_holds_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(1_000_000, clock=clock, sleep=clock.sleep)
    for _ in range(200):
        bucket.take(64 * 1024)
    sent = 200 * 64 * 1024
    assert abs(clock.now - sent / 1_000_000) / (sent / 1_000_000) < 0.05


def test_no_limit_never_waits_and_a_new_rate_applies_at_once():
    clock = FakeClock()
    bucket = TokenBucket(0, clock=clock, sleep=clock.sleep)
    bucket.take(10 ** 9)
    assert clock.now == 0
    bucket.set_rate(500_000)
    for _ in range(100):
        bucket.take(50_000)
    assert 9.5 <= clock.now <= 10.5


def test_a_throttled_body_can_be_sent_again_for_a_retry():
    body = UploadBody(b"abc" * 100_000, TokenBucket(0))
    assert b"".join(body) == b"".join(body) == b"abc" * 100_000


class _Recorder(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        length = self.headers.get("Content-Length")
        data = self.rfile.read(int(length)) if length else b""
        self.seen.append((length, self.headers.get("Transfer-Encoding"), len(data)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"stored": 0}')

    def log_message(self, *args):
        pass


def test_the_client_streams_blocks_through_the_bucket_with_a_content_length():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = ApiClient(f"http://127.0.0.1:{server.server_port}", token="t", throttle=TokenBucket(2_000_000, burst_seconds=0.01))
        started = time.monotonic()
        client.blocks_upload("archive", None, b"x" * 1_000_000)
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
    assert _Recorder.seen == [("1000000", None, 1_000_000)]
    assert 0.4 <= elapsed <= 2.0  # 1 MB at 2 MB/s


def test_a_batch_goes_as_its_parts_big_ones_uncopied_small_ones_together():
    big = b"B" * 300_000
    small = [bytes([index]) * 100 for index in range(50)]
    parts = [small[0], big, *small[1:]]
    pieces = list(UploadBody(parts))
    assert b"".join(pieces) == b"".join(parts) and len(UploadBody(parts)) == len(b"".join(parts))
    assert len(pieces) == 3  # the first small part, the big one, the other small ones in one write
    assert pieces[1] is big  # sent as it is: no copy of a block's payload
    throttled = UploadBody(parts, TokenBucket(50_000_000))
    assert b"".join(throttled) == b"".join(throttled) == b"".join(parts)


def test_the_client_sends_a_batch_of_parts_with_its_content_length():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = ApiClient(f"http://127.0.0.1:{server.server_port}", token="t")
        client.blocks_upload("archive", None, [b"h" * 87, b"p" * 400_000, b"h" * 87, b"q" * 10])
    finally:
        server.shutdown()
    assert _Recorder.seen[-1] == (str(87 + 400_000 + 87 + 10), None, 87 + 400_000 + 87 + 10)

"""Bandwidth limit: a token bucket the upload bodies are streamed through.

The rate can change while a backup runs (the user came back: the "active" limit applies), and 0
means no limit. One bucket is shared by every upload of the process, so the limit holds for the
agent as a whole, not per request.
"""
import threading
import time
from collections.abc import Callable, Iterator

CHUNK = 64 * 1024


class TokenBucket:
    def __init__(self, rate: float = 0, *, burst_seconds: float = 0.25,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep
        self.burst_seconds = burst_seconds
        self._rate = float(rate)
        self._tokens = 0.0
        self._stamp = clock()

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, rate: float) -> None:
        with self._lock:
            if float(rate) != self._rate:
                self._rate, self._tokens, self._stamp = float(rate), 0.0, self._clock()

    def take(self, nbytes: int) -> None:
        """Block until `nbytes` may be sent at the current rate."""
        with self._lock:
            if self._rate <= 0:
                return
            now = self._clock()
            capacity = max(self._rate * self.burst_seconds, CHUNK)
            self._tokens = min(capacity, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            self._tokens -= nbytes
            wait = -self._tokens / self._rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


class ThrottledBody:
    """An upload body sent in chunks through the bucket. Iterable again for a retried request
    (a generator could be sent only once)."""

    def __init__(self, data: bytes, bucket: TokenBucket):
        self.data, self.bucket = data, bucket

    def __iter__(self) -> Iterator[bytes]:
        view = memoryview(self.data)
        for start in range(0, len(view), CHUNK):
            piece = view[start:start + CHUNK]
            self.bucket.take(len(piece))
            yield bytes(piece)

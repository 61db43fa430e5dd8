"""Bandwidth limit: a token bucket the upload bodies are streamed through.

The rate can change while a backup runs (the user came back: the "active" limit applies), and 0
means no limit. One bucket is shared by every upload of the process, so the limit holds for the
agent as a whole, not per request.
"""
import threading
import time
from collections.abc import Callable, Iterator, Sequence

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


class UploadBody:
    """A batch of block frames as a request body: its parts are sent as they are, never joined
    into one copy of the batch (memory, issue 12). Parts of a few KiB are sent together (one
    write per part would cost a system call and a trip through the HTTP stack for each small
    file's block); with a bucket, every byte goes through it in pieces of CHUNK. Iterable again
    for a retried request (a generator could be sent only once)."""

    COALESCE = 256 * 1024

    def __init__(self, parts: bytes | Sequence[bytes], bucket: TokenBucket | None = None):
        self.parts = [parts] if isinstance(parts, bytes | bytearray | memoryview) else parts
        self.bucket = bucket
        self.length = sum(len(part) for part in self.parts)

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        pending: list[bytes] = []
        pending_bytes = 0
        for part in self.parts:
            if len(part) >= self.COALESCE:
                if pending:
                    yield from self._through_bucket(b"".join(pending))
                    pending, pending_bytes = [], 0
                yield from self._through_bucket(bytes(part) if not isinstance(part, bytes) else part)
                continue
            pending.append(part)
            pending_bytes += len(part)
            if pending_bytes >= self.COALESCE:
                yield from self._through_bucket(b"".join(pending))
                pending, pending_bytes = [], 0
        if pending:
            yield from self._through_bucket(b"".join(pending))

    def _through_bucket(self, piece: bytes) -> Iterator[bytes]:
        if self.bucket is None or self.bucket.rate <= 0:
            yield piece
            return
        view = memoryview(piece)
        for start in range(0, len(view), CHUNK):
            chunk = view[start:start + CHUNK]
            self.bucket.take(len(chunk))
            yield bytes(chunk)

"""Streamed answers to block fetches (agent/client.py's blocks_fetch): the restore reads each
answer frame by frame into a buffer it reuses, instead of holding a whole answer (16 MiB and more)
plus its plaintext per fetch worker.

The answer is read with the standard library's http.client: `readinto` fills the caller's buffer
straight from the socket (TLS decrypts into it), where httpx and h11 copied every byte three or
four times and held the GIL for it (1.75 CPU-s for the 1 GiB benchmark's 466 MB of answers, 0.25
with readinto). TLS is verified exactly as the client's httpx connection verifies it: the same
context (agent/client.py tls_context: the system's CAs, or --ca-file). When a
proxy is configured in the environment (httpx honours HTTP(S)_PROXY/ALL_PROXY/NO_PROXY), the
answer is streamed through httpx instead, so the request takes the same route as every other.
"""
from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from agent.client import ApiClient


class FetchInterrupted(Exception):
    """The connection failed or closed before the whole answer arrived; frames read before it
    were complete (a retry may ask for the rest)."""


TRANSPORT_ERRORS = (OSError, http.client.HTTPException, httpx.TransportError)


class _Answer:
    """One answer body: `readinto(view)` fills `view` (or less, 0 at its end)."""

    def __init__(self, readinto):
        self._readinto = readinto

    def readinto(self, view: memoryview) -> int:
        try:
            return self._readinto(view)
        except TRANSPORT_ERRORS as error:
            raise FetchInterrupted(f"the answer was cut off: {error!r}") from None


def _proxied(url: httpx.URL) -> bool:
    """Would httpx send this request through a proxy named in the environment?"""
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(url.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass_environment(url.host, proxies)


class Fetcher:
    """Keep-alive http.client connections, one taken per answer (thread-safe: fetch workers
    each take their own)."""

    def __init__(self, client: ApiClient):
        self.client = client
        self.base = httpx.URL(client.server.rstrip("/") + "/api/v1/")
        self.proxied = _proxied(self.base)
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        if self.base.scheme == "https":
            self._context = client.tls  # what the client's httpx connection verifies with
        self._headers = {k: v for k, v in client._http.headers.items()
                         if k.lower() in ("authorization", "user-agent")}

    def _connection(self, fresh: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        """A connection, and whether it was used before (the server may have closed it since)."""
        with self._lock:
            if self._idle and not fresh:
                return self._idle.pop(), True
        host, port, timeout = self.base.host, self.base.port, self.client.timeout
        if self._context is not None:
            return http.client.HTTPSConnection(host, port or 443, timeout=timeout, context=self._context), False
        return http.client.HTTPConnection(host, port or 80, timeout=timeout), False

    def _release(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.append(connection)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    @contextmanager
    def post(self, path: str, payload: dict) -> Iterator[_Answer]:
        """POST JSON, stream the answer. ApiError for an error answer (502/503/504 and a failed
        connection retried as ApiClient.request retries), FetchInterrupted mid-answer."""
        if self.proxied:
            with self._post_httpx(path, payload) as answer:
                yield answer
            return
        body = json.dumps(payload).encode()
        url = self.base.join(path)
        target = url.raw_path.decode()
        headers = {**self._headers, "Content-Type": "application/json", "Content-Length": str(len(body)),
                   "Accept-Encoding": "identity"}
        response, connection = self._send(target, body, headers)
        complete = False
        try:
            yield _Answer(response.readinto)
            complete = response.isclosed() or response.length == 0
        finally:
            if complete and not response.will_close:
                self._release(connection)
            else:
                connection.close()

    def _send(self, target: str, body: bytes, headers: dict) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        from agent.client import RETRIED_STATUSES, ApiError

        client = self.client
        attempt = 0
        while True:
            connection, reused = self._connection()
            try:
                connection.request("POST", target, body=body, headers=headers)
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                if reused:  # closed while idle: not a failure of the server
                    continue
                if attempt == client.retries:
                    raise ApiError(0, "unreachable", f"cannot reach {client.server}: {error!r}") from None
            else:
                if response.status < 400:
                    return response, connection
                try:
                    content = response.read()
                except (OSError, http.client.HTTPException):
                    content = b""
                connection.close()
                if response.status not in RETRIED_STATUSES or attempt == client.retries:
                    client._check(httpx.Response(response.status, headers=response.getheaders(), content=content))
                    raise AssertionError("unreachable")  # _check raised for a status >= 400
            time.sleep(client.backoff * 2 ** attempt)
            attempt += 1

    @contextmanager
    def _post_httpx(self, path: str, payload: dict) -> Iterator[_Answer]:
        """Through the client's httpx connection (a proxy): its chunks, copied into the caller's view."""
        from agent.client import RETRIED_STATUSES, ApiError

        client = self.client
        for attempt in range(client.retries + 1):
            try:
                with client._http.stream("POST", path, json=payload) as response:
                    if response.status_code >= 400:
                        response.read()
                        if response.status_code not in RETRIED_STATUSES or attempt == client.retries:
                            client._check(response)
                    else:
                        yield _Answer(_ChunkReader(response.iter_bytes()).readinto)
                        return
            except httpx.TransportError as error:
                if attempt == client.retries:
                    raise ApiError(0, "unreachable", f"cannot reach {client.server}: {error}") from None
            time.sleep(client.backoff * 2 ** attempt)


class _ChunkReader:
    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._left = memoryview(b"")

    def readinto(self, view: memoryview) -> int:
        while not self._left:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._left = memoryview(chunk)
        n = min(len(view), len(self._left))
        view[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def fetcher_for(client: ApiClient) -> Fetcher:
    """The client's fetcher, made on first use."""
    fetcher = client.__dict__.get("_fetcher")
    if fetcher is None:
        with _made:
            fetcher = client.__dict__.get("_fetcher")
            if fetcher is None:
                fetcher = client.__dict__["_fetcher"] = Fetcher(client)
    return fetcher


_made = threading.Lock()

"""HTTP client of the agent API. TLS is verified (the system's CAs, or --ca-file for a private CA)."""
import base64
import glob
import os
import ssl
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from agent import __version__
from agent.throttle import TokenBucket, UploadBody
from formats.commit_body import MEDIA_TYPE as COMMIT_MEDIA_TYPE
from formats.commit_body import CommitVersion, commit_body_encode
from formats.keys import key_id_for


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Verified TLS: the CA file given (--ca-file, a private CA), else the system's trust store.

    A system that keeps its trust store as a hashed directory (Debian, Ubuntu, RHEL:
    /etc/ssl/certs, or $SSL_CERT_DIR) is read lazily, one certificate when a chain needs it:
    loading the whole bundle file cost ~0.1 s at every agent start, a sixth of a backup run that
    finds nothing changed. Without such a directory, the system's defaults; with none at all, the
    certifi bundle httpx ships with.
    """
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    capath = ssl.get_default_verify_paths().capath
    if capath and glob.glob(os.path.join(glob.escape(capath), "*.[0-9]")):
        return ssl.create_default_context(capath=capath)
    context = ssl.create_default_context()
    if not context.cert_store_stats()["x509_ca"]:
        import certifi
        context.load_verify_locations(cafile=certifi.where())
    return context


RETRIED_STATUSES = (502, 503, 504)  # the server or its proxy is overloaded or restarting: asked again


class ApiError(Exception):
    """The server answered with an error; `code` is the machine-readable code it gave."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(f"{detail} (HTTP {status}, {code})")
        self.status = status
        self.code = code
        self.detail = detail

    def __reduce__(self):  # rebuilt as itself in the restore's process (agent/restore_workers.py)
        return type(self), (self.status, self.code, self.detail)


class DeviceDeauthorized(ApiError):
    """The server says this device was deauthorized: stop, and forget local secrets."""


@dataclass
class ApiClient:
    server: str
    token: str | None = None
    ca_file: str | None = None
    timeout: float = 300.0
    retries: int = 3
    backoff: float = 1.0
    throttle: TokenBucket | None = None  # the policy's bandwidth limit on uploaded blocks
    commit_json: bool = False  # commit as JSON (the server answered 415 to the binary body this run)

    def __post_init__(self) -> None:
        self.tls = tls_context(self.ca_file)  # also agent/fetching.py's connections
        headers = {"User-Agent": f"haven-agent/{__version__}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._http = httpx.Client(base_url=self.server.rstrip("/") + "/api/v1/", verify=self.tls,
                                  headers=headers, timeout=self.timeout)

    def close(self) -> None:
        self._http.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code < 400:
            return response
        try:
            body = response.json()
            code, detail = body.get("code", "error"), body.get("detail", response.text)
            if body.get("errors"):
                detail = f"{detail}: {str(body['errors'])[:500]}"
        except ValueError:
            code, detail = "error", f"the server answered {response.status_code} {response.reason_phrase}"
        error_class = DeviceDeauthorized if code == "device_deauthorized" else ApiError
        raise error_class(response.status_code, code, detail)

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        """Send a request; retry a few times when the server is unreachable or overloaded.

        Every call of the protocol is idempotent (docs/protocol.md), so a retry after a dropped
        connection cannot store anything twice.
        """
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                if attempt == self.retries:
                    raise ApiError(0, "unreachable", f"cannot reach {self.server}: {error}") from None
            else:
                if response.status_code not in RETRIED_STATUSES or attempt == self.retries:
                    return self._check(response)
            time.sleep(self.backoff * 2 ** attempt)
        raise AssertionError("unreachable")

    def enroll(self, *, device_name: str, os_name: str, device_id: str | None, email: str | None = None,
               password: str | None = None, code: str | None = None) -> dict:
        credentials = {"code": code} if code else {"email": email, "password": password}
        return self.request("POST", "enroll", json={
            **credentials, "device_name": device_name, "os": os_name, "agent_version": __version__,
            "device_id": device_id,
        }).json()

    def enroll_with_token(self, *, deployment_token: str, user_email: str, device_name: str, os_name: str,
                          device_id: str | None) -> dict:
        """Non-interactive enrollment (MDM scripts): an administrator's deployment token and the email
        of the user this device backs up."""
        return self.request("POST", "enroll/deployment", json={
            "deployment_token": deployment_token, "user_email": user_email, "device_name": device_name,
            "os": os_name, "agent_version": __version__, "device_id": device_id,
        }).json()

    def device(self) -> dict:
        return self.request("GET", "device").json()

    # --- the agent as a service ------------------------------------------------------------

    def policy(self, etag: str | None = None) -> tuple[dict | None, str]:
        """The effective policy and its ETag; (None, etag) when the one we hold is current."""
        headers = {"If-None-Match": etag} if etag else {}
        response = self.request("GET", "devices/me/policy", headers=headers)
        if response.status_code == 304:
            return None, response.headers.get("ETag", etag or "")
        return response.json(), response.headers.get("ETag", "")

    def status_report(self, report: dict) -> dict:
        """Tell the server what this agent is doing; the answer lists its commands for us."""
        return self.request("POST", "devices/me/status", json={"agent_version": __version__, **report}).json()

    # --- backup and restore (docs/protocol.md) ---------------------------------------------

    def archives(self) -> list[dict]:
        return self.request("GET", "archives").json()["archives"]

    def run_start(self, archive_id: str) -> str:
        # Each run asks for the binary commit body again: a service that met an older server
        # (415, then JSON) uses the binary body once that server was upgraded, without a restart.
        self.commit_json = False
        return self.request("POST", f"archives/{archive_id}/runs").json()["run_id"]

    def run_finish(self, archive_id: str, run_id: str, *, status: str, counters: dict, errors: list[str]) -> None:
        self.request("POST", f"archives/{archive_id}/runs/{run_id}/finish",
                     json={"status": status, "errors": errors[:1000], **counters})

    def heal_paths(self, archive_id: str) -> list[str]:
        """Path ids whose stored data the server found damaged (self-healing); [] from an older server."""
        try:
            return self.request("GET", f"archives/{archive_id}/heal").json()["path_ids"]
        except ApiError as error:
            if error.status == 404 and error.code == "error":  # not JSON: a server without the route
                return []
            raise

    def blocks_missing(self, archive_id: str, block_ids: list[bytes]) -> set[bytes]:
        missing: set[bytes] = set()
        for start in range(0, len(block_ids), 10_000):
            answer = self.request("POST", f"archives/{archive_id}/blocks/missing",
                                  json={"block_ids": [b.hex() for b in block_ids[start:start + 10_000]]}).json()
            missing.update(bytes.fromhex(b) for b in answer["missing"])
        return missing

    def blocks_upload(self, archive_id: str, run_id: str | None, batch: bytes | Sequence[bytes]) -> dict:
        """Send a batch: its frames as one body, or as the list of their parts (sent as they are,
        never joined into one copy; agent/throttle.py)."""
        params = {"run": run_id} if run_id else {}
        throttled = self.throttle is not None and self.throttle.rate > 0
        if isinstance(batch, bytes) and not throttled:
            content: bytes | UploadBody = batch
            length = len(batch)
        else:
            content = UploadBody(batch, self.throttle)
            length = len(content)
        # An explicit length keeps a streamed body from being sent chunked (the server wants a
        # Content-Length before it reads a body).
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        return self.request("POST", f"archives/{archive_id}/blocks", params=params, content=content,
                            headers=headers).json()

    def versions_commit(self, archive_id: str, run_id: str | None, versions: list[CommitVersion]) -> dict:
        """The binary body (docs/formats.md §11): no per-version dict, hex or base64 on either
        side. A server older than it answers 415, and is sent JSON from then on."""
        path = f"archives/{archive_id}/versions"
        if not self.commit_json:
            body = commit_body_encode(uuid.UUID(run_id) if run_id else None, versions)
            try:
                return self.request("POST", path, content=body, headers={"Content-Type": COMMIT_MEDIA_TYPE}).json()
            except ApiError as error:
                if error.status != 415:
                    raise
                self.commit_json = True
        return self.request("POST", path, json={"run_id": run_id, "versions": [{
            "version_id": str(v.version_id), "path_id": v.path_id, "deleted": v.deleted,
            "block_ids": [b.hex() for b in v.block_ids], "manifest": base64.b64encode(v.manifest).decode()}
            for v in versions]}).json()

    def versions_at(self, archive_id: str, at: str | None) -> Iterator[dict]:
        """Every page is read at the same point in time, so a backup committing meanwhile cannot
        list one path twice (once per page). The next page is asked for as soon as a page has
        arrived, in a thread of its own, so the server looks it up while the caller works through
        this one (restore decrypts the manifests: the two took turns, a quarter of a 50,000-file
        restore); at most two pages' JSON is held at once."""
        at = at or datetime.now(UTC).isoformat()

        def page(after: str | int) -> dict:
            return self.request("GET", f"archives/{archive_id}/versions",
                                params={"after": after, "limit": 1000, "at": at}).json()

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="haven-versions") as pool:
            pending: Future | None = pool.submit(page, 0)
            while pending is not None:
                current = pending.result()
                pending = pool.submit(page, current["next"]) if current["next"] else None
                try:
                    yield from current["versions"]
                except GeneratorExit:  # the caller stopped early: the page asked for ahead is cancelled unless already under way
                    if pending is not None:
                        pending.cancel()
                    raise

    def versions_of_path(self, archive_id: str, path_id: str) -> list[dict]:
        return self.request("GET", f"archives/{archive_id}/versions", params={"path_id": path_id}).json()["versions"]

    def blocks_fetch(self, archive_id: str, block_ids: list[bytes]):
        """The stored frames of these (distinct) blocks, in ANY order: the server reads them in pack
        order (docs/protocol.md); the caller places each frame by the block id in its header. A
        server without `any_order` answers in the order asked, which is one such order.

        Streamed: a context manager whose answer has `readinto(view)` (agent/fetching.py); the
        caller reads it frame by frame (formats/reassembly.py frames_read). ApiError as `request`
        raises it; FetchInterrupted if the connection fails mid-answer."""
        from agent.fetching import fetcher_for

        return fetcher_for(self).post(f"archives/{archive_id}/blocks/fetch",
                                      {"block_ids": [b.hex() for b in block_ids], "any_order": True})

    # --- file activity (docs/protocol.md "File activity") -------------------------------------

    def events_upload(self, payload: bytes) -> dict:
        """One sealed batch, already gzipped JSON (agent/activity/queue.py)."""
        return self.request("POST", "events", content=payload,
                            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}).json()

    # --- the user key (escrow and computer replacement) ---------------------------------

    def key_status(self) -> dict:
        return self.request("GET", "keys/mine").json()

    def key_escrow(self, key: bytes) -> dict:
        return self.request("POST", "keys/escrow",
                            json={"key": base64.b64encode(key).decode(), "key_id": key_id_for(key)}).json()

    def key_retrieve(self) -> dict:
        return self.request("POST", "keys/retrieve").json()

    # --- push restores (agent/push.py) -------------------------------------------------

    def download(self, path: str):
        """A streamed GET (a context manager yielding the httpx response, already checked)."""
        from contextlib import contextmanager

        @contextmanager
        def opened():
            try:
                with self._http.stream("GET", path) as response:
                    if response.status_code >= 400:
                        response.read()
                        self._check(response)
                    yield response
            except httpx.TransportError as error:
                raise ApiError(0, "unreachable", f"cannot reach {self.server}: {error}") from None
        return opened()

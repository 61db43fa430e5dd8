"""Push restores on the target device (`agent run`): the server names a job in a status report's
commands (`push_restore`), or the agent finds it polling its job list; the agent accepts it,
restores into the job's folder, reports progress (files, bytes) and the result.

- `own_key`: an archive of this device's own user, read with the local key through the normal
  restore (agent/restore.py).
- `stream`: another user's archive. The agent generates a one-time X25519 key pair for the job
  and sends the public half; the server re-encrypts the files to it (docs/formats.md §10). The
  private key lives in this process's memory for the job only — never serialized, never on
  disk — and the source user's key never reaches this device. Files are written into a staging
  folder inside the target and moved into place only once the whole stream authenticated, so a
  tampered or truncated stream places nothing.
"""
import base64
import logging
import os
import secrets
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from agent.client import ApiClient, ApiError, DeviceDeauthorized
from agent.restore import RestoreError, _destination, manifests_at, restore
from formats.errors import FormatError
from formats.keys import KeySet
from formats.push_stream import PushEnd, PushFile, push_keypair_generate, push_stream_read
from formats.reassembly import restore_selection

log = logging.getLogger("haven.agent")
BASE = "devices/me/push-restores"
PROGRESS_EVERY = 1.0  # seconds between progress reports
READY_WAIT = 6 * 3600.0  # how long to wait for the server to write a stream


class PushStopped(Exception):
    """The service is stopping: the job ends failed (it can be asked for again)."""


class _Progress:
    def __init__(self, client: ApiClient, job_id: str, stop: threading.Event):
        self.client, self.job_id, self.stop = client, job_id, stop
        self.files = self.bytes = 0
        self._sent = 0.0
        self._lock = threading.Lock()  # the own-key restore reports from its fetch threads

    def add(self, files: int, nbytes: int, *, totals: dict | None = None) -> None:
        if self.stop.is_set():
            raise PushStopped("the agent is stopping")
        with self._lock:
            self.files += files
            self.bytes += nbytes
            due = totals is not None or time.monotonic() - self._sent >= PROGRESS_EVERY
            if due:
                self._sent = time.monotonic()
        if due:
            try:
                self.client.request("POST", f"{BASE}/{self.job_id}/progress",
                                    json={"files_done": self.files, "bytes_done": self.bytes, **(totals or {})})
            except DeviceDeauthorized:
                raise
            except ApiError as error:  # progress is best-effort; the result is what counts
                log.debug("push restore progress not sent: %s", error)


class PushRunner:
    """Runs the device's push jobs in the service's main thread (between backups)."""

    def __init__(self, config_dir: Path, stop: threading.Event, keys: Callable[[], KeySet],
                 poll_seconds: float = 60.0):
        self.config_dir, self.stop, self.keys, self.poll_seconds = config_dir, stop, keys, poll_seconds
        self._offered: list[str] = []
        self._lock = threading.Lock()
        self._polled_at = float("-inf")

    def offer(self, job_id: str) -> None:
        """A job named in a status report (heartbeat thread)."""
        with self._lock:
            if job_id not in self._offered:
                self._offered.append(job_id)

    def due(self) -> bool:
        with self._lock:
            offered = bool(self._offered)
        return offered or time.monotonic() - self._polled_at >= self.poll_seconds

    def run_due(self, client: ApiClient) -> None:
        """List the open jobs (the fallback when a command was missed), run the queued ones and
        fail the ones this process accepted before it restarted (their one-time key is gone)."""
        self._polled_at = time.monotonic()
        with self._lock:
            self._offered.clear()
        for job in client.request("GET", BASE).json()["results"]:
            if self.stop.is_set():
                return
            if job["status"] == "queued":
                self.run(client, job)
            elif job["status"] == "running":
                self._result(client, job["id"], ok=False, files=job.get("files_done", 0), nbytes=0,
                             error="the agent restarted during the restore; ask for it again")

    def run(self, client: ApiClient, job: dict) -> bool:
        job_id = job["id"]
        progress = _Progress(client, job_id, self.stop)
        log.info("push restore %s (%s) into %s", job_id, job["mode"], job["target_path"])
        try:
            if job["mode"] == "own_key":
                client.request("POST", f"{BASE}/{job_id}/accept", json={})
                self._own_key(client, job, progress)
            else:
                self._stream(client, job, progress)
        except DeviceDeauthorized:
            raise
        except ApiError as error:
            if error.status == 409 and error.code == "push_conflict":  # accepted elsewhere, or ended
                log.info("push restore %s: %s", job_id, error.detail)
                return False
            return self._result(client, job_id, ok=False, files=progress.files, nbytes=progress.bytes,
                                error=f"server error: {error}")
        except (RestoreError, FormatError, PushStopped, OSError) as error:
            log.warning("push restore %s failed: %s", job_id, error)
            return self._result(client, job_id, ok=False, files=progress.files, nbytes=progress.bytes,
                                error=str(error))
        log.info("push restore %s done: %d files, %d bytes", job_id, progress.files, progress.bytes)
        return self._result(client, job_id, ok=True, files=progress.files, nbytes=progress.bytes)

    def _result(self, client: ApiClient, job_id: str, *, ok: bool, files: int, nbytes: int, error: str = "") -> bool:
        try:
            client.request("POST", f"{BASE}/{job_id}/result", json={
                "status": "done" if ok else "failed", "files_done": files, "bytes_done": nbytes, "error": error[:2000]})
        except DeviceDeauthorized:
            raise
        except ApiError as failure:
            log.warning("push restore %s: the result was not accepted: %s", job_id, failure)
        return ok

    # -- the device's own user: the ordinary restore with the local key --

    def _own_key(self, client: ApiClient, job: dict, progress: _Progress) -> None:
        keys = self.keys()
        chosen = restore_selection(manifests_at(client, keys, job["archive"], job["at"]), job["paths"])
        progress.add(0, 0, totals={"files_total": len(chosen), "bytes_total": sum(m.size for m in chosen)})
        restore(client=client, keys=keys, archive_id=job["archive"], dest=Path(job["target_path"]), at=job["at"],
                paths=job["paths"], manifests=chosen, on_progress=progress.add)

    # -- another user's archive: the re-encrypted stream --

    def _stream(self, client: ApiClient, job: dict, progress: _Progress) -> None:
        job_id = job["id"]
        private, public = push_keypair_generate()  # memory only, for this job
        try:
            client.request("POST", f"{BASE}/{job_id}/accept", json={"public_key": base64.b64encode(public).decode()})
            current = self._wait_ready(client, job_id)
            progress.add(0, 0, totals={"files_total": current["files_total"], "bytes_total": current["bytes_total"]})
            dest = Path(job["target_path"])
            dest.mkdir(parents=True, exist_ok=True)
            staging = dest / f".haven-push-{job_id}-{secrets.token_hex(4)}"
            staging.mkdir(mode=0o700)
            try:
                with client.download(f"{BASE}/{job_id}/stream") as response:
                    placed = _stream_stage(_reader(response.iter_bytes(256 * 1024)), staging, uuid.UUID(job_id),
                                           private, progress)
                for staged, entry in placed:
                    _place(staged, dest, entry)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        finally:
            del private

    def _wait_ready(self, client: ApiClient, job_id: str) -> dict:
        deadline, delay = time.monotonic() + READY_WAIT, 0.2
        while True:
            current = client.request("GET", f"{BASE}/{job_id}").json()
            if current["stream"] == "ready":
                return current
            if current["status"] != "running":
                raise RestoreError(f"the server's restore job ended: {current['error'] or current['status']}")
            if time.monotonic() > deadline:
                raise RestoreError("the server did not prepare the restore in time")
            if self.stop.wait(delay):
                raise PushStopped("the agent is stopping")
            delay = min(delay * 2, 5.0)


def _reader(pieces):
    """A read(n) over an iterator of byte strings."""
    buffer = bytearray()
    iterator = iter(pieces)

    def read(n: int) -> bytes:
        while len(buffer) < n:
            piece = next(iterator, None)
            if piece is None:
                break
            buffer.extend(piece)
        out = bytes(buffer[:n])
        del buffer[:n]
        return out
    return read


def _stream_stage(read, staging: Path, job_id: uuid.UUID, private, progress: _Progress) -> list[tuple[Path, PushFile]]:
    """Decrypt the stream into private files under `staging`; returns them only once the end
    record authenticated (push_stream_read raises StreamError on anything else)."""
    staged: list[tuple[Path, PushFile]] = []
    handle, entry = None, None
    try:
        for record in push_stream_read(read, job_id=job_id, private=private):
            if isinstance(record, PushFile):
                if handle is not None:
                    handle.close()
                    progress.add(1, 0)
                entry = record
                path = staging / f"{len(staged):08d}"
                handle = open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
                staged.append((path, entry))
            elif isinstance(record, PushEnd):
                if handle is not None:
                    handle.close()
                    handle = None
                    progress.add(1, 0)
                return staged
            else:
                handle.write(record)
                progress.add(0, len(record))
    finally:
        if handle is not None:
            handle.close()
    raise RestoreError("the stream ended without its end record")  # not reached: the reader raises first


def _place(staged: Path, dest: Path, entry: PushFile) -> None:
    """Move a verified file into place with its mtime and permission bits; setuid, setgid and
    sticky bits are never restored from another user's archive."""
    final = _destination(dest, entry.path)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(staged, entry.mode & 0o777)
    os.utime(staged, ns=(entry.mtime_ns, entry.mtime_ns))
    os.replace(staged, final)  # an existing symlink at `final` is replaced, never followed

"""A restore split among worker processes (agent/restore_workers.py): each block belongs to one worker,
files of several blocks are sealed by the restore once every worker is done, and a worker that
fails, is killed or is stopped fails the restore with nothing partial left behind."""
import contextlib
import multiprocessing
import os
import random
import signal
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent import restore_fetch, restore_workers
from agent.client import ApiError, DeviceDeauthorized
from agent.restore import RestoreError, restore
from formats.blocks import block_encrypt, block_id_for
from formats.frames import FRAME_BLOCK, frame_encode
from formats.keys import derive_keys
from formats.manifests import Manifest

KEYS = derive_keys(bytes(range(32)))
ARCHIVE = uuid.UUID(int=9)
MTIME = 1_700_000_000_123_456_789
rng = random.Random(5)
PIECES = [rng.randbytes(300_000) for _ in range(5)]  # the big file's blocks: one of them twice
BIG = [PIECES[0], PIECES[1], PIECES[2], PIECES[1], PIECES[3], PIECES[4]]
SMALL = {f"/h/d{i % 7}/f{i:03d}.txt": rng.randbytes(rng.randint(1, 20_000)) for i in range(120)}
SMALL["/h/copy/same.txt"] = SMALL["/h/d0/f000.txt"]  # one block, two files
SMALL["/h/empty.txt"] = b""


def _manifests() -> list[Manifest]:
    manifests = [Manifest(path=path, size=len(data), mtime_ns=MTIME, mode=0o640,
                          block_ids=[block_id_for(KEYS, data)] if data else [],
                          block_sizes=[len(data)] if data else [])
                 for path, data in SMALL.items()]
    manifests.append(Manifest(path="/h/big.bin", size=sum(map(len, BIG)), mtime_ns=MTIME, mode=0o644,
                              block_ids=[block_id_for(KEYS, b) for b in BIG], block_sizes=[len(b) for b in BIG]))
    return manifests


BLOCKS = {block_id_for(KEYS, data): data for data in [*SMALL.values(), *PIECES] if data}


def _frame(block_id: bytes) -> bytes:
    return frame_encode(FRAME_BLOCK, ARCHIVE, block_id, block_encrypt(KEYS, block_id, BLOCKS[block_id]))


class _Client:
    """blocks_fetch as the restore needs it; `log` gets one line per request (the pid asking),
    from whichever process asks. `spoil(block_ids, body)` may change an answer."""
    retries, backoff = 1, 0.0

    def __init__(self, log: Path, spoil=None, delay: float = 0.0):
        self.log, self.spoil, self.delay = log, spoil, delay

    @contextmanager
    def blocks_fetch(self, archive_id, block_ids):
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()} {len(block_ids)}\n")
        time.sleep(self.delay)
        body = b"".join(_frame(block_id) for block_id in block_ids)
        if self.spoil is not None:
            body = self.spoil(block_ids, body)
        position = 0

        class Answer:
            @staticmethod
            def readinto(view):
                nonlocal position
                n = min(len(view), 50_000, len(body) - position)
                view[:n] = body[position:position + n]
                position += n
                return n
        yield Answer()


@pytest.fixture
def workers(monkeypatch):
    monkeypatch.setenv(restore_workers.PROCESSES_ENV, "3")  # whatever the machine's cores
    monkeypatch.setattr(restore_fetch, "FETCH_BYTES", 100_000)  # many batches from few blocks


def _restore(client, dest: Path, **options):
    return restore(client=client, keys=KEYS, archive_id=str(ARCHIVE), dest=dest, manifests=_manifests(), **options)


def _left_over(dest: Path) -> list[Path]:
    return [p for p in dest.rglob("*") if p.name.endswith(".haven-restore")]


def test_workers_restore_every_file_and_the_big_one_is_sealed_by_the_restore(workers, tmp_path):
    assert len({restore_fetch._owner(block_id_for(KEYS, b), 3) for b in PIECES}) >= 2  # big.bin's blocks: split
    log, dest = tmp_path / "asked.log", tmp_path / "out"
    seen = []
    summary = _restore(_Client(log), dest, on_progress=lambda files, nbytes: seen.append((files, nbytes)))
    for path, data in [*SMALL.items(), ("/h/big.bin", b"".join(BIG))]:
        restored = dest / path.lstrip("/")
        assert restored.read_bytes() == data, path
        assert restored.stat().st_mtime_ns == MTIME
        assert restored.stat().st_mode & 0o777 == (0o644 if path == "/h/big.bin" else 0o640)
    assert (summary.files, summary.bytes, summary.errors) == (len(SMALL) + 1, sum(map(len, SMALL.values()))
                                                               + sum(map(len, BIG)), [])
    assert summary.blocks == len(BLOCKS)  # each distinct block fetched once, by one worker
    assert sum(files for files, _ in seen) == len(SMALL) + 1
    askers = {line.split()[0] for line in log.read_text().splitlines()}
    assert len(askers) == 3 and str(os.getpid()) not in askers
    requests = [int(line.split()[1]) for line in log.read_text().splitlines()]
    assert sum(requests) == len(BLOCKS) and len(requests) >= 15
    assert not _left_over(dest) and not multiprocessing.active_children()


def test_the_cli_s_restores_of_many_blocks_use_a_worker_per_core_and_others_threads(monkeypatch, tmp_path):
    client = _Client(tmp_path / "asked.log")
    monkeypatch.delenv(restore_workers.PROCESSES_ENV, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    least = restore_workers.PROCESSES_MIN_BLOCKS
    assert restore_workers.worker_processes(client, least, allowed=True) == restore_workers.PROCESSES_MAX
    assert restore_workers.worker_processes(client, least - 1, allowed=True) == 1
    assert restore_workers.worker_processes(client, 100_000, allowed=False) == 1  # the service's push restores
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert restore_workers.worker_processes(client, least, allowed=True) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert restore_workers.worker_processes(client, 100_000, allowed=True) == 1
    monkeypatch.setenv(restore_workers.PROCESSES_ENV, "1")
    assert restore_workers.worker_processes(client, 100_000, allowed=True) == 1
    summary = _restore(client, tmp_path / "out", processes=True)
    assert summary.files == len(SMALL) + 1
    assert {line.split()[0] for line in (tmp_path / "asked.log").read_text().splitlines()} == {str(os.getpid())}


def test_names_taken_during_the_restore_are_skipped_or_replaced_in_the_workers(workers, tmp_path):
    taken = ["/h/d1/f001.txt", "/h/big.bin"]

    def intrude(block_ids, body):  # someone writes two of the names while the workers fetch
        for path in taken:
            with contextlib.suppress(FileExistsError):
                with open(dest / path.lstrip("/"), "xb") as f:
                    f.write(b"mine")
        return body

    dest = tmp_path / "skip"
    summary = _restore(_Client(tmp_path / "asked.log", intrude), dest, existing="skip")
    assert (summary.files, summary.skipped, summary.errors) == (len(SMALL) - 1, 2, [])
    assert all((dest / path.lstrip("/")).read_bytes() == b"mine" for path in taken)
    assert (dest / "h" / "d0" / "f000.txt").read_bytes() == SMALL["/h/d0/f000.txt"]
    dest = tmp_path / "refuse"
    summary = _restore(_Client(tmp_path / "asked.log", intrude), dest, existing="refuse")
    assert summary.files == len(SMALL) - 1 and len(summary.errors) == 2
    assert all("appeared during the restore; not overwritten" in error for error in summary.errors)
    assert not _left_over(tmp_path)


def test_overwrite_replaces_what_is_there_from_workers_and_from_the_restore(workers, tmp_path):
    dest = tmp_path / "out"
    for path in ("/h/d1/f001.txt", "/h/big.bin"):
        (dest / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (dest / path.lstrip("/")).write_bytes(b"old")
    summary = _restore(_Client(tmp_path / "asked.log"), dest, existing="overwrite")
    assert summary.files == len(SMALL) + 1 and not summary.errors
    assert (dest / "h" / "d1" / "f001.txt").read_bytes() == SMALL["/h/d1/f001.txt"]
    assert (dest / "h" / "big.bin").read_bytes() == b"".join(BIG) and not _left_over(dest)


def test_a_silent_worker_is_stopped_and_fails_the_restore(workers, monkeypatch, tmp_path):
    monkeypatch.setattr(restore_workers, "WORKER_SILENCE_SECONDS", 1.0)

    def hang(block_ids, body):  # one worker, stuck (a lock it inherited, a server that never answers)
        if restore_fetch._owner(block_ids[0], 3) == 0:
            time.sleep(60)
        return body

    started = time.monotonic()
    with pytest.raises(RestoreError, match=r"no word from the restore's workers in 1 s"):
        _restore(_Client(tmp_path / "asked.log", hang), tmp_path / "out")
    assert time.monotonic() - started < 30 and not multiprocessing.active_children()
    assert not _left_over(tmp_path / "out")


def test_a_damaged_answer_in_a_worker_fails_the_restore_and_leaves_no_partial_file(workers, tmp_path):
    big = {block_id_for(KEYS, b) for b in PIECES}

    def spoil(block_ids, body):
        if big & set(block_ids):
            body = bytearray(body)
            body[-10] ^= 1
        return bytes(body)

    dest = tmp_path / "out"
    with pytest.raises(RestoreError, match="failed verification"):
        _restore(_Client(tmp_path / "asked.log", spoil), dest)
    assert not (dest / "h" / "big.bin").exists() and not _left_over(dest)
    for path in (p for p in dest.rglob("*") if p.is_file()):  # whatever was placed is whole
        assert path.read_bytes() == SMALL["/" + str(path.relative_to(dest))]
    assert not multiprocessing.active_children()


def test_a_worker_killed_mid_restore_fails_the_restore(workers, tmp_path):
    answered = []

    def kill(block_ids, body):  # worker 0 dies at its third request; the others go on
        answered.append(block_ids[0])  # this process's own list
        if restore_fetch._owner(block_ids[0], 3) == 0 and len(answered) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return body

    dest = tmp_path / "out"
    with pytest.raises(RestoreError, match=r"a restore worker stopped \(exit status -9\)"):
        _restore(_Client(tmp_path / "asked.log", kill), dest)
    assert not (dest / "h" / "big.bin").exists() and not _left_over(dest)
    placed = [p for p in dest.rglob("*") if p.is_file()]
    assert placed  # the first batches, and the other workers' files
    for path in placed:
        assert path.read_bytes() == SMALL["/" + str(path.relative_to(dest))]
    assert not multiprocessing.active_children()


@pytest.mark.parametrize("error", [ApiError(404, "blocks_not_found", "blocks are missing"),
                                   DeviceDeauthorized(401, "device_deauthorized", "this device was deauthorized")])
def test_a_server_error_in_a_worker_reaches_the_caller_as_itself(workers, tmp_path, error):
    class Refusing(_Client):
        @contextmanager
        def blocks_fetch(self, archive_id, block_ids):
            raise error
            yield

    with pytest.raises(type(error)) as raised:
        _restore(Refusing(tmp_path / "asked.log"), tmp_path / "out")
    assert (raised.value.status, raised.value.code, raised.value.detail) == (error.status, error.code, error.detail)
    assert not _left_over(tmp_path / "out") and not multiprocessing.active_children()


@pytest.mark.parametrize("handler", [signal.SIG_DFL, lambda signum, frame: None],
                         ids=["default", "the service's SIGTERM handler"])
def test_a_caller_that_stops_the_restore_stops_its_workers(workers, tmp_path, handler):
    class Stopped(Exception):
        pass

    previous = signal.signal(signal.SIGTERM, handler)  # a worker inherits it; it must die all the same

    def progress(files, nbytes):
        if nbytes:  # a worker's first batch is in (the empty file is placed before any)
            raise Stopped("the agent is stopping")

    dest, log = tmp_path / "out", tmp_path / "asked.log"
    try:
        with pytest.raises(Stopped):
            _restore(_Client(log, delay=1.0), dest, on_progress=progress)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not multiprocessing.active_children() and not _left_over(dest)
    assert len(log.read_text().splitlines()) <= 2 * 3  # stopped after a batch or two each, of 5-7 each
    assert not (dest / "h" / "big.bin").exists()
